"""Every rule, positive and negative, on simulated histories with runs (``advice_testing``).

One 2.5-hour history of 20 simulated GPUs is shared by the module: each GPU or run is a case
with the rules it must trigger (and so, by omission, every rule it must not).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter.advice.model import Recommendation
from costmeter.config import AlertsConfig, Config
from costmeter.service.advice import AdviceResult, advise, dismiss, restore, snooze
from costmeter.service.advice_facts import longest_gap
from costmeter.service.advice_testing import History, RunPlan, add_run, write_history
from costmeter.store import Store

HOURS = 2.5
END_S = HOURS * 3600

#: index -> "model:profile"; the comment says what that GPU (or its run) is for.
SPEC = [
    "a100:idle",  # 0 idle-gpu
    "h100:train",  # 1 cheaper-gpu: the table's H100 NVL does the same work for 25 % less
    "rtx4090:bursty",  # 2 clean
    "t4:input-bound",  # 3 input-bound (not underused: suppressed)
    "l4:memory-leak",  # 4 memory-pressure (fills the board after ~2 h)
    "a10g:free",  # 5 clean: no process
    "a100:memory-bound",  # 6 power-cap
    "t4:light",  # 7 underused-gpu + memory-headroom
    "a100:train",  # 8 run "ddp" GPU 0 (used)
    "a100:free",  # 9 run "ddp" GPU 1 (unused) -> overallocated
    "l4:light",  # 10 sweep "lr" run
    "l4:light",  # 11 sweep "lr" run
    "l4:light",  # 12 sweep "lr" run -> pack-sweep
    "a100:train",  # 13 run "budgeted" (budget 0.5, still running) -> budget-forecast
    "h100:train",  # 14 run "oom" (died out of memory) -> memory-pressure
    "h100:train",  # 15 run "ddp-ok" GPU 0 -> clean
    "h100:train",  # 16 run "ddp-ok" GPU 1 -> clean
    "h100:train",  # 17 sweep "big" run -> cheaper-gpu (no packing)
    "h100:train",  # 18 sweep "big" run
    "a100:train",  # 19 run "rich" (budget 1000, still running) -> clean
    "a100:idle",  # 20 run "early" for the first hour: idle in the run and alone after it
]

#: (device index or None, run name or None, sweep or None) -> the rules it must trigger.
Case = tuple[int | None, str | None, str | None]
EXPECTED: dict[Case, set[str]] = {
    (0, None, None): {"idle-gpu"},
    (1, None, None): {"cheaper-gpu"},
    (2, None, None): set(),
    (3, None, None): {"input-bound"},
    (4, None, None): {"memory-pressure"},
    (5, None, None): set(),
    (6, None, None): {"power-cap"},
    (7, None, None): {"underused-gpu", "memory-headroom"},
    (None, "ddp", None): {"overallocated"},
    (8, "ddp", None): set(),
    (9, "ddp", None): set(),
    (None, None, "lr"): {"pack-sweep"},
    (10, "lr-10", "lr"): set(),  # packing replaces the runs' underused/headroom advice
    (11, "lr-11", "lr"): set(),
    (12, "lr-12", "lr"): set(),
    (None, "budgeted", None): {"budget-forecast"},
    (13, "budgeted", None): set(),
    (14, "oom", None): {"memory-pressure"},  # its cheaper-gpu dropped: its peak is no need
    (14, None, None): {"cheaper-gpu"},  # the GPU alone after the run: a steady H100 train
    (15, "ddp-ok", None): set(),
    (16, "ddp-ok", None): set(),
    (None, None, "big"): set(),
    (17, "big-17", "big"): {"cheaper-gpu"},
    (18, "big-18", "big"): {"cheaper-gpu"},
    (None, "rich", None): set(),
    (19, "rich", None): set(),
    (None, "early", None): set(),
    (20, "early", None): {"idle-gpu"},
    (20, None, None): {"idle-gpu"},
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    h = write_history(
        tmp_path_factory.mktemp("adv") / "sim.db", SPEC, hours=HOURS, interval_s=20.0, seed=3
    )
    end = END_S - 60
    add_run(h, RunPlan("ddp", (8, 9), 0, end))
    for i in (10, 11, 12):
        add_run(h, RunPlan(f"lr-{i}", (i,), 0, end, sweep="lr"))
    add_run(h, RunPlan("budgeted", (13,), 0, None, spec={"budget": 0.5}))
    add_run(
        h,
        RunPlan(
            "oom",
            (14,),
            0,
            1.5 * 3600,
            status="failed",
            exit_code=1,
            message="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
        ),
    )
    add_run(h, RunPlan("ddp-ok", (15, 16), 0, end))
    for i in (17, 18):
        add_run(h, RunPlan(f"big-{i}", (i,), 0, end, sweep="big"))
    add_run(h, RunPlan("rich", (19,), 0, None, spec={"budget": 1000.0}))
    add_run(h, RunPlan("early", (20,), 0, 3600))
    return h


@pytest.fixture(scope="module")
def result(history: History) -> AdviceResult:
    with Store.open(history.db) as store:
        return advise(store, Config(), since_s=24 * 3600, now=history.end + 1)


def _case(r: Recommendation) -> Case:
    t = r.target
    return (t.device, t.run_name, t.sweep)


def _found(result: AdviceResult) -> dict[Case, set[str]]:
    out: dict[Case, set[str]] = {}
    for r in result.recommendations:
        out.setdefault(_case(r), set()).add(r.rule)
    return out


def _cases() -> Iterator[Case]:
    yield from EXPECTED


@pytest.mark.parametrize("case", list(_cases()), ids=str)
def test_each_gpu_and_run_gets_exactly_its_rules(result: AdviceResult, case: Case) -> None:
    assert _found(result).get(case, set()) == EXPECTED[case]


def test_nothing_unexpected_and_no_failures(result: AdviceResult) -> None:
    assert set(_found(result)) <= set(EXPECTED)
    assert result.messages == ()
    rules = {r.rule for r in result.recommendations}
    assert rules == {
        "idle-gpu",
        "underused-gpu",
        "overallocated",
        "memory-headroom",
        "memory-pressure",
        "input-bound",
        "power-cap",
        "pack-sweep",
        "budget-forecast",
        "cheaper-gpu",
    }


def test_sorted_by_money_and_totalled(result: AdviceResult) -> None:
    money = [r.savings.money_per_month if r.savings else 0.0 for r in result.recommendations]
    assert money == sorted(money, reverse=True)
    assert result.total_savings_per_month == pytest.approx(sum(money))
    assert result.currency == "USD"
    # The window is cut to the recorded history.
    assert result.end - result.start == pytest.approx(HOURS * 3600, abs=60)


def test_idle_savings_are_the_gpus_price_for_the_idle_share(result: AdviceResult) -> None:
    (idle,) = [r for r in result.recommendations if r.rule == "idle-gpu" and r.target.device == 0]
    assert idle.savings is not None
    share = idle.evidence.values["idle_share"]
    assert share > 0.95  # the idle profile never works
    # A100 80GB at 2.79 USD/h (the shipped table), idle all the time: about 2.79 x 730.5.
    assert idle.savings.money_per_month == pytest.approx(2.79 * 730.5 * share, rel=0.02)
    assert "2.79 USD/h" in idle.savings.formula and "730.5" in idle.savings.formula
    assert idle.savings.kwh_per_month > 0


def test_evidence_is_drawable_and_json_has_the_contract(result: AdviceResult) -> None:
    for r in result.recommendations:
        for s in r.evidence.series:
            assert 0 < len(s.ts) <= 300 and len(s.ts) == len(s.values)
        data = r.to_json()
        assert {"rule", "title", "target", "savings_per_month", "evidence"} <= set(data)
        assert {"host", "device", "run"} <= set(data["target"])
        assert 0.0 <= r.confidence <= 1.0
        assert r.evidence.facts and r.action.text


def test_power_cap_states_energy_and_time_change(result: AdviceResult) -> None:
    (cap,) = [r for r in result.recommendations if r.rule == "power-cap"]
    labels = dict(cap.evidence.facts)
    assert labels["Expected time change"].startswith("+")
    assert labels["Expected energy change"].startswith("-")
    assert cap.savings is not None and cap.savings.kwh_per_month > 0
    assert "nvidia-smi" in cap.action.text and "-pl" in cap.action.text


def test_overallocated_and_pack_sweep_offer_a_relaunch(result: AdviceResult) -> None:
    (over,) = [r for r in result.recommendations if r.rule == "overallocated"]
    assert over.action.kind == "relaunch" and over.action.changes == {"gpus": 1}
    (pack,) = [r for r in result.recommendations if r.rule == "pack-sweep"]
    assert pack.action.changes["per_gpu"] >= 2


def test_thresholds_come_from_the_config(history: History) -> None:
    # With a 10% p95 threshold the light GPU is no longer "under-used".
    config = Config(advice={"underused_p95_pct": 10.0, "idle_minutes": 240.0})
    with Store.open(history.db) as store:
        res = advise(store, config, since_s=24 * 3600, now=history.end + 1)
    rules = {(r.rule, r.target.device) for r in res.recommendations}
    assert ("underused-gpu", 7) not in rules
    assert ("idle-gpu", 0) not in rules  # no idle stretch of 4 hours in 3 hours of history


def test_day_budget_positive_and_negative(history: History) -> None:
    def day_rules(budget: float) -> list[Recommendation]:
        config = Config(alerts=AlertsConfig(daily_budget=budget))
        with Store.open(history.db) as store:
            res = advise(store, config, since_s=24 * 3600, now=history.end + 1)
        return [r for r in res.recommendations if r.target.host == "all hosts"]

    (over,) = day_rules(1.0)
    assert over.rule == "budget-forecast" and over.evidence.values["forecast"] > 1.0
    assert day_rules(1e7) == []


def test_dismiss_snooze_restore(history: History, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(history.db, db)
    now = history.end + 1
    with Store.open(db) as store:
        first = advise(store, Config(), since_s=86400, now=now)
        top, second = first.recommendations[0], first.recommendations[1]
        dismiss(store, top.key, top.rule)
        snooze(store, second.key, second.rule, until=now + 3600)
        res = advise(store, Config(), since_s=86400, now=now)
        assert top.key not in {r.key for r in res.recommendations}
        assert {r.key for r in res.hidden} == {top.key, second.key}
        assert res.total_savings_per_month < first.total_savings_per_month
        # The snooze runs out; the dismissal stays until restored.
        later = advise(store, Config(), since_s=86400, now=now + 7200)
        assert {r.key for r in later.hidden} == {top.key}
        restore(store, top.key)
        back = advise(store, Config(), since_s=86400, now=now)
        assert {r.key for r in back.hidden} == {second.key}


def test_a_gpu_is_described_alone_outside_its_runs(result: AdviceResult) -> None:
    alone = [r for r in result.recommendations if r.target.device == 20 and r.target.run is None]
    (idle,) = alone
    # The run held it for the first hour of 2.5: the GPU alone is looked at for the rest.
    assert idle.evidence.values["idle_s"] == pytest.approx(1.5 * 3600, rel=0.02)


def test_longest_gap() -> None:
    assert longest_gap(0, 100, []) == (0, 100)
    assert longest_gap(0, 100, [(10, 30), (20, 40), (90, 100)]) == (40, 90)
    assert longest_gap(0, 100, [(0, 100)])[1] - longest_gap(0, 100, [(0, 100)])[0] == 0
    assert longest_gap(0, 100, [(0, 70)]) == (70, 100)


def test_short_leak_is_not_yet_pressure(tmp_path: Path) -> None:
    # One hour in, a leaking process holds about 60% of the board: no pressure yet.
    h = write_history(tmp_path / "short.db", ["l4:memory-leak", "h100:train"], hours=1.0)
    with Store.open(h.db) as store:
        res = advise(store, Config(), since_s=86400, now=h.end + 1)
    # (Both GPUs' work would be cheaper on another model: cheaper-gpu is not the point here.)
    assert [r.rule for r in res.recommendations if r.rule != "cheaper-gpu"] == []
