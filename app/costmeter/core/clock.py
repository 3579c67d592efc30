"""Clocks: the real one, and a simulated one that lets hours of history be written in seconds."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

#: The longest single wait: far below ``threading.TIMEOUT_MAX``, and long enough to cost nothing.
MAX_WAIT_S = 3600.0


def _check_time(t: float) -> None:
    """A NaN target would make every comparison false: a loop waiting on it would spin."""
    if math.isnan(t):
        raise ValueError("A clock cannot wait until t = nan.")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Wait until ``t``; return False if ``stop`` was set first."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Waits in pieces of at most ``MAX_WAIT_S``: a far-off ``t`` (even ``inf``, with a
        ``stop`` event) neither overflows the timeout nor wakes early."""
        _check_time(t)
        if stop is None and math.isinf(t):
            raise ValueError("Waiting until t = inf without a stop event would never end.")
        while True:
            delay = t - time.time()
            if delay <= 0:
                return stop is None or not stop.is_set()
            piece = min(delay, MAX_WAIT_S)
            if stop is None:
                time.sleep(piece)
            elif stop.wait(piece):
                return False


class SimulatedClock:
    """A clock that only moves when told to; ``sleep_until`` jumps to the target at once."""

    def __init__(self, start: float) -> None:
        self._t = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        _check_time(t)
        with self._lock:
            self._t = max(self._t, t)
        return not (stop is not None and stop.is_set())
