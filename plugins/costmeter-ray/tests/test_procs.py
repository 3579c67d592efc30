"""Finding a run's processes on a node, without a cluster: real processes, real /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from costmeter_ray.procs import MARK_ENV, run_processes, signal_run

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_the_group_and_the_marker_find_the_run(started: list[subprocess.Popen[bytes]]) -> None:
    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    started.append(leader)
    escapee = subprocess.Popen(
        ["sleep", "30"], env={**os.environ, MARK_ENV: "key-1"}, start_new_session=True
    )
    started.append(escapee)
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    started.append(stranger)
    assert run_processes(leader.pid, "key-1") == sorted([leader.pid, escapee.pid])
    assert run_processes(None, "key-1") == [escapee.pid]
    assert run_processes(None, "key-") == []  # the whole value, not a prefix


def test_signal_run_reaches_the_escapee(started: list[subprocess.Popen[bytes]]) -> None:
    escapee = subprocess.Popen(
        ["sleep", "30"], env={**os.environ, MARK_ENV: "key-2"}, start_new_session=True
    )
    started.append(escapee)
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    assert signal_run(gone.pid, "key-2", signal.SIGTERM)
    assert escapee.wait(timeout=5) == -signal.SIGTERM
    assert not signal_run(gone.pid, "key-2", signal.SIGTERM)  # nothing left to signal
