"""The local backend's data-parallel runs at the backend level (real torchrun, real processes):
each rank is one of the run's processes, and cancelling the run stops every rank."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import psutil
import pytest

from costmeter.plugin_api import BackendConfig, Capability, RunSpec, RunState
from costmeter.plugin_testing import submit, wait_finished, wait_for_log
from costmeter.runs.local import LocalBackend

pytestmark = pytest.mark.integration
PY = sys.executable

WAIT = """
import os, time
print(f"ready {os.environ['RANK']} pid {os.getpid()}", flush=True)
time.sleep(60)
"""


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_every_rank_is_the_runs_and_a_cancel_stops_them_all(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    backend = LocalBackend(BackendConfig(state_dir=tmp_path))
    assert Capability.DATA_PARALLEL in backend.metadata.capabilities
    (tmp_path / "wait.py").write_text(WAIT)
    spec = RunSpec(argv=(PY, "wait.py"), cwd=str(tmp_path), nproc_per_node=2)
    handle = submit(backend, spec, tmp_path / "run")
    assert handle.data["nproc"] == "2"
    seen, _ = wait_for_log(backend, handle, "ready 0", timeout_s=60)
    if "ready 1" not in seen:
        seen += wait_for_log(backend, handle, "ready 1", timeout_s=30)[0]
    ranks = {int(p) for p in re.findall(r"\[rank\d\]:ready \d pid (\d+)", seen)}
    assert len(ranks) == 2, seen
    deadline = time.monotonic() + 10
    while not ranks <= set(backend.status(handle).pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ranks <= set(backend.status(handle).pids)
    backend.cancel(handle, grace_s=2.0)
    assert wait_finished(backend, handle, timeout_s=20).state is RunState.CANCELLED
    assert all(_gone(pid) for pid in ranks), "a rank outlived the cancel"
    assert (tmp_path / "run" / "ranks").is_dir()  # each rank's output kept apart too
