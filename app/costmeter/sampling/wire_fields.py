"""Checked reading of decoded JSON for :mod:`costmeter.sampling.wire`: every helper raises
:class:`WireError` with a sentence naming the field, never ``KeyError``/``TypeError``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from costmeter.core.errors import CostmeterError

MAX_TEXT = 1024
MAX_U64 = 2**64 - 1
BIG = 1e15

# The protocol's limits (see costmeter.sampling.wire): far above anything real, low enough that
# hostile input cannot make work explode.
MAX_CMDLINE = 16384
MAX_DEVICES = 256
MAX_PROCESSES = 16384
MAX_CORES = 16384
MAX_PACKAGES = 64
#: Timestamps: seconds since the epoch, before the year 2500.
MAX_TS = 16_725_225_600.0
MAX_PID = 2**32
#: Unix user ids are 32-bit unsigned.
MAX_UID = 2**32 - 1
#: An owner's ``unreadable`` list: at most this many source names, each at most ``MAX_SOURCE``.
MAX_SOURCES = 16
MAX_SOURCE = 64


class WireError(CostmeterError):
    """A document from (or for) an agent is not what the protocol says."""


# -- reading checked values ---------------------------------------------------------------------
def obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WireError(f"{what} must be a JSON object, not {kind(value)}.")
    return value


def kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def field(d: Mapping[str, Any], key: str, what: str, *, optional: bool) -> object:
    if key not in d:
        if optional:
            return None
        raise WireError(f"{what} has no '{key}'.")
    return d[key]


def num(
    d: Mapping[str, Any],
    key: str,
    what: str,
    lo: float = 0.0,
    hi: float = BIG,
    *,
    optional: bool = False,
) -> float | None:
    value = field(d, key, what, optional=optional)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{what}: '{key}' must be a number, not {kind(value)}.")
    try:
        out = float(value)
    except OverflowError as err:
        raise WireError(f"{what}: '{key}' is out of range.") from err
    if not math.isfinite(out) or not lo <= out <= hi:
        raise WireError(f"{what}: '{key}' must be between {lo:g} and {hi:g}, not {value!r:.40}.")
    return out


def req_num(d: Mapping[str, Any], key: str, what: str, lo: float = 0.0, hi: float = BIG) -> float:
    out = num(d, key, what, lo, hi)
    assert out is not None
    return out


def whole(
    d: Mapping[str, Any],
    key: str,
    what: str,
    lo: int = 0,
    hi: int = MAX_U64,
    *,
    optional: bool = False,
) -> int | None:
    value = field(d, key, what, optional=optional)
    if value is None and optional:
        return None
    return check_int(value, f"{what}: '{key}'", lo, hi)


def check_int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{what} must be a whole number, not {kind(value)}.")
    if not lo <= value <= hi:
        raise WireError(f"{what} must be between {lo} and {hi}.")
    return value


def req_whole(d: Mapping[str, Any], key: str, what: str, lo: int = 0, hi: int = MAX_U64) -> int:
    out = whole(d, key, what, lo, hi)
    assert out is not None
    return out


def text(
    d: Mapping[str, Any], key: str, what: str, *, limit: int = MAX_TEXT, optional: bool = False
) -> str | None:
    value = field(d, key, what, optional=optional)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise WireError(f"{what}: '{key}' must be a string, not {kind(value)}.")
    if len(value) > limit:
        raise WireError(f"{what}: '{key}' is longer than {limit} characters.")
    return value


def req_text(d: Mapping[str, Any], key: str, what: str, *, limit: int = MAX_TEXT) -> str:
    out = text(d, key, what, limit=limit)
    assert out is not None
    return out


def seq(
    d: Mapping[str, Any], key: str, what: str, limit: int, *, optional: bool = False
) -> Sequence[Any] | None:
    value = field(d, key, what, optional=optional)
    if value is None and optional:
        return None
    if not isinstance(value, list | tuple):
        raise WireError(f"{what}: '{key}' must be a list, not {kind(value)}.")
    if len(value) > limit:
        raise WireError(f"{what}: '{key}' has more than {limit} entries.")
    return value


def req_seq(d: Mapping[str, Any], key: str, what: str, limit: int) -> Sequence[Any]:
    out = seq(d, key, what, limit)
    assert out is not None
    return out


def flag(d: Mapping[str, Any], key: str, what: str, *, default: bool | None = None) -> bool:
    if key not in d and default is not None:
        return default
    value = field(d, key, what, optional=False)
    if not isinstance(value, bool):
        raise WireError(f"{what}: '{key}' must be true or false, not {kind(value)}.")
    return value


def finite(value: float | None) -> float | None:
    """Optional floats go out as null when a sampler produced NaN or infinity."""
    if value is None or not math.isfinite(value):
        return None
    return value
