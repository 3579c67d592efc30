"""``noise.uniforms`` and ``noise.uniforms8`` for many keys at once, as numpy rows.

Row ``i`` holds exactly the floats ``uniforms(seed, a, b, cs[i])`` (width 4) or
``uniforms8(seed, a, b, cs[i])`` (width 8) return: the same blake2b digests, their 32-bit
little-endian words times 2**-32 (a uint32 times a float64 is the word's exact float times it,
as in Python).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from costmeter.sampling.simulated.noise import digests

_INV = 1.0 / 4294967296.0


def uniform_rows(seed: int, a: int, b: int, cs: Iterable[int], width: int = 8) -> Any:
    """(len(cs), width) float64: the uniforms of key (seed, a, b, c) for each ``c``."""
    if width not in (4, 8):
        raise ValueError(f"width must be 4 or 8, not {width}")
    raw = digests(seed, a, b, cs, 4 * width)
    return np.frombuffer(raw, "<u4").reshape(-1, width) * _INV
