"""Scaling over --nproc-per-node from a sweep's rows (real progress files in run directories),
the CLI's table, and the ``scaling`` advice rule."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from costmeter import progress
from costmeter.advice.engine import RULES
from costmeter.advice.facts import AdviceFacts
from costmeter.advice.rules.scaling import scaling
from costmeter.advice.thresholds import Thresholds
from costmeter.cli.scaling_table import scaling_text
from costmeter.service.scaling import lines_of, points_of, sentence, sweep_scaling
from costmeter.store.runs import RunRow


def row(run_id: int, nproc: int, duration: float, cost: float, run_dir: Path | None,
        *, status: str = "succeeded", sweep: str = "s1") -> RunRow:  # fmt: skip
    return RunRow(
        id=run_id, name=f"r{run_id}", backend="local", spec={"nproc_per_node": nproc},
        status=status, created=100.0, started=100.0, ended=100.0 + duration, exit_code=0,
        gpus=[], pids=[], host="h", node=None, message="", handle_key=None, handle_data={},
        run_dir=str(run_dir) if run_dir else None, command_key="k", sweep=sweep,
        gpu_seconds=0.0, cpu_seconds=1.0, energy_kwh=0.0, cost=cost, currency="USD",
        estimate=None, estimate_runs=None,
    )  # fmt: skip


def with_progress(tmp_path: Path, name: str, total: int) -> Path:
    d = tmp_path / name
    d.mkdir()
    lines = [{"time": 1.0 + s, "step": s, "total": total, "metrics": {}} for s in (1, total)]
    (d / progress.FILE_NAME).write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d


def test_points_per_n_with_speedup_and_cost_per_unit(tmp_path: Path) -> None:
    rows = [
        row(1, 1, 10.0, 0.010, with_progress(tmp_path, "a", 5)),
        row(2, 2, 5.9, 0.0118, with_progress(tmp_path, "b", 5)),
        row(3, 2, 6.0, 0.0118, with_progress(tmp_path, "c", 5)),
        row(4, 4, 1.0, 0.5, None, status="failed"),  # did not do the work: left out
    ]
    points = points_of(rows)
    assert [(p.nproc, p.runs, p.work, p.unit) for p in points] == [
        (1, 1, 5.0, "steps"),
        (2, 2, 5.0, "steps"),
    ]
    base, two = lines_of(points)
    assert base.speedup == 1.0 and base.cost_ratio == 1.0
    assert round(two.speedup, 2) == 1.68 and round(two.cost_ratio, 2) == 1.18
    assert sentence(two) == "2 procs: 1.68x faster for 1.18x the cost"
    text = scaling_text(rows, "USD")
    assert text is not None and "one step of progress; vs N=1" in text
    assert text.endswith("2 procs: 1.68x faster for 1.18x the cost")


def test_runs_without_progress_count_one_unit_each(tmp_path: Path) -> None:
    rows = [row(1, 1, 4.0, 0.02, None), row(2, 2, 4.0, 0.01, with_progress(tmp_path, "b", 8))]
    points = points_of(rows)
    assert {p.unit for p in points} == {"run"}  # units that disagree: a run is the unit
    assert [p.cost_per_unit for p in points] == [0.02, 0.01]
    assert scaling_text(rows[:1], "USD") is None  # one N: nothing to compare


def test_the_rule_names_the_cheapest_n_with_its_saving(tmp_path: Path) -> None:
    rows = [
        row(1, 1, 10.0, 0.010, with_progress(tmp_path, "a", 5)),
        row(2, 2, 8.0, 0.016, with_progress(tmp_path, "b", 5)),
        row(3, 1, 9.0, 0.5, None, sweep="other"),  # a sweep of one N says nothing
    ]
    (found,) = sweep_scaling(rows)
    assert found.sweep == "s1" and found.run_id == 2  # the dearest N's run
    facts = AdviceFacts(start=0.0, end=1.0, currency="USD", tariff_per_kwh=0.0, scaling=(found,))
    (rec,) = scaling(facts, Thresholds())
    assert rec.title == ("Run sweep s1 with 1 process: 38% less per step than with 2 processes")
    assert rec.savings is not None and rec.savings.once
    assert abs(rec.savings.money_per_month - (0.0032 - 0.002) * 5) < 1e-12
    assert rec.action.text == "Use --nproc-per-node 1 for this work."
    assert "scaling" in RULES
    close = replace(found, points=(found.points[0], replace(found.points[1], cost=0.0102)))
    quiet = AdviceFacts(start=0.0, end=1.0, currency="USD", tariff_per_kwh=0.0, scaling=(close,))
    assert scaling(quiet, Thresholds()) == []  # 2 % apart: under the 5 % threshold
