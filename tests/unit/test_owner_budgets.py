"""Budgets per owner (``[[budgets]]``): today, this month, the day's forecast and the month end of
each owner, from ticks of two users' processes written through the real writer into SQLite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import owned_history as oh
from costmeter.config import Config, parse_config
from costmeter.core.owner import Owner
from costmeter.cost.ledger import format_money
from costmeter.service import budgets as budgets_mod
from costmeter.service.alerts import OwnerBudgetWatch
from costmeter.service.budgets import PastSpending, budget_status, describe_over, over_budgets
from costmeter.store import Store

NOW = datetime(2026, 12, 15, 12, 0, 5, tzinfo=UTC)
A100_HOURLY = 2.79  # USD/h in the default price table, energy included
ALICE = Owner(uid=1001, user="alice")
BOB = Owner(uid=1002, user="bob", job_id="4242", account="nlp-lab")

CONFIG = """
[[attribution.rules]]
project = "vision"
users = ["alice"]

[[budgets]]
by = "project"
key = "vision"
daily = 20.0
monthly = 10.0

[[budgets]]
by = "user"
key = "bob"
daily = 5.0

[[budgets]]
by = "user"
key = "alice"
monthly = 500.0
"""


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC).timestamp()


def history() -> list[oh.Stretch]:
    busy_alice = oh.Holder(0, 5001, ALICE, util=90.0, power_w=300.0)
    idle_bob = oh.Holder(1, 5002, BOB, util=0.0, power_w=60.0)
    busy_bob = oh.Holder(1, 5003, BOB, util=80.0, power_w=280.0)
    return [
        # Earlier this month, before the trailing 7 days: bob busy for an hour.
        oh.Stretch(at(1, 10), at(1, 11), (busy_bob,)),
        # Within the trailing 7 days: alice busy for an hour.
        oh.Stretch(at(10, 10), at(10, 11), (busy_alice,)),
        # Today 09:00-12:00: alice busy on GPU 0, bob holding GPU 1 and running nothing.
        oh.Stretch(at(15, 9), at(15, 12), (busy_alice, idle_bob)),
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    db = tmp_path_factory.mktemp("budgets") / "owners.db"
    oh.write(db, history())
    s = Store.open(db)
    yield s
    s.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(CONFIG)
    return parse_config(CONFIG, path)


def test_each_owner_gets_its_own_day_month_and_forecast(store: Store, config: Config) -> None:
    vision, bob, alice = budget_status(store, config, now=NOW)
    hour = A100_HOURLY
    # Project vision is alice's work: 3 h today, 1 h on the 10th.
    assert vision.label == "project vision"
    assert vision.spent_today == pytest.approx(3 * hour, rel=0.01)
    assert vision.per_hour == pytest.approx(hour, rel=0.01)
    left_h = (at(16, 0) - NOW.timestamp()) / 3600.0
    assert vision.day_forecast == pytest.approx(3 * hour + hour * left_h, rel=0.01)
    assert vision.month_to_date == pytest.approx(4 * hour, rel=0.01)
    # Trailing 7 whole days and today (from the 8th on): 4 h over 7.5 days, extended over the
    # 16.5 days left.
    assert vision.projection.days_observed == pytest.approx(7.5, abs=1e-3)
    assert vision.projection.month_end == pytest.approx(4 * hour + 4 * hour / 7.5 * 16.5, rel=0.01)
    assert vision.daily_over is False and vision.day_forecast_over is True
    assert vision.monthly_over is True and vision.month_end_over is True
    # Bob held GPU 1 all morning running nothing: his (idle) cost, not machine idle.
    assert bob.label == "user bob"
    assert bob.spent_today == pytest.approx(3 * hour, rel=0.01)
    assert bob.per_hour == pytest.approx(hour, rel=0.01)
    assert bob.month_to_date == pytest.approx(4 * hour, rel=0.01)  # and 1 h on the 1st
    # His hour on the 1st is outside the trailing week: only today's 3 h stand for his pace.
    assert bob.projection.month_end == pytest.approx(4 * hour + 3 * hour / 7.5 * 16.5, rel=0.01)
    assert bob.daily_over is True and bob.monthly_over is None
    assert alice.month_to_date == pytest.approx(vision.month_to_date, rel=1e-9)
    assert alice.daily_over is None and alice.monthly_over is False
    assert [s.label for s in over_budgets((vision, bob, alice))] == ["project vision", "user bob"]
    assert all(s.currency == "USD" for s in (vision, bob, alice))


def test_one_chargeback_per_period_per_dimension(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    real = budgets_mod.chargeback

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(tuple(args[4]))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(budgets_mod, "chargeback", counting)
    statuses = budget_status(store, config, now=NOW)
    assert len(statuses) == 3
    # Two dimensions (project, user) x four periods (today, last hour, and the days before
    # today of this month and of the trailing week).
    assert sorted(calls) == [("project",)] * 4 + [("user",)] * 4
    # Kept between calls, the closed days are priced once a day: then only today and its pace.
    past = PastSpending()
    calls.clear()
    assert budget_status(store, config, now=NOW, past=past) == statuses
    assert len(calls) == 8
    calls.clear()
    later = budget_status(store, config, now=NOW + timedelta(minutes=5), past=past)
    assert sorted(calls) == [("project",)] * 2 + [("user",)] * 2
    assert [s.month_to_date for s in later] == [s.month_to_date for s in statuses]
    calls.clear()
    budget_status(store, config, now=NOW + timedelta(days=1), past=past)  # a new day
    assert len(calls) == 8


def test_an_owner_with_no_use_spends_nothing(store: Store, tmp_path: Path) -> None:
    text = '[[budgets]]\nby = "user"\nkey = "carol"\ndaily = 1.0\nmonthly = 2.0\n'
    carol = parse_config(text, tmp_path / "c.toml")
    (status,) = budget_status(store, carol, now=NOW)
    assert status.spent_today == 0.0 and status.month_to_date == 0.0
    assert status.daily_over is False and status.monthly_over is False


def test_no_budgets_reads_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("no budget: nothing to price")

    monkeypatch.setattr(budgets_mod, "chargeback", fail)
    assert budget_status(store, Config(), now=NOW) == ()


def test_a_day_with_no_history_yet(tmp_path: Path, config: Config) -> None:
    db = tmp_path / "new.db"
    oh.write(db, [oh.Stretch(at(15, 11, 30), at(15, 12), (oh.Holder(0, 7, ALICE, 90.0, 300.0),))])
    s = Store.open(db)
    try:
        vision = budget_status(s, config, now=NOW)[0]
    finally:
        s.close()
    half = A100_HOURLY / 2
    assert vision.spent_today == pytest.approx(half, rel=0.01)
    # Half an hour of history: the pace is that half hour's, the projection stands on it.
    assert vision.projection.days_observed == pytest.approx(
        (NOW.timestamp() - at(15, 11, 30) - 10) / 86400.0, rel=0.01
    )
    assert vision.projection.month_end > vision.month_to_date
    assert vision.now - vision.day_start == pytest.approx(timedelta(hours=12, seconds=5).seconds)


def test_alerts_once_per_owner_per_day_and_month(store: Store, config: Config) -> None:
    statuses = budget_status(store, config, now=NOW)
    watch = OwnerBudgetWatch()
    first = watch.update(statuses, format_money)
    assert [a.title for a in first] == [
        "Project vision passed its monthly budget",
        "User bob passed its daily budget",
    ]
    assert first[1].message == "User bob passed its daily budget: $8.37 of $5.00."
    assert watch.update(statuses, format_money) == []
    later = budget_status(store, config, now=NOW + timedelta(days=1))  # the 16th: nothing today
    assert watch.update(later, format_money) == []
    assert describe_over(statuses[0], format_money) == [
        "project vision: $11.16 of $10.00 this month"
    ]
