"""A process sampled the moment it was launched may still be in ``exec``: its
``/proc/PID/environ`` then reads empty for a few milliseconds (measured here: 288 of 300 bare
reads right after ``Popen`` returned; 3.7 ms median, 12 ms at most). The sampler must not keep
that empty owner for the process's life, or a run launched with Slurm variables is charged to
no job. The environment is served from a copy of ``/proc/PID`` (``proc_root``) so the moment
is caught every time; the process itself is real (psutil reads it)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter.sampling import host as host_mod
from costmeter.sampling.host import HostSampler
from costmeter.sampling.rapl import RaplReader

pytestmark = pytest.mark.integration
ENVIRON = b"PATH=/usr/bin\0SLURM_JOB_ID=777\0COSTMETER_RUN_KEY=k-777\0"


@pytest.fixture
def process() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _fake_proc(root: Path, pid: int, environ: bytes) -> None:
    here = root / str(pid)
    here.mkdir(parents=True, exist_ok=True)
    (here / "status").write_bytes(Path(f"/proc/{pid}/status").read_bytes())
    (here / "cgroup").write_text("0::/user.slice\n")
    (here / "environ").write_bytes(environ)


def test_an_owner_read_during_exec_is_read_again(tmp_path: Path, process: int) -> None:
    root = tmp_path / "proc"
    sampler = HostSampler(rapl=RaplReader(tmp_path / "no-powercap"), proc_root=str(root))
    _fake_proc(root, process, b"")  # in exec: nothing yet
    first = sampler.sample({process}).processes[0]
    assert first.owner is None  # not known yet: the store waits for it
    assert first.user != "?"
    _fake_proc(root, process, ENVIRON)  # exec done
    later = sampler.sample({process}).processes[0]
    assert later.owner is not None
    assert later.owner.job_id == "777" and later.owner.run_key == "k-777"


def test_an_old_process_without_environment_is_read_once(
    tmp_path: Path, process: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proc"
    _fake_proc(root, process, b"")
    monkeypatch.setattr(host_mod, "EXEC_SETTLE_S", 0.05)
    time.sleep(0.1)
    sampler = HostSampler(rapl=RaplReader(tmp_path / "no-powercap"), proc_root=str(root))
    first = sampler.sample({process}).processes[0]
    assert first.owner is not None and first.owner.job_id is None and first.owner.uid is not None
    _fake_proc(root, process, ENVIRON)  # not read again: an owner is read once
    assert sampler.sample({process}).processes[0].owner == first.owner
