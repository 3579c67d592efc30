from __future__ import annotations

import math
import threading
import time

import pytest

from costmeter.core import SimulatedClock, SystemClock
from costmeter.sampling.loop import SamplingLoop


def test_ticks_stay_on_the_grid_even_when_each_tick_takes_time() -> None:
    clock = SimulatedClock(1000.0)
    seen: list[float] = []

    def tick() -> None:
        seen.append(clock.now())
        clock.advance(0.3)  # work that takes 0.3 s must not push later ticks back

    loop = SamplingLoop(tick, interval_s=1.0, clock=clock)
    assert loop.run_until(1010.0) == 10
    assert seen == [1000.0 + k for k in range(10)]
    assert loop.missed == 0


def test_overrunning_tick_skips_missed_grid_points_instead_of_bursting() -> None:
    clock = SimulatedClock(0.0)
    seen: list[float] = []

    def tick() -> None:
        seen.append(clock.now())
        if len(seen) == 2:
            clock.advance(3.5)

    loop = SamplingLoop(tick, interval_s=1.0, clock=clock)
    loop.run_until(8.0)
    assert seen == [0.0, 1.0, 5.0, 6.0, 7.0]
    assert loop.missed == 3


def test_a_failing_tick_is_reported_once_and_sampling_goes_on() -> None:
    clock = SimulatedClock(0.0)
    messages: list[str] = []
    calls = {"n": 0}

    def tick() -> None:
        calls["n"] += 1
        if calls["n"] % 2:
            raise RuntimeError("sensor glitch")

    loop = SamplingLoop(tick, interval_s=1.0, clock=clock, on_error=messages.append)
    loop.run_until(6.0)
    assert calls["n"] == 6
    assert loop.ticks == 3 and loop.failed == 3
    assert messages == ["A sampling tick failed and was skipped: RuntimeError: sensor glitch"]


def test_background_loop_stops_promptly() -> None:
    ticks = threading.Event()
    loop = SamplingLoop(ticks.set, interval_s=0.05, clock=SystemClock())
    loop.start()
    assert ticks.wait(2.0)
    t0 = time.monotonic()
    loop.stop()
    assert not loop.running
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("interval", [0, -1, math.nan, math.inf, 1e-300, 1e308, 0.01])
def test_an_interval_out_of_bounds_is_refused_with_its_value(interval: float) -> None:
    # NaN passed the old `<= 0` check and made the schedule spin; 1e-300 vanishes next to t0.
    with pytest.raises(ValueError, match=r"interval .* is not a number of seconds") as err:
        SamplingLoop(lambda: None, interval_s=interval)
    assert "from 0.05 to 3600" in str(err.value)


def test_a_nan_end_is_refused_rather_than_ignored() -> None:
    loop = SamplingLoop(lambda: None, interval_s=1.0, clock=SimulatedClock(0.0))
    with pytest.raises(ValueError, match="nan"):
        loop.run_until(math.nan)


def test_the_shortest_interval_on_the_real_clock_ends_on_time_without_spinning() -> None:
    ticks = {"n": 0}

    def tick() -> None:
        ticks["n"] += 1

    loop = SamplingLoop(tick, interval_s=0.05, clock=SystemClock())
    wall, cpu = time.monotonic(), time.process_time()
    loop.run_until(time.time() + 1.0)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert 0.95 <= wall < 1.5
    assert 15 <= ticks["n"] <= 21
    assert cpu < 0.3, f"{cpu:.2f} s of CPU in {wall:.2f} s: the loop spins"
