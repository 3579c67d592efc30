"""Applying a "relaunch" recommendation, Qt-free: the child run's form from the stored row."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from costmeter.service.advice_apply import ApplyError, plan_relaunch, plan_sweep, relaunch_plan
from costmeter.store import Store
from costmeter.store.runs import RunStore


def _stored_run(db: Path, argv: list[str], gpus: int, sweep: str | None = None) -> int:
    with RunStore.open(db) as runs:
        return runs.insert(
            name="train",
            sweep=sweep,
            backend="local",
            spec={"argv": argv, "env": {"KEEP": "1"}, "gpus": gpus, "cwd": None, "budget": 5.0},
            status="succeeded",
            created=time.time() - 600,
            started=time.time() - 600,
            ended=time.time() - 60,
            gpus=list(range(gpus)),
            pids=[],
        )


def test_relaunch_plan_applies_the_changes_and_refuses_unknown_ones(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    Store.open(db).close()
    run_id = _stored_run(db, ["python", "train.py", "--bs", "64"], 4)
    with RunStore.open(db) as runs:
        row = runs.get(run_id)
    assert row is not None
    plan = relaunch_plan(row, {"gpus": 1, "argv_append": ["--workers", "8"], "env": {"A": "b"}})
    assert plan.form.command == "python train.py --bs 64 --workers 8"
    assert plan.form.gpus == 1 and plan.form.budget == "5" and plan.parent_id == run_id
    assert plan.env == {"KEEP": "1", "A": "b"}
    assert plan.changes == ("GPUs 4 → 1", "adds --workers 8", "sets A=b")
    with pytest.raises(ApplyError, match="cannot make"):
        relaunch_plan(row, {"batch_size": 128})
    with pytest.raises(ApplyError, match="not a count"):
        relaunch_plan(row, {"gpus": -1})


def test_plans_are_read_from_the_store_by_run_and_by_sweep(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    Store.open(db).close()
    argv = ["python", "train.py", "--lr", "0.1"]
    originals = [_stored_run(db, argv, 2, sweep="lr-sweep") for _ in range(3)]
    _stored_run(db, argv, 1, sweep="another")
    with Store.open(db) as store:
        plan = plan_relaunch(store, originals[0], {"gpus": 1})
        assert plan.parent_id == originals[0] and plan.form.gpus == 1
        with pytest.raises(ApplyError, match="no longer in the database"):
            plan_relaunch(store, 999_999, {"gpus": 1})
        requests, words = plan_sweep(
            store, "lr-sweep", {"gpus": 1}, "lr-sweep-advised", gpu_limit=8
        )
        assert [r.parent_id for r in requests] == originals
        assert {r.sweep for r in requests} == {"lr-sweep-advised"}
        assert words == ("GPUs 2 → 1",)
        with pytest.raises(ApplyError, match="no runs left"):
            plan_sweep(store, "gone", {"gpus": 1}, "x", gpu_limit=8)
