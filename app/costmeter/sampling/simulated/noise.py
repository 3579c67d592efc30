"""Counter-based randomness: every draw is a pure function of its key, never of call order.

That is what makes a simulation reproducible whatever the sampling rate: the value for
(seed, device, second) is the same whether it is read once, ten times, or never.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from hashlib import blake2b

_KEY = struct.Struct("<qqqq").pack
_WORDS = struct.Struct("<4I").unpack
_WORDS8 = struct.Struct("<8I").unpack
_INV = 1.0 / 4294967296.0
_SCALE = _INV.__mul__
_MASK = (1 << 63) - 1


def uniforms(seed: int, a: int, b: int, c: int) -> tuple[float, float, float, float]:
    """Four independent uniforms in [0, 1) drawn from the key (seed, a, b, c)."""
    w0, w1, w2, w3 = _WORDS(blake2b(_KEY(seed & _MASK, a, b, c), digest_size=16).digest())
    return w0 * _INV, w1 * _INV, w2 * _INV, w3 * _INV


def uniforms8(seed: int, a: int, b: int, c: int) -> tuple[float, ...]:
    """Eight independent uniforms in [0, 1) drawn from the key (seed, a, b, c)."""
    words = _WORDS8(blake2b(_KEY(seed & _MASK, a, b, c), digest_size=32).digest())
    return tuple(map(_SCALE, words))


def digests(seed: int, a: int, b: int, cs: Iterable[int], size: int) -> bytes:
    """The digests ``uniforms`` (``size`` 16) or ``uniforms8`` (32) draw from, for the keys
    (seed, a, b, c) of each ``c``, joined: their little-endian 32-bit words over 2**32 are the
    same uniforms, read many at once (``columns_noise.py``)."""
    s = seed & _MASK
    return b"".join([blake2b(_KEY(s, a, b, c), digest_size=size).digest() for c in cs])


def hex_digest(*parts: object, size: int = 16) -> str:
    """A stable hex string from any printable parts (for UUIDs and serials)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return blake2b(text, digest_size=size).hexdigest()
