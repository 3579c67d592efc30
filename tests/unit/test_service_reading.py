"""The service-level reads the GUI's pages call, on a real database."""

from __future__ import annotations

import time
from pathlib import Path

from costmeter.service.reading import Store, unfinished_run_names
from costmeter.store.runs import RunStore


def _run(db: Path, name: str, status: str, pids: list[int]) -> int:
    with RunStore.open(db) as runs:
        return runs.insert(
            name=name,
            sweep=None,
            backend="local",
            spec={"argv": ["python", "x.py"], "gpus": 0},
            status=status,
            created=time.time() - 60,
            started=time.time() - 60,
            ended=None if status == "running" else time.time(),
            gpus=[],
            pids=pids,
        )


def test_unfinished_run_names_maps_each_pid_of_a_running_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    Store.open(db).close()
    _run(db, "train", "running", [101, 102])
    _run(db, "done", "succeeded", [201])
    with Store.open(db) as store:
        assert unfinished_run_names(store) == {101: "train", 102: "train"}
