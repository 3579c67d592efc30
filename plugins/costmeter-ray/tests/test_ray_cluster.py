"""The Ray backend on a real, separate cluster (4 CPUs, 2 logical GPUs) on loopback only.

Run inside a network namespace of its own (the ``ray_cluster`` fixture skips otherwise):
``unshare -n sh -c 'ip link set lo up && exec python -m pytest plugins/costmeter-ray/tests'``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from costmeter_ray.backend import RayBackend
from costmeter_ray.testing import LocalRayCluster, require_loopback_only

from costmeter.plugin_api import (
    BackendConfig,
    BackendError,
    RunHandle,
    RunSpec,
    RunState,
    RunStatus,
)
from costmeter.plugin_testing import (
    BackendConformance,
    read_all_logs,
    submit,
    wait_finished,
    wait_for_log,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]
NODE = "ray-test-node"  # COSTMETER_NODE_NAME in the cluster's environment


class TestRayConformance(BackendConformance):
    grace_s = 0.5

    @pytest.fixture(autouse=True)
    def _on_cluster(self, ray_cluster: LocalRayCluster, _session_backend: RayBackend) -> None:
        self.cluster = ray_cluster

    def make_backend(self, config: BackendConfig) -> RayBackend:
        return RayBackend(BackendConfig({"address": self.cluster.address}, config.state_dir))


def wait_state(
    backend: RayBackend, handle: RunHandle, states: set[RunState], timeout_s: float = 30
) -> RunStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = backend.status(handle)
        if status.state in states:
            return status
        assert time.monotonic() < deadline, f"still {status} after {timeout_s} s"
        time.sleep(0.05)


def test_resources_are_the_clusters(ray_backend: RayBackend) -> None:
    res = ray_backend.resources()
    assert (res.gpus, res.cpus) == (2, 4.0)
    assert len(res.nodes) == 1


def test_a_gpu_run_sees_the_gpu_ray_gave_it(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    spec = make_spec("import os; print('cvd=' + os.environ['CUDA_VISIBLE_DEVICES'])", gpus=1)
    handle = submit(ray_backend, spec, tmp_path / "gpu")
    status = wait_finished(ray_backend, handle)
    assert status.state is RunState.SUCCEEDED, status
    (gpu,) = status.gpu_indices
    assert gpu in (0, 1) and status.node == NODE
    assert read_all_logs(ray_backend, handle).strip() == f"cvd={gpu}"


def test_a_run_waits_for_gpus_another_run_holds(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    hold = (
        "import os, time\nprint('holding', os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)"
    )
    first = submit(ray_backend, make_spec(hold, gpus=2), tmp_path / "first")
    wait_for_log(ray_backend, first, "holding")
    second = submit(ray_backend, make_spec("print('second ran')", gpus=2), tmp_path / "second")
    time.sleep(1.0)
    waiting = ray_backend.status(second)
    assert waiting.state is RunState.QUEUED, waiting
    assert waiting.message.startswith("Waiting for 2 GPUs and 1 CPU on the Ray cluster"), waiting
    running = ray_backend.status(first)
    assert running.state is RunState.RUNNING and running.gpu_indices == (0, 1), running
    go.touch()
    assert wait_finished(ray_backend, first).state is RunState.SUCCEEDED
    done = wait_finished(ray_backend, second)
    assert done.state is RunState.SUCCEEDED and done.gpu_indices == (0, 1), done
    first_ended = ray_backend.status(first).ended
    assert done.started is not None and first_ended is not None
    assert done.started >= first_ended - 0.5  # it started once the first one ended
    assert "second ran" in read_all_logs(ray_backend, second)


def test_a_queued_run_can_be_cancelled_before_it_starts(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    hold = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)"
    first = submit(ray_backend, make_spec(hold, gpus=2), tmp_path / "first")
    second = submit(ray_backend, make_spec("print('never')", gpus=2), tmp_path / "second")
    wait_state(ray_backend, first, {RunState.RUNNING})
    assert ray_backend.status(second).state is RunState.QUEUED
    ray_backend.cancel(second, grace_s=0.5)
    status = ray_backend.status(second)
    assert (status.state, status.message) == (RunState.CANCELLED, "Cancelled before it started.")
    go.touch()
    assert wait_finished(ray_backend, first).state is RunState.SUCCEEDED
    assert ray_backend.status(second).state is RunState.CANCELLED


def test_cancel_kills_a_run_that_ignores_sigterm(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('got TERM, ignoring it', flush=True))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(0.05)"
    )
    handle = submit(ray_backend, make_spec(code), tmp_path / "stubborn")
    wait_for_log(ray_backend, handle, "ready")
    begun = time.monotonic()
    ray_backend.cancel(handle, grace_s=0.5)
    status = wait_finished(ray_backend, handle, timeout_s=15)
    assert status.state is RunState.CANCELLED and status.exit_code == -9, status
    assert "killed with SIGKILL" in status.message
    assert 0.5 <= time.monotonic() - begun < 10
    assert "got TERM, ignoring it" in read_all_logs(ray_backend, handle)


def test_a_missing_command_fails_with_a_sentence(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    spec = make_spec(argv=("no-such-command-costmeter",))
    status = wait_finished(ray_backend, submit(ray_backend, spec, tmp_path / "missing"))
    assert status.state is RunState.FAILED, status
    assert status.message.startswith(f"command not found on {NODE}: 'no-such-command-costmeter'")


def test_a_missing_working_directory_fails_with_a_sentence(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    spec = make_spec("print(1)", cwd=str(tmp_path / "nowhere"))
    status = wait_finished(ray_backend, submit(ray_backend, spec, tmp_path / "cwd"))
    assert status.state is RunState.FAILED
    assert "does not exist on" in status.message, status


def test_more_gpus_than_the_cluster_has_is_refused_at_once(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    with pytest.raises(BackendError, match=r"asks for 3 GPUs, but the Ray cluster .* has 2 GPUs"):
        submit(ray_backend, make_spec("print(1)", gpus=3), tmp_path / "big")


def test_a_new_costmeter_finds_its_runs_by_their_handles(
    ray_backend: RayBackend,
    ray_cluster: LocalRayCluster,
    make_spec: Callable[..., RunSpec],
    tmp_path: Path,
) -> None:
    """A backend with none of the first one's state (another state_dir) asks the nodes."""
    go = tmp_path / "go"
    code = (
        "import os, time\nprint('up', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\nraise SystemExit(4)"
    )
    handle = submit(ray_backend, make_spec(code, gpus=1), tmp_path / "restart")
    wait_for_log(ray_backend, handle, "up")
    other_state = tmp_path / "other-state"
    other_state.mkdir()
    later = RayBackend(BackendConfig({"address": ray_cluster.address}, other_state))
    try:
        seen = later.status(handle)
        assert seen.state is RunState.RUNNING and seen.node == NODE, seen
        go.touch()
        status = wait_finished(later, handle)
        assert (status.state, status.exit_code) == (RunState.FAILED, 4)
        assert read_all_logs(later, handle).strip() == "up"
    finally:
        later.close()


