"""The named bounds, the parsers that use them, and the clock and monitor that must not accept an
interval or a time that would make them spin, die or quietly change the value."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.core import SimulatedClock, SystemClock
from costmeter.core import bounds as b
from costmeter.core.bounds import Bound, BoundError
from costmeter.core.units import parse_duration, parse_money
from costmeter.service.monitor import Monitor, MonitorOptions

BAD_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e-300", "1e308", "abc", "", "1_000"]


@pytest.mark.parametrize("text", BAD_NUMBERS)
def test_an_interval_out_of_bounds_names_the_value_and_the_bound(text: str) -> None:
    with pytest.raises(BoundError) as err:
        b.INTERVAL_S.parse(text, "--interval")
    message = str(err.value)
    assert message.startswith(f"--interval {text.strip() or repr(text)} is not a number of seconds")
    assert message.endswith("give a value from 0.05 to 3600.")


@pytest.mark.parametrize("text", ["0.05", "1", "2.5", "3600", " 10 "])
def test_an_interval_inside_the_bound_is_read(text: str) -> None:
    assert b.INTERVAL_S.parse(text, "--interval") == float(text)


def test_a_bound_is_also_a_value_error_and_a_costmeter_error() -> None:
    """``main`` prints a CostmeterError as a sentence (exit 2); older callers catch ValueError."""
    from costmeter.core import CostmeterError

    assert issubclass(BoundError, ValueError) and issubclass(BoundError, CostmeterError)


def test_whole_numbers_refuse_fractions_and_accept_a_whole_float() -> None:
    runs = Bound("a number of runs", 1, 8, integer=True)
    assert runs.parse("3", "-k") == 3 and runs.parse("3.0", "-k") == 3
    with pytest.raises(BoundError, match=r"-k 2\.5 is not a number of runs; give a whole number"):
        runs.parse("2.5", "-k")
    with pytest.raises(BoundError, match="from 1 to 8"):
        runs.check(9, "-k")


def test_an_open_low_end_is_said_so_and_refused() -> None:
    with pytest.raises(BoundError, match=r"give a value above 0 and at most 1000000000\."):
        b.BUDGET.check(0.0, "--budget")
    assert b.BUDGET.check(0.01, "--budget") == 0.01


def test_a_pasted_megabyte_is_cut_in_the_message() -> None:
    with pytest.raises(BoundError) as err:
        b.INTERVAL_S.parse("9" * 1_000_000, "--interval")
    assert len(str(err.value)) < 200 and "..." in str(err.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0", "0 is not a duration; give a value above 0 and at most 10 years"),
        ("0s", "0s is not a duration"),
        ("3653d", "3653d is not a duration; give a value above 0 and at most 10 years"),
        ("9" * 400, "is not a duration"),  # float('9'*400) is inf
        ("nan", "'nan' is not a duration; use a number with s, m, h, d or w"),
        ("-1", "'-1' is not a duration"),
        ("1e308", "'1e308' is not a duration"),
    ],
)
def test_durations_out_of_bounds_name_the_text(text: str, words: str) -> None:
    with pytest.raises(BoundError, match=words[:30].replace("(", r"\(")) as err:
        parse_duration(text, label="--duration")
    assert str(err.value).startswith("--duration ") and words in str(err.value)


def test_durations_inside_the_bound_are_read() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("3652d") == 3652 * 86400.0
    assert parse_duration("0.5") == 0.5


def test_a_window_says_it_is_a_window() -> None:
    with pytest.raises(BoundError, match="--since 0 is not a duration to look back"):
        parse_duration("0", b.WINDOW_S, "--since")


@pytest.mark.parametrize(
    ("text", "value"), [("2.50", 2.5), ("$2.50", 2.5), ("2.50 EUR", 2.5), (".5", 0.5)]
)
def test_money_is_read(text: str, value: float) -> None:
    assert parse_money(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "1e308", "abc", "9" * 400, "2000000000"])
def test_money_out_of_bounds_is_refused_with_the_text(text: str) -> None:
    with pytest.raises(BoundError) as err:
        parse_money(text, label="--budget")
    assert str(err.value).startswith("--budget ") and "an amount of money" in str(err.value)


def test_every_advice_threshold_has_a_bound_that_holds_its_default() -> None:
    from costmeter.advice.thresholds import DEFAULT_THRESHOLDS

    for key, value in DEFAULT_THRESHOLDS.to_mapping().items():
        assert b.advice_bound(key).allows(value), key
    assert b.advice_bound("idle_util_pct").high == 100.0
    assert b.advice_bound("pack_min_runs").integer


# -- the clock -------------------------------------------------------------------------------
def _set_soon(event: threading.Event, after: float = 0.2) -> threading.Timer:
    timer = threading.Timer(after, event.set)
    timer.start()
    return timer


@pytest.mark.parametrize("target", [math.inf, 1e12, 1e300])
def test_waiting_until_far_away_waits_for_stop_instead_of_dying(target: float) -> None:
    """``stop.wait(inf)`` raised OverflowError and took the sampler thread down (agent
    --interval inf); a target beyond threading.TIMEOUT_MAX did the same."""
    stop = threading.Event()
    timer = _set_soon(stop)
    t0 = time.monotonic()
    assert (
        SystemClock().sleep_until(time.time() + target if target < math.inf else target, stop)
        is False
    )
    assert 0.15 <= time.monotonic() - t0 < 2.0
    timer.join()


def test_waiting_until_nan_is_refused_not_skipped() -> None:
    with pytest.raises(ValueError, match="nan"):
        SystemClock().sleep_until(math.nan, threading.Event())
    with pytest.raises(ValueError, match="nan"):
        SimulatedClock(0.0).sleep_until(math.nan)


def test_waiting_forever_without_a_stop_event_is_refused() -> None:
    with pytest.raises(ValueError, match="never end"):
        SystemClock().sleep_until(math.inf)


def test_a_near_wait_still_returns_on_time() -> None:
    clock = SystemClock()
    t0 = time.monotonic()
    assert clock.sleep_until(time.time() + 0.1, threading.Event()) is True
    assert clock.sleep_until(time.time() + 0.1) is True
    assert 0.18 <= time.monotonic() - t0 < 1.0


# -- the monitor -----------------------------------------------------------------------------
@pytest.mark.parametrize("interval", [0.0, -1.0, math.nan, math.inf, 1e-300, 1e308])
def test_the_monitor_refuses_an_interval_instead_of_changing_it(
    tmp_path: Path, interval: float
) -> None:
    """``interval_s or config.interval_s`` turned 0 into the configured 1 s without a word."""
    options = MonitorOptions(db_path=tmp_path / "c.db", config=Config(), interval_s=interval)
    with pytest.raises(BoundError, match="is not a number of seconds between samples") as err:
        Monitor(options, on_message=lambda _m: None)
    assert b.show(interval) in str(err.value)
    assert not (tmp_path / "c.db").exists()


def test_the_monitor_keeps_a_valid_interval_and_falls_back_only_when_none(tmp_path: Path) -> None:
    given = Monitor(MonitorOptions(tmp_path / "c.db", Config(), interval_s=0.05))
    assert given.interval_s == 0.05
    assert Monitor(MonitorOptions(tmp_path / "c.db", Config())).interval_s == 1.0
