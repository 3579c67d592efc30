"""Clocks: the real one, and a simulated one that lets hours of history be written in seconds."""

from __future__ import annotations

import threading
import time
from typing import Protocol


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
        delay = t - time.time()
        if stop is None:
            if delay > 0:
                time.sleep(delay)
            return True
        if delay <= 0:
            return not stop.is_set()
        return not stop.wait(delay)


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
        with self._lock:
            self._t = max(self._t, t)
        return not (stop is not None and stop.is_set())
