"""The workload profiles' ``load`` over numpy columns: many seconds of one process at once.

Each function computes, element by element, the same IEEE operations in the same order as the
scalar profile in ``profiles.py`` (a branch becomes ``np.where``, ``min`` ``np.minimum``), so
every element equals the scalar result bit for bit (tests/unit/test_simulated_columns.py holds
every profile to it). A profile without a column version here is simulated second by second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from costmeter.sampling.simulated.profiles import (
    LEAK_CAP,
    LEAK_FILL_S,
    LEAK_START,
    PROFILES,
    LoadFn,
)

#: (u0, u1, u2, seconds since start (int64), busy (bool)) -> (gpu %, memory %, memory share,
#: CPU %), each an array shaped like ``u0``.
LoadColumns = Callable[[Any, Any, Any, Any, Any], tuple[Any, Any, Any, Any]]


def _full(like: Any, value: float) -> Any:
    return np.full(like.shape, value, np.float64)


def _free(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    return _full(u0, 0.0), _full(u0, 0.0), _full(u0, 0.0), _full(u0, 0.0)


def _idle(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    return np.where(u0 > 0.95, 1.0 + 2.0 * u1, 0.0), _full(u0, 0.0), _full(u0, 0.30), 0.5 + 1.5 * u2


def _train(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    return 90.0 + 8.0 * u0, 40.0 + 20.0 * u1, 0.70 + 0.005 * u2, 95.0 + 15.0 * u2


def _bursty(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    return (
        np.where(busy, 85.0 + 14.0 * u0, 3.0 * u0),
        np.where(busy, 35.0 + 25.0 * u1, 2.0 * u1),
        _full(u0, 0.55),
        np.where(busy, 100.0 + 20.0 * u2, 4.0 + 8.0 * u2),
    )


def _input_bound(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    return 20.0 + 15.0 * u0, 8.0 + 10.0 * u1, _full(u0, 0.45), 300.0 + 100.0 * u2


def _memory_leak(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    held = np.minimum(LEAK_CAP, LEAK_START + (LEAK_CAP - LEAK_START) * elapsed / LEAK_FILL_S)
    return 60.0 + 20.0 * u0, 30.0 + 10.0 * u1, held, 90.0 + 20.0 * u2


def _memory_bound(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    return 45.0 + 15.0 * u0, 86.0 + 10.0 * u1, _full(u0, 0.60), 95.0 + 15.0 * u2


def _light(u0: Any, u1: Any, u2: Any, elapsed: Any, busy: Any) -> tuple[Any, Any, Any, Any]:
    return 8.0 + 14.0 * u0, 3.0 + 5.0 * u1, _full(u0, 0.10), 30.0 + 20.0 * u2


_BY_NAME: dict[str, LoadColumns] = {
    "free": _free,
    "idle": _idle,
    "train": _train,
    "bursty": _bursty,
    "input-bound": _input_bound,
    "memory-leak": _memory_leak,
    "memory-bound": _memory_bound,
    "light": _light,
}

#: Column versions by the scalar load function they reproduce.
COLUMNS: dict[LoadFn, LoadColumns] = {
    PROFILES[name].load: fn for name, fn in _BY_NAME.items() if name in PROFILES
}


def load_columns(load: LoadFn) -> LoadColumns | None:
    """The column version of the scalar profile ``load``, or None where there is none."""
    return COLUMNS.get(load)
