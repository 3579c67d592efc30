"""A process in the middle of an ``exec`` has an empty environment for a moment (the new one is
not set up yet): the marker is read again rather than taken as absent for good, which made a
``setsid`` escapee invisible to the first look after its run's command exited (the flaky
``test_cancel_kills_a_setsid_escapee``). Fake /proc trees, a real one at the end."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from costmeter.runs import tracking
from costmeter.runs.tracking import MARK_ENV, PROC, ProcStat, RunProcesses, _MarkCache


def _proc(tmp_path: Path, pid: int, environ: bytes) -> Path:
    root = tmp_path / "proc"
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "environ").write_bytes(environ)
    return root


def test_an_environment_that_fills_in_is_read_again(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 40, b"")
    later = threading.Timer(
        0.01, (proc / "40" / "environ").write_bytes, args=(f"A=1\0{MARK_ENV}=run7\0".encode(),)
    )
    later.start()
    try:
        assert _MarkCache().mark(ProcStat(40, "R", 39, 39, 123), proc) == "run7"
    finally:
        later.join()


def test_an_environment_that_stays_empty_has_no_marker_and_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", slept.append)  # waits counted, not waited
    proc = _proc(tmp_path, 41, b"")
    marks = _MarkCache()
    assert marks.mark(ProcStat(41, "S", 1, 41, 5), proc) is None  # ``env -i``
    assert sum(slept) >= tracking.EXEC_WAIT_S and len(slept) > 3
    (proc / "41" / "environ").write_bytes(f"{MARK_ENV}=no\0".encode())
    slept.clear()
    assert marks.mark(ProcStat(41, "S", 1, 41, 5), proc) is None  # read once per process
    kthread = _proc(tmp_path / "k", 42, b"")
    assert _MarkCache().mark(ProcStat(42, "S", 2, 0, 5), kthread) is None  # none to wait for
    assert slept == []


@pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux's /proc")
def test_the_first_look_after_the_command_finds_a_setsid_escapee() -> None:
    """What the local backend does when a run's command exits: one look at /proc. 100 times,
    so that some looks fall in the escapee's exec of ``sleep`` (1 in 100-500 before)."""
    missed = 0
    for _ in range(100):
        key = uuid.uuid4().hex
        env = {**os.environ, MARK_ENV: key}
        command = subprocess.Popen(
            ["sh", "-c", "setsid sleep 30 &"], env=env, start_new_session=True
        )
        procs = RunProcesses(command.pid, key)
        command.wait()
        found = procs.scan()
        truth = [
            int(p) for p in os.listdir(PROC) if p.isdigit() and tracking.read_mark(int(p)) == key
        ]
        missed += not set(truth) <= set(found)
        for pid in truth:
            os.kill(pid, 9)
    assert missed == 0


def test_a_program_s_marker_is_read_again_after_its_exec(tmp_path: Path) -> None:
    """Between ``fork`` and ``exec`` a child shows its parent's environment; the ``exec`` moves
    where its environment ends (``env_end``), and the marker it now has is read."""
    proc = _proc(tmp_path, 43, b"HOME=/root\0")
    marks = _MarkCache()
    st = ProcStat(43, "R", 1, 43, 77)  # same pid and start time before and after the exec
    assert marks.mark(st, proc, env_end=1000) is None
    (proc / "43" / "environ").write_bytes(f"{MARK_ENV}=run9\0".encode())
    assert marks.mark(st, proc, env_end=1000) is None  # the same program: read once
    assert marks.mark(st, proc, env_end=2000) == "run9"


@pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux's /proc")
def test_the_marker_alone_finds_a_process_while_others_scan() -> None:
    """Another run's scans (a thread looking all the time) read the new process between its
    fork and its exec, and pids come back with the same start time: neither hides it."""
    stop = threading.Event()

    def other_runs() -> None:
        while not stop.is_set():
            RunProcesses(1, "another run").scan()

    looking = threading.Thread(target=other_runs, daemon=True)
    looking.start()
    missed = 0
    try:
        for i in range(100):
            key = f"{uuid.uuid4().hex}-{i}"
            env = {**os.environ, MARK_ENV: key}
            marked = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
            gone = subprocess.Popen(["true"])
            gone.wait()
            try:
                missed += RunProcesses(gone.pid, key).scan() != [marked.pid]
            finally:
                marked.kill()
                marked.wait()
    finally:
        stop.set()
        looking.join()
    assert missed == 0
