"""The Runs page's rows without Qt: runs of other processes get live figures while their process
lives, and a note once nobody watches them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from costmeter.config import Config
from costmeter.service.run_listing import UNWATCHED, load_runs
from costmeter.store import Store
from costmeter.store.runs import RunStore


def _row(store: RunStore, pid: int, created: float, host: str) -> int:
    return store.insert(
        name=f"r{pid}",
        backend="local",
        spec={"argv": ["x"]},
        status="running",
        created=time.time() - 5,
        started=time.time() - 5,
        host=host,
        handle_key=str(pid),
        handle_data={"pid": str(pid), "create_time": str(created)},
        gpus=[],
        pids=[pid],
    )


def test_a_gone_process_is_noted_and_a_live_one_is_priced_so_far(tmp_path: Path) -> None:
    host = socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me = psutil.Process()
    with RunStore.open(tmp_path / "l.db") as runs:
        dead = _row(runs, gone.pid, time.time(), host)
        live = _row(runs, me.pid, me.create_time(), host)
        elsewhere = _row(runs, gone.pid, time.time(), "another-host")
        ours = _row(runs, gone.pid, time.time(), host)
    store = Store.open(tmp_path / "l.db")
    try:
        rows, figures, notes = load_runs(store, 10, frozenset({ours}), Config().pricing(), host)
    finally:
        store.close()
    assert {r.id for r in rows} == {dead, live, elsewhere, ours}
    assert notes == {dead: UNWATCHED}  # another host's run cannot be checked from here
    assert set(figures) == {live, elsewhere}
