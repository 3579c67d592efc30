"""``advise`` names the owner of each finding, and the budget-forecast rule fires per owner.

From ticks of two users' processes written through the real writer (alice busy on GPU 0, bob
holding GPU 1 and running nothing), through ``advise`` and the ``costmeter advise`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_owner_budgets import ALICE, BOB, CONFIG, NOW, history

import owned_history as oh
from costmeter.advice.facts import AdviceFacts, OwnerBudget
from costmeter.advice.model import Action, Evidence, Recommendation, Target
from costmeter.advice.rules.budget import budget_forecast
from costmeter.advice.thresholds import Thresholds
from costmeter.config import Config, parse_config
from costmeter.core.owner import Owner
from costmeter.service.advice import advise
from costmeter.service.advice_owners import owners_from, run_text
from costmeter.store import Store
from costmeter.store.attribution import Attribution, GpuFree, GpuShare, ProcessRecord


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    db = tmp_path_factory.mktemp("advice-owners") / "owners.db"
    oh.write(db, history())
    s = Store.open(db)
    yield s
    s.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return parse_config(CONFIG, tmp_path_factory.mktemp("cfg") / "config.toml")


def test_every_finding_names_its_owner(store: Store, config: Config) -> None:
    result = advise(store, config, since_s=3 * 3600, now=NOW.timestamp())
    recs = {(r.rule, r.target.uuid or r.target.owner): r for r in result.recommendations}
    # Bob's process held GPU 1 all morning and computed nothing: the finding is his.
    idle = recs[("idle-gpu", "GPU-host-a-1")]
    assert idle.target.owner == "bob (100 %)"
    assert idle.to_json()["target"]["owner"] == "bob (100 %)"
    assert all(r.target.owner for r in result.recommendations)
    # One budget-forecast per owner whose budget is on course to be passed, each its own key.
    vision = recs[("budget-forecast", "project vision")]
    bob = recs[("budget-forecast", "user bob")]
    assert vision.key != bob.key and vision.key.endswith("|project vision")
    assert "daily budget 20.00" in vision.title and "monthly budget 10.00" in vision.title
    # 3 h x 2.79 USD/h (the window ends at the last sample, which it leaves out)
    assert vision.evidence.values["spent_today"] == pytest.approx(3 * 2.79, rel=0.01)
    assert "daily budget 5.00" in bob.title
    # Alice's own budget (500 a month) is not on course to be passed: no finding for it.
    assert ("budget-forecast", "user alice") not in recs


def test_advise_json_names_the_holder_of_an_idle_gpu(tmp_path: Path) -> None:
    """The command, on a recording of the last hour (advise looks back from now)."""
    now = time.time()
    db = tmp_path / "recent.db"
    idle_bob = oh.Holder(1, 6001, BOB, util=0.0, power_w=60.0)
    busy_alice = oh.Holder(0, 6002, ALICE, util=95.0, power_w=300.0)
    oh.write(db, [oh.Stretch(now - 3600, now - 5, (busy_alice, idle_bob))])
    cfg = tmp_path / "config.toml"
    cfg.write_text("")
    base = [sys.executable, "-m", "costmeter", "advise", "--db", str(db), "--config", str(cfg)]
    out = subprocess.run([*base, "--format", "json", "--since", "2h"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    recs = json.loads(out.stdout)
    idle = [r for r in recs if r["rule"] == "idle-gpu"]
    assert [r["target"]["uuid"] for r in idle] == ["GPU-host-a-1"]
    assert idle[0]["target"]["owner"] == "bob (100 %)"
    table = subprocess.run([*base, "--since", "2h"], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0]
    assert header.split()[:3] == ["RULE", "TARGET", "OWNER"]
    assert "bob (100 %)" in table.stdout


def _record(proc_id: int, owner: Owner, run_id: int | None = None) -> ProcessRecord:
    return ProcessRecord(proc_id, "h", 100 + proc_id, 0.0, "python", "python x.py", owner, run_id)


def _share(uuid: str, proc_id: int, busy: float, held: float = 0.0) -> GpuShare:
    return GpuShare(uuid, proc_id, None, busy, held, 0.0, 0.0)


def test_a_gpu_is_named_after_who_held_it_most_from_one_attribution() -> None:
    procs = {
        1: _record(1, ALICE),
        2: _record(2, BOB, run_id=7),
        3: _record(3, Owner(unreadable=frozenset({"uid", "environ"}))),
        4: _record(4, Owner(pod="train-0", namespace="vision-a")),
    }
    data = Attribution(
        shares=(
            _share("G0", 1, 700.0, 120.0),  # alice: 820 of 1000 s
            _share("G0", 2, 30.0),
            _share("G1", 3, 500.0),
            _share("G3", 4, 100.0),
        ),
        free=(
            GpuFree("G0", None, 150.0, 0.0, None),
            GpuFree("G2", None, 600.0, 0.0, None),  # nobody, ever
            GpuFree("G3", None, 100.0, 0.0, 7),  # run 7 placed there, running nothing
        ),
        cpu=(),
        processes=procs,
        run_tags={7: {"project": "nlp"}},
        covered_from=0.0,
    )
    owners = owners_from(data)
    assert owners.of_devices(["G0"]) == "alice (82 %)"  # bob's 3 % is too small to name
    assert owners.of_devices(["G1"]) == "unattributed (100 %)"
    assert owners.of_devices(["G2"]) is None
    assert owners.of_devices(["G3"]) == "bob (50 %), pod train-0 (50 %)"
    assert owners.of_devices(["G0", "G2"]) == "alice (51 %)"
    assert owners.of_runs([7]) == "bob (project nlp, job 4242)"
    assert owners.of_runs([8]) is None


def test_a_run_names_its_user_project_and_job() -> None:
    assert run_text(ALICE, {}, ()) == "alice"
    assert run_text(None, {"project": "vision"}, ()) == "project vision"
    assert run_text(None, {}, ()) is None
    slurm = Owner(job_user="carol", job_id="991", account="cv-lab")
    config = parse_config(
        '[[attribution.rules]]\nproject = "vision"\naccounts = ["cv-*"]\n', Path("c.toml")
    )
    assert run_text(slurm, None, config.attribution.rules) == "carol (project vision, job 991)"


def _owner_budget(**kw: float | None) -> OwnerBudget:
    base: dict[str, object] = {
        "by": "project", "key": "vision", "label": "project vision", "daily": 50.0,
        "monthly": None, "day_start": 0.0, "now": 12 * 3600.0, "spent_today": 30.0,
        "per_hour": 2.0, "month_to_date": 300.0, "month_end": 800.0, "days_observed": 7.0,
    }  # fmt: skip
    base.update(kw)
    return OwnerBudget(**base)  # type: ignore[arg-type]


def _facts(*budgets: OwnerBudget) -> AdviceFacts:
    return AdviceFacts(start=0.0, end=12 * 3600.0, currency="USD", tariff_per_kwh=0.1,
                       owner_budgets=budgets)  # fmt: skip


def test_the_owner_budget_rule_fires_on_the_forecast_not_before() -> None:
    t = Thresholds()
    # 30 spent + 2/h x 12 h = 54 > 50: on course to pass the daily budget.
    (rec,) = budget_forecast(_facts(_owner_budget()), t)
    assert rec.target == Target(host="all hosts", owner="project vision")
    assert rec.title.startswith("Project vision is on course to cost 54.00 USD today")
    assert rec.savings is not None
    assert rec.savings.money_per_month == pytest.approx(4.0 * 30.44)
    # 30 + 1/h x 12 h = 42 < 50: nothing.
    assert budget_forecast(_facts(_owner_budget(per_hour=1.0)), t) == []
    # The month end alone past the monthly budget.
    (month,) = budget_forecast(_facts(_owner_budget(daily=None, monthly=700.0)), t)
    assert "800.00 USD this month (monthly budget 700.00)" in month.title
    assert month.savings is not None and month.savings.money_per_month == pytest.approx(100.0)
    assert "Daily budget" not in dict(month.evidence.facts)
    # Both budgets set: two owners give two cards with keys of their own.
    other = _owner_budget(key="nlp", label="project nlp")
    recs = budget_forecast(_facts(_owner_budget(), other), t)
    assert len({r.key for r in recs}) == 2


def test_the_key_of_a_gpu_or_run_finding_does_not_change_with_its_owner() -> None:
    ev = Evidence(0.0, 1.0, ())
    gpu = Recommendation("idle-gpu", "t", Target("h", 0, "G0"), ev, None, 0.5, Action("x"))
    named = Recommendation(
        "idle-gpu", "t", Target("h", 0, "G0", owner="bob (100 %)"), ev, None, 0.5, Action("x")
    )
    assert gpu.key == named.key == "idle-gpu|h|G0|"
    day = Recommendation("budget-forecast", "t", Target("all hosts"), ev, None, 0.5, Action("x"))
    assert day.key == "budget-forecast|all hosts||"  # the global daily budget, as before
