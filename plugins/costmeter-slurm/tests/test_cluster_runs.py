"""The Slurm backend on a real single-node Slurm (slurm-wlm 22.05 + munge, on loopback)."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
from conftest import cluster_options
from costmeter_slurm.backend import SlurmBackend

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
    costmeter_env,
    python_spec,
    read_all_logs,
    submit,
    wait_finished,
    wait_for_log,
)
from slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slow, pytest.mark.integration]


class TestSlurmConformance(BackendConformance):
    grace_s = 0.5

    @pytest.fixture(autouse=True)
    def _on_cluster(self, slurm_cluster: SlurmCluster) -> None:
        self.cluster = slurm_cluster

    def make_backend(self, config: BackendConfig) -> SlurmBackend:
        return SlurmBackend(BackendConfig(cluster_options(self.cluster), config.state_dir))


def wait_state(
    backend: SlurmBackend, handle: RunHandle, states: set[RunState], timeout_s: float = 30
) -> RunStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = backend.status(handle)
        if status.state in states:
            return status
        assert time.monotonic() < deadline, f"still {status} after {timeout_s} s"
        time.sleep(0.05)


def test_a_gpu_run_gets_slurms_gpus_and_says_where_it_runs(
    slurm_backend: SlurmBackend, tmp_path: Path
) -> None:
    code = (
        "import os, time\n"
        "print('visible', os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ['SLURM_JOB_ID'],"
        " flush=True)\n"
        f"while not os.path.exists({str(tmp_path / 'go')!r}): time.sleep(0.02)\n"
    )
    # Costmeter's own CUDA_VISIBLE_DEVICES must not reach the job: Slurm picks the GPUs.
    env = {**costmeter_env(tmp_path / "gpu"), "CUDA_VISIBLE_DEVICES": "7"}
    handle = submit(slurm_backend, python_spec(code, gpus=2), tmp_path / "gpu", env)
    seen, _ = wait_for_log(slurm_backend, handle, "visible")
    running = wait_state(slurm_backend, handle, {RunState.RUNNING})
    assert running.job == handle.key
    assert running.node == socket.gethostname()  # this machine, by the name Costmeter uses
    assert running.allocated_gpus == 2
    assert len(running.gpu_indices) == 2
    expected = ",".join(str(i) for i in running.gpu_indices)
    assert f"visible {expected} {handle.key}" in seen
    assert running.pids, running
    with open(f"/proc/{running.pids[0]}/cmdline", "rb") as cmdline:
        assert cmdline.read().split(b"\0")[0] == sys.executable.encode()
    assert running.started is not None and running.ended is None
    (tmp_path / "go").touch()
    done = wait_finished(slurm_backend, handle)
    assert (done.state, done.exit_code, done.allocated_gpus) == (RunState.SUCCEEDED, 0, 2)
    assert done.ended is not None and done.started is not None
    assert done.ended >= done.started
    assert done.pids == ()


def test_a_failing_run_reports_its_exit_code_in_words(
    slurm_backend: SlurmBackend, tmp_path: Path
) -> None:
    spec = python_spec("import sys; print('bad input', flush=True); sys.exit(3)")
    handle = submit(slurm_backend, spec, tmp_path / "fail")
    status = wait_finished(slurm_backend, handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, 3), status
    assert status.message == "Exited with code 3."
    assert "bad input" in read_all_logs(slurm_backend, handle)


def test_a_run_waits_in_the_queue_behind_another_for_gpus(
    slurm_backend: SlurmBackend, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)"
    first = submit(slurm_backend, python_spec(code, gpus=3), tmp_path / "first")
    wait_state(slurm_backend, first, {RunState.RUNNING})
    second = submit(slurm_backend, python_spec("print('second ran')", gpus=3), tmp_path / "2nd")
    waiting = wait_state(slurm_backend, second, {RunState.QUEUED})
    deadline = time.monotonic() + 15
    while "Resources" not in waiting.message and time.monotonic() < deadline:
        time.sleep(0.1)  # Slurm says "None" until its scheduler has looked at the job
        waiting = slurm_backend.status(second)
    assert waiting.state is RunState.QUEUED, waiting
    assert waiting.message == (
        "Waiting in the queue: Resources — the GPUs it asks for are all in use."
    )
    assert waiting.node is None and waiting.started is None and waiting.allocated_gpus is None
    go.touch()
    assert wait_finished(slurm_backend, first).state is RunState.SUCCEEDED
    done = wait_finished(slurm_backend, second)
    assert (done.state, done.allocated_gpus) == (RunState.SUCCEEDED, 3)
    assert "second ran" in read_all_logs(slurm_backend, second)


def test_a_queued_run_is_cancelled_before_it_starts(
    slurm_backend: SlurmBackend, tmp_path: Path
) -> None:
    """More GPUs than the cluster has: Slurm keeps it pending; cancel removes it."""
    go = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)"
    blocker = submit(slurm_backend, python_spec(code, gpus=4), tmp_path / "blocker")
    wait_state(slurm_backend, blocker, {RunState.RUNNING})
    queued = submit(slurm_backend, python_spec("print('never')", gpus=1), tmp_path / "queued")
    wait_state(slurm_backend, queued, {RunState.QUEUED})
    slurm_backend.cancel(queued, grace_s=0.5)
    status = wait_finished(slurm_backend, queued)
    assert status.state is RunState.CANCELLED, status
    assert status.started is None
    go.touch()
    assert wait_finished(slurm_backend, blocker).state is RunState.SUCCEEDED
    assert read_all_logs(slurm_backend, queued) == ""


def test_cancel_sends_term_then_forces_after_the_grace_period(
    slurm_backend: SlurmBackend, tmp_path: Path
) -> None:
    """A command that ignores SIGTERM is still stopped: scancel after grace_s."""
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, lambda *a: print('got TERM',"
        " flush=True))\nprint('started', flush=True)\ntime.sleep(120)"
    )
    handle = submit(slurm_backend, python_spec(code), tmp_path / "stubborn")
    wait_for_log(slurm_backend, handle, "started")
    slurm_backend.cancel(handle, grace_s=1.0)
    status = wait_finished(slurm_backend, handle)
    assert status.state is RunState.CANCELLED, status
    assert "got TERM" in read_all_logs(slurm_backend, handle)


def test_a_restarted_costmeter_follows_a_run_from_its_stored_handle(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    options = cluster_options(slurm_cluster)
    before = SlurmBackend(BackendConfig(options, state))
    go = tmp_path / "go"
    code = (
        f"import os, sys, time\nprint('one', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\nprint('two'); sys.exit(4)"
    )
    handle = submit(before, python_spec(code), tmp_path / "restart")
    wait_for_log(before, handle, "one")
    before.close()
    del before
    after = SlurmBackend(BackendConfig(options, state))  # a new Costmeter process, say
    rebuilt = RunHandle(handle.backend, handle.key, dict(handle.data))
    assert wait_state(after, rebuilt, {RunState.RUNNING}).job == handle.key
    go.touch()
    status = wait_finished(after, rebuilt)
    assert (status.state, status.exit_code) == (RunState.FAILED, 4), status
    text = read_all_logs(after, rebuilt)
    assert text.count("one") == 1 and "two" in text
    # Even the key alone (no data) answers the status.
    bare = SlurmBackend(BackendConfig(options, state)).status(RunHandle("slurm", handle.key))
    assert (bare.state, bare.exit_code) == (RunState.FAILED, 4)


def test_resources_count_free_gpus(
    slurm_cluster: SlurmCluster, slurm_backend: SlurmBackend, tmp_path: Path
) -> None:
    deadline = time.monotonic() + 30
    idle = slurm_backend.resources()
    while idle.gpus != slurm_cluster.gpus and time.monotonic() < deadline:
        time.sleep(0.1)  # an earlier test's job may still be giving its GPUs back
        idle = slurm_backend.resources()
    assert (idle.gpus, idle.nodes) == (4, (slurm_backend_node(),)), idle
    assert idle.cpus is not None and 0 < idle.cpus <= 8
    go = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)"
    handle = submit(slurm_backend, python_spec(code, gpus=3), tmp_path / "hold")
    wait_state(slurm_backend, handle, {RunState.RUNNING})
    busy = slurm_backend.resources()
    go.touch()
    wait_finished(slurm_backend, handle)
    assert busy.gpus == 1, (idle, busy)


def slurm_backend_node() -> str:
    return socket.gethostname().split(".")[0]


def test_slurms_refusal_is_a_clear_error(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    options = cluster_options(slurm_cluster, partition="no-such-partition")
    backend = SlurmBackend(BackendConfig(options, tmp_path))
    with pytest.raises(BackendError, match=r"Slurm refused the job: .*[Pp]artition"):
        submit(backend, python_spec("pass"), tmp_path / "refused")
    too_many = SlurmBackend(BackendConfig(cluster_options(slurm_cluster), tmp_path))
    with pytest.raises(BackendError, match="Slurm refused the job"):
        submit(too_many, python_spec("pass", gpus=5), tmp_path / "too-many")


def test_a_cwd_and_arguments_with_spaces_and_quotes_reach_the_command(
    slurm_backend: SlurmBackend, tmp_path: Path
) -> None:
    workdir = tmp_path / "a dir"
    workdir.mkdir()
    spec = RunSpec(
        argv=(
            sys.executable,
            "-c",
            "import os, sys; print(os.getcwd(), sys.argv[1:])",
            "it's",
            "$HOME",
        ),
        cwd=str(workdir),
        env={"WITH_NEWLINE": "a\nb"},
    )
    handle = submit(slurm_backend, spec, tmp_path / "quoting")
    assert wait_finished(slurm_backend, handle).state is RunState.SUCCEEDED
    assert f"{workdir} [\"it's\", '$HOME']" in read_all_logs(slurm_backend, handle)
    assert os.access(tmp_path / "quoting" / "slurm-job.sh", os.X_OK)
