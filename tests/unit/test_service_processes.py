"""Terminating a process from the Processes page: real signals, refusals, recycled PIDs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from costmeter.sampling.simulated import PID_BASE
from costmeter.service import processes
from costmeter.service.processes import is_simulated, refusal, terminate


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_terminates_a_real_child_process(sleeper: subprocess.Popen[bytes]) -> None:
    created = psutil.Process(sleeper.pid).create_time()
    message = terminate(sleeper.pid, created)
    assert message.startswith(f"Sent SIGTERM to PID {sleeper.pid}")
    assert sleeper.wait(10) == -15  # died of SIGTERM


def test_without_create_time_it_still_terminates(sleeper: subprocess.Popen[bytes]) -> None:
    assert terminate(sleeper.pid).startswith("Sent SIGTERM")
    assert sleeper.wait(10) == -15


def test_an_exited_process_is_already_gone(sleeper: subprocess.Popen[bytes]) -> None:
    sleeper.kill()
    sleeper.wait(10)
    assert terminate(sleeper.pid) == f"PID {sleeper.pid} has already exited."


def test_a_recycled_pid_is_left_alone(sleeper: subprocess.Popen[bytes]) -> None:
    created = psutil.Process(sleeper.pid).create_time()
    message = terminate(sleeper.pid, created - 3600.0)  # the process shown started an hour ago
    assert "different process" in message and "nothing was sent" in message
    assert sleeper.poll() is None


def test_simulated_pids_are_refused() -> None:
    assert is_simulated(PID_BASE) and is_simulated(PID_BASE + 101)
    assert not is_simulated(PID_BASE - 1)
    message = terminate(PID_BASE + 1)
    assert "simulated" in message and str(PID_BASE + 1) in message


def test_this_app_and_system_pids_are_refused() -> None:
    assert "Costmeter itself" in terminate(os.getpid())
    for pid in (0, 1, -5):
        message = terminate(pid)
        assert refusal(pid) == message and "will not terminate" in message
    assert refusal(os.getppid() if os.getppid() > 1 else 12345) is None


def test_permission_denied_is_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    class Denied:
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def create_time(self) -> float:
            return 100.0

        def name(self) -> str:
            return "other-users-job"

        def terminate(self) -> None:
            raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(processes.psutil, "Process", Denied)
    message = terminate(4321, 100.0)
    assert message.startswith("Permission denied") and "kill 4321" in message


def test_an_exporter_workloads_negative_pid_is_refused_in_words() -> None:
    from costmeter.service.remote.dcgm import PodRef
    from costmeter.service.remote.pods import workload_pid

    pid = workload_pid(PodRef("ray-llm", "ray-1111111", "ray-worker"))
    message = terminate(pid)
    assert refusal(pid) == message
    assert "Kubernetes workload" in message and "will not terminate" in message
