"""A fixed-interval loop that never drifts and never dies of one bad tick.

Ticks are scheduled on a grid ``t0 + k * interval``: the time a tick takes does not push later ticks
back. When a tick overruns by a whole interval or more, the loop resumes at the next grid point and
counts the ones it skipped, rather than running them in a burst.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from costmeter.core import Clock, SystemClock
from costmeter.core.bounds import INTERVAL_S


class SamplingLoop:
    def __init__(
        self,
        tick: Callable[[], None],
        *,
        interval_s: float,
        clock: Clock | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._tick = tick
        #: Bounded (0.05 to 3600 s, finite): NaN or a tiny interval would make the schedule
        #: below spin without sleeping; refused here whatever the caller checked.
        self.interval_s = INTERVAL_S.check(interval_s, "The sampling interval")
        self._clock = clock or SystemClock()
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors_seen: set[str] = set()
        self.ticks = 0
        self.missed = 0
        self.failed = 0

    def run_until(self, end_ts: float | None = None) -> int:
        """Run on this thread until ``end_ts`` (clock time) or ``stop()``; return ticks run."""
        if end_ts is not None and math.isnan(end_ts):
            raise ValueError("The sampling loop cannot end at t = nan; give a time or None.")
        t0 = self._clock.now()
        k = 0
        while not self._stop.is_set():
            due = t0 + k * self.interval_s
            if end_ts is not None and due >= end_ts:
                self._clock.sleep_until(end_ts, self._stop)  # honour the whole duration
                break
            if not self._clock.sleep_until(due, self._stop):
                break
            self._run_one()
            k += 1
            now = self._clock.now()
            if now - (t0 + k * self.interval_s) >= self.interval_s:
                resume = math.ceil((now - t0) / self.interval_s)
                self.missed += resume - k
                k = resume
        return self.ticks

    def _run_one(self) -> None:
        try:
            self._tick()
            self.ticks += 1
        except Exception as exc:  # one bad tick must not stop sampling
            self.failed += 1
            text = f"A sampling tick failed and was skipped: {type(exc).__name__}: {exc}"
            if text not in self._errors_seen and self._on_error is not None:
                self._errors_seen.add(text)
                self._on_error(text)

    def start(self, end_ts: float | None = None) -> None:
        """Run in a daemon thread (so the caller, e.g. the GUI, never waits on a tick)."""
        if self._thread is not None:
            raise RuntimeError("The sampling loop is already running.")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run_until, args=(end_ts,), name="costmeter-sampler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a started loop to end by itself; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
