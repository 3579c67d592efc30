"""Reads of the process table through ``/proc/PID/stat`` files kept open (``_StatFiles``): each
read gives the process's fields as a fresh open would, a zombie shows as one, and a reaped
process is gone. Real child processes on the real /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from costmeter.runs.tracking import PROC, _read_table, _StatFiles, read_stat

pytestmark = pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux's /proc")


def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _asleep(pid: int) -> bool:
    st = read_stat(pid)
    return st is not None and st.state == "S"


def test_a_kept_file_reads_the_process_as_it_is_now() -> None:
    files = _StatFiles(PROC)
    child = subprocess.Popen(["sleep", "30"])
    try:
        _until(lambda: _asleep(child.pid))
        first = files.read(child.pid)[0]
        assert first is not None and first == read_stat(child.pid)
        assert first.ppid == os.getpid() and first.running
        os.kill(child.pid, signal.SIGKILL)
        _until(lambda: (st := files.read(child.pid)[0]) is not None and st.state == "Z")
        zombie = files.read(child.pid)[0]
        assert zombie is not None and zombie == read_stat(child.pid)
        assert not zombie.running and zombie.start == first.start
    finally:
        child.kill()
        child.wait()
    assert files.read(child.pid)[0] is None  # reaped: gone, as a fresh open finds it
    assert read_stat(child.pid) is None


def test_the_table_is_the_same_with_files_kept_open_or_not() -> None:
    files = _StatFiles(PROC)
    files.MAX_OPEN = 3  # most processes then go the ordinary way
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(4)]
    starts = {}
    try:
        # Asleep (past their exec): their fields hold still between the two reads.
        _until(lambda: all(_asleep(c.pid) for c in children))
        for _ in range(3):
            kept = _read_table(PROC, files)
            fresh = _read_table(PROC)
            for child in children:  # sleeping children: the same fields either way
                assert kept.stats[child.pid] == fresh.stats[child.pid]
                assert child.pid in kept.children[os.getpid()]
                starts[child.pid] = kept.stats[child.pid].start
    finally:
        for child in children:
            child.kill()
            child.wait()
    after = _read_table(PROC, files)
    for pid, start in starts.items():  # gone (its pid, if taken again, is another process's)
        assert pid not in after.stats or after.stats[pid].start != start
