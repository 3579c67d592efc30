"""Runs left "running" by a Costmeter that stopped are marked lost; live ones are left alone."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from costmeter.service.run_reconcile import LOST_MESSAGE, reconcile_stale_runs
from costmeter.store.runs import RunStore


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_abandoned_local_runs_of_this_machine_are_marked_lost(tmp_path: Path) -> None:
    host = socket.gethostname()
    now = time.time()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with RunStore.open(tmp_path / "runs.db") as runs:

            def add(**values: object) -> int:
                row = dict(
                    name="r", backend="local", status="running", created=now - 60,
                    started=now - 60, host=host, pids=[_dead_pid()], gpus=[], spec={},
                )  # fmt: skip
                row.update(values)
                return runs.insert(**row)

            abandoned = add()
            live = add(pids=[alive.pid], created=now, started=now)
            queued = add(status="queued", pids=[], started=None)
            on_ray = add(backend="ray")
            elsewhere = add(host="another-box")
            done = add(status="succeeded", ended=now - 30)
            assert reconcile_stale_runs(runs, now=now) == [abandoned]
            row = runs.get(abandoned)
            assert row is not None and row.status == "lost" and row.message == LOST_MESSAGE
            # Never sampled: it ended at the latest when it started (nothing is charged after).
            assert row.ended == row.started
            for run_id, status in (
                (live, "running"),
                (queued, "queued"),
                (on_ray, "running"),
                (elsewhere, "running"),
                (done, "succeeded"),
            ):
                kept = runs.get(run_id)
                assert kept is not None and kept.status == status
            assert reconcile_stale_runs(runs, now=now) == []  # once is enough
    finally:
        alive.kill()
        alive.wait()


def test_a_reused_pid_does_not_keep_a_run_alive(tmp_path: Path) -> None:
    # This test process started before the run: its PID being in use says nothing.
    import os

    now = time.time() + 100
    with RunStore.open(tmp_path / "runs.db") as runs:
        run_id = runs.insert(
            name="r", backend="local", status="running", started=now, created=now,
            host=socket.gethostname(), pids=[os.getpid()], gpus=[], spec={},
        )  # fmt: skip
        assert reconcile_stale_runs(runs, now=now + 10) == [run_id]


def test_the_owner_writing_the_end_first_wins(tmp_path: Path) -> None:
    now = time.time()
    with RunStore.open(tmp_path / "runs.db") as runs:
        run_id = runs.insert(
            name="r", backend="local", status="running", started=now, created=now,
            host=socket.gethostname(), pids=[_dead_pid()], gpus=[], spec={},
        )  # fmt: skip
        runs.update(run_id, status="succeeded", ended=now + 1)
        assert not runs.mark_lost(run_id, ended=now, message="x")
        row = runs.get(run_id)
        assert row is not None and row.status == "succeeded"


def test_a_process_carrying_the_runs_marker_keeps_it_alive(tmp_path: Path) -> None:
    """The run's command exited and left a process running, started after the run did (its
    start time does not prove it is the run's): the local backend's marker in its
    environment does."""
    import os

    from costmeter.runs.tracking import MARK_ENV

    now = time.time() - 100  # the leftover was created long after the run started
    env = {**os.environ, MARK_ENV: "key-of-the-run"}
    leftover = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        with RunStore.open(tmp_path / "runs.db") as runs:
            run_id = runs.insert(
                name="r", backend="local", status="running", started=now, created=now,
                host=socket.gethostname(), pids=[_dead_pid(), leftover.pid], gpus=[], spec={},
                handle_key="key-of-the-run",
            )  # fmt: skip
            assert reconcile_stale_runs(runs, now=now + 200) == []
            leftover.kill()
            leftover.wait()
            assert reconcile_stale_runs(runs, now=now + 200) == [run_id]
    finally:
        leftover.kill()
        leftover.wait()