def test_a_refused_token_says_how_to_authenticate(ray_cluster: LocalRayCluster) -> None:
    """In fresh processes: one with a wrong token, one that sends none."""
    code = (
        "import sys\nfrom costmeter_ray.backend import RayBackend\n"
        "from costmeter.plugin_api import BackendConfig, BackendError\n"
        f"b = RayBackend(BackendConfig({{'address': {ray_cluster.address!r}, "
        "'connect_timeout_s': 2}))\n"
        "try:\n    b.resources()\nexcept BackendError as e:\n    print(e)\n"
    )
    base = {k: v for k, v in ray_cluster.env.items() if not k.startswith("RAY_AUTH")}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env={**base, **extra}, stdout=subprocess.PIPE, text=True
        )
        for extra in ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong"}, {})
    ]
    wrong, missing = (r.communicate(timeout=60)[0] for r in runs)
    assert "refused Costmeter's credentials (RAY_AUTH_MODE is 'token' here)" in wrong
    assert "RAY_AUTH_MODE is not set here, so no token was sent" in missing
    assert "run Costmeter with RAY_AUTH_MODE=token" in missing


def test_without_an_address_costmeter_starts_a_ray_of_its_own(tmp_path: Path) -> None:
    """In a fresh process (this one is connected to the test cluster): ``ray.init`` of its
    own with one logical GPU, a run on it, and nothing left after ``close``."""
    require_loopback_only()  # Ray's own start probes an outside address
    code = (
        "import sys, time\nfrom pathlib import Path\n"
        "from costmeter_ray.backend import RayBackend\n"
        "from costmeter.plugin_api import BackendConfig\n"
        "from costmeter.plugin_testing import python_spec, read_all_logs, submit, wait_finished\n"
        f"tmp = Path({str(tmp_path)!r})\n"
        "b = RayBackend(BackendConfig({'num_cpus': 2, 'num_gpus': 1}, tmp))\n"
        "print('resources', b.resources().gpus)\n"
        "spec = python_spec(\"import os; print(os.environ['CUDA_VISIBLE_DEVICES'])\", gpus=1)\n"
        "h = submit(b, spec, tmp / 'run')\n"
        "s = wait_finished(b, h)\n"
        "print('status', s.state.value, s.gpu_indices, read_all_logs(b, h).strip())\n"
        "b.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)  # Ray keeps the token of its own instance in ~/.ray
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resources 1" in result.stdout
    assert "status succeeded (0,) 0" in result.stdout, result.stdout + result.stderr


def test_a_run_whose_actor_is_killed_ends_with_it_and_is_lost(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    """PR_SET_PDEATHSIG: the command does not outlive its actor, and the agent says so."""
    import psutil
    import ray
    from costmeter_ray.node import run_actor_name

    handle = submit(ray_backend, make_spec("import time\nwhile True: time.sleep(0.05)"), tmp_path)
    running = wait_state(ray_backend, handle, {RunState.RUNNING})
    ray.kill(ray.get_actor(run_actor_name(handle.key), namespace="costmeter"))
    status = wait_finished(ray_backend, handle, timeout_s=20)
    assert status.state is RunState.LOST, status
    assert "actor running it on ray-test-node died" in status.message
    assert not psutil.pid_exists(running.pids[0])


def _wait_leftovers(backend: RayBackend, handle: RunHandle) -> RunStatus:
    deadline = time.monotonic() + 30
    while True:
        status = backend.status(handle)
        assert status.state in (RunState.QUEUED, RunState.STARTING, RunState.RUNNING), status
        if status.message.startswith("Its command exited with code 0; waiting for"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_a_run_lasts_until_the_processes_its_command_left_end(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    import psutil

    go = tmp_path / "go"
    left = (
        f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('leftover done')"
    )
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {left!r}], start_new_session=True)\n"
        "print('command done', flush=True)"
    )
    handle = submit(ray_backend, make_spec(code, gpus=1), tmp_path / "left")
    (leftover,) = _wait_leftovers(ray_backend, handle).pids
    assert psutil.Process(leftover).environ()["COSTMETER_RUN_KEY"] == handle.key
    time.sleep(0.5)
    assert ray_backend.status(handle).state is RunState.RUNNING  # it holds its GPU still
    go.touch()
    status = wait_finished(ray_backend, handle)
    assert (status.state, status.exit_code) == (RunState.SUCCEEDED, 0), status
    assert read_all_logs(ray_backend, handle) == "command done\nleftover done\n"


def test_cancel_reaches_a_setsid_escapee(
    ray_backend: RayBackend, make_spec: Callable[..., RunSpec], tmp_path: Path
) -> None:
    import psutil

    spec = make_spec(argv=("sh", "-c", "setsid sleep 30 &"))
    handle = submit(ray_backend, spec, tmp_path / "escapee")
    (escapee,) = _wait_leftovers(ray_backend, handle).pids
    try:
        ray_backend.cancel(handle, grace_s=0.5)
        status = wait_finished(ray_backend, handle, timeout_s=15)
        assert status.state is RunState.CANCELLED, status
        gone = time.monotonic() + 5
        while psutil.pid_exists(escapee) and psutil.Process(escapee).status() != "zombie":
            assert time.monotonic() < gone, "the setsid child outlived the cancel"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(escapee, 9)
