"""The local backend with real processes: start, fail, stream, cancel, kill, survive a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from costmeter.plugin_api import (
    PROGRESS_ENV,
    RUN_ID_ENV,
    BackendConfig,
    BackendError,
    Placement,
    RunHandle,
    RunSpec,
    RunState,
)
from costmeter.plugin_testing import (
    BackendConformance,
    python_spec,
    read_all_logs,
    submit,
    wait_finished,
    wait_for_log,
)
from costmeter.runs import local
from costmeter.runs.local import LocalBackend

pytestmark = pytest.mark.integration
PY = sys.executable


class TestLocalConformance(BackendConformance):
    grace_s = 0.3

    def make_backend(self, config: BackendConfig) -> LocalBackend:
        return LocalBackend(config)


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(BackendConfig(state_dir=tmp_path))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.02)
    return False


def test_success_writes_output_log_and_exit_record(backend: LocalBackend, tmp_path: Path) -> None:
    handle = submit(backend, python_spec("print('hello')"), tmp_path / "run")
    status = wait_finished(backend, handle)
    assert (status.state, status.exit_code, status.message) == (RunState.SUCCEEDED, 0, "")
    assert status.started is not None and status.ended is not None
    assert status.started <= status.ended
    assert (tmp_path / "run" / "output.log").read_text() == "hello\n"
    assert json.loads((tmp_path / "run" / "exit.json").read_text())["exit_code"] == 0
    assert set(handle.data) == {"pid", "pgid", "create_time", "run_dir", "started", "gpus"}


def test_failure_keeps_its_exit_code(backend: LocalBackend, tmp_path: Path) -> None:
    handle = submit(backend, python_spec("raise SystemExit(7)"), tmp_path / "run")
    status = wait_finished(backend, handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, 7)
    assert status.message == "Exited with code 7."


def test_command_not_found_says_where_it_looked(backend: LocalBackend, tmp_path: Path) -> None:
    (tmp_path / "trian.py").write_text("print(1)\n")
    spec = RunSpec(argv=("trian.py",), cwd=str(tmp_path))
    with pytest.raises(BackendError) as err:
        submit(backend, spec, tmp_path / "run")
    assert "command not found: 'trian.py' (looked in PATH:" in str(err.value)
    assert "'python trian.py'" in str(err.value)


def test_relative_and_non_executable_commands_are_explained(
    backend: LocalBackend, tmp_path: Path
) -> None:
    with pytest.raises(BackendError, match=r"command not found: './nope.sh' \(there is no file"):
        submit(backend, RunSpec(argv=("./nope.sh",), cwd=str(tmp_path)), tmp_path / "a")
    (tmp_path / "train.py").write_text("print(1)\n")
    with pytest.raises(BackendError, match=r"not executable \(try: python ./train.py\)"):
        submit(backend, RunSpec(argv=("./train.py",), cwd=str(tmp_path)), tmp_path / "b")


def test_bad_working_directory(backend: LocalBackend, tmp_path: Path) -> None:
    spec = python_spec("pass", cwd=str(tmp_path / "missing"))
    with pytest.raises(BackendError, match=r"working directory .*missing' does not exist"):
        submit(backend, spec, tmp_path / "run")


def test_env_layers_and_gpu_placement(backend: LocalBackend, tmp_path: Path) -> None:
    code = (
        "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['MINE'], "
        f"os.environ[{RUN_ID_ENV!r}], os.environ[{PROGRESS_ENV!r}], os.environ['PYTHONUNBUFFERED'])"
    )
    spec = python_spec(code, env={"CUDA_VISIBLE_DEVICES": "0", "MINE": "x", RUN_ID_ENV: "no"})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {"CUDA_VISIBLE_DEVICES": "1,3", RUN_ID_ENV: "42", PROGRESS_ENV: "/p"}
    handle = backend.submit(spec, Placement(gpu_indices=(1, 3)), env, run_dir)
    status = wait_finished(backend, handle)
    assert status.gpu_indices == (1, 3)
    assert read_all_logs(backend, handle) == "1,3 x 42 /p 1\n"


def test_argv_is_not_interpreted_by_a_shell(backend: LocalBackend, tmp_path: Path) -> None:
    tricky = ["a b", "'single'", '"double"', "$HOME", "; echo pwned", "*", "`id`"]
    spec = RunSpec(argv=(PY, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *tricky))
    handle = submit(backend, spec, tmp_path / "run")
    wait_finished(backend, handle)
    assert json.loads(read_all_logs(backend, handle)) == tricky


def test_stdout_and_stderr_interleave_in_order(backend: LocalBackend, tmp_path: Path) -> None:
    code = "import sys\nfor i in range(3):\n print('out', i)\n print('err', i, file=sys.stderr)"
    handle = submit(backend, python_spec(code), tmp_path / "run")
    wait_finished(backend, handle)
    lines = read_all_logs(backend, handle).splitlines()
    assert lines == ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2"]


def test_logs_never_split_a_character(
    backend: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "MAX_CHUNK", 3)  # "é" is 2 bytes: chunks end mid-character
    handle = submit(backend, python_spec("print('éé€x')"), tmp_path / "run")
    wait_finished(backend, handle)
    offset, parts, calls = 0, [], 0
    while True:
        chunk = backend.read_logs(handle, offset)
        parts.append(chunk.text)
        offset, calls = chunk.next_offset, calls + 1
        if chunk.complete:
            break
    assert "".join(parts) == "éé€x\n" and "\ufffd" not in "".join(parts)
    assert calls > 2


def test_logs_stream_while_running_with_offsets(backend: LocalBackend, tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = (
        f"import os, time\nprint('one')\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
        "\nprint('two')"
    )
    handle = submit(backend, python_spec(code), tmp_path / "run")
    seen, offset = wait_for_log(backend, handle, "one")
    chunk = backend.read_logs(handle, offset)
    assert (chunk.text, chunk.next_offset, chunk.complete) == ("", offset, False)
    go.touch()
    wait_finished(backend, handle)
    chunk = backend.read_logs(handle, offset)
    assert (seen + chunk.text, chunk.complete) == ("one\ntwo\n", True)


TRAP_TERM = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, lambda *a: print('got TERM', flush=True))
    if len(sys.argv) > 1:  # start a grandchild that also shrugs off SIGTERM
        kid = subprocess.Popen([sys.executable, '-c', sys.argv[1]])
        print('grandchild', kid.pid, flush=True)
    print('ready', flush=True)
    while True:
        time.sleep(0.05)
    """
)
GRANDCHILD = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True: time.sleep(0.05)"
)


def test_cancel_sends_sigterm_then_sigkill(backend: LocalBackend, tmp_path: Path) -> None:
    handle = submit(backend, python_spec(TRAP_TERM), tmp_path / "run")
    wait_for_log(backend, handle, "ready")
    begun = time.monotonic()
    backend.cancel(handle, grace_s=0.4)
    assert time.monotonic() - begun < 0.2  # the caller does not wait for the grace period
    status = wait_finished(backend, handle, timeout_s=5)
    assert time.monotonic() - begun >= 0.35
    assert (status.state, status.exit_code) == (RunState.CANCELLED, -signal.SIGKILL)
    assert "SIGKILL" in status.message
    assert "got TERM" in read_all_logs(backend, handle)
    assert (tmp_path / "run" / "cancel-requested").exists()
    assert _gone(int(handle.data["pid"]))


def test_cancel_kills_the_whole_process_group(backend: LocalBackend, tmp_path: Path) -> None:
    spec = RunSpec(argv=(PY, "-c", TRAP_TERM, GRANDCHILD))
    handle = submit(backend, spec, tmp_path / "run")
    seen, _ = wait_for_log(backend, handle, "ready")
    grandchild = int(seen.split("grandchild ")[1].split()[0])
    assert grandchild in backend.status(handle).pids
    backend.cancel(handle, grace_s=0.2)
    assert wait_finished(backend, handle, timeout_s=5).state is RunState.CANCELLED
    assert _wait_gone(grandchild), "the grandchild outlived the cancel"


def test_a_run_killed_from_outside_is_failed(backend: LocalBackend, tmp_path: Path) -> None:
    handle = submit(backend, python_spec(TRAP_TERM), tmp_path / "run")
    wait_for_log(backend, handle, "ready")
    os.kill(int(handle.data["pid"]), signal.SIGKILL)
    status = wait_finished(backend, handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, -9)
    assert status.message == "Killed by signal 9 (SIGKILL) from outside Costmeter."


def test_cancelling_a_finished_run_changes_nothing(backend: LocalBackend, tmp_path: Path) -> None:
    handle = submit(backend, python_spec("pass"), tmp_path / "run")
    wait_finished(backend, handle)
    backend.cancel(handle, grace_s=0)
    assert backend.status(handle).state is RunState.SUCCEEDED


def test_submits_from_many_threads(backend: LocalBackend, tmp_path: Path) -> None:
    def one(i: int) -> RunHandle:
        return submit(backend, RunSpec(argv=("true",)), tmp_path / f"r{i}")

    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(one, range(8)))
    assert len({h.key for h in handles}) == 8
    assert {wait_finished(backend, h).state for h in handles} == {RunState.SUCCEEDED}


# -- a Costmeter that restarted: the handle comes back from the database ------------------------

EARLIER_COSTMETER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from costmeter.plugin_api import Placement, RunSpec
    from costmeter.runs.local import LocalBackend
    run_dir, wait, code = Path(sys.argv[1]), sys.argv[2] == "wait", sys.argv[3]
    run_dir.mkdir()
    b = LocalBackend()
    h = b.submit(RunSpec(argv=(sys.executable, "-c", code)), Placement(), {}, run_dir)
    while wait and not b.status(h).state.finished:
        time.sleep(0.01)
    print(json.dumps({"key": h.key, "data": dict(h.data)}))
    """
)


def _submit_elsewhere(run_dir: Path, code: str, wait: bool) -> RunHandle:
    out = subprocess.run(
        [PY, "-c", EARLIER_COSTMETER, str(run_dir), "wait" if wait else "go", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    stored = json.loads(out.stdout)
    return RunHandle("local", stored["key"], stored["data"])


def test_rebuilt_handle_of_a_run_that_ended_while_watched(
    backend: LocalBackend, tmp_path: Path
) -> None:
    handle = _submit_elsewhere(tmp_path / "run", "raise SystemExit(4)", wait=True)
    status = backend.status(handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, 4)
    assert read_all_logs(backend, handle) == ""


def test_rebuilt_handle_of_a_run_that_outlived_costmeter(
    backend: LocalBackend, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
    handle = _submit_elsewhere(tmp_path / "run", code, wait=False)
    pid = int(handle.data["pid"])
    try:
        status = backend.status(handle)
        assert status.state is RunState.RUNNING and status.pids[0] == pid
    finally:
        go.touch()
    assert _wait_gone(pid)
    status = backend.status(handle)
    assert status.state is RunState.LOST and status.exit_code is None
    assert "exit code is unknown" in status.message


def test_cancel_through_a_rebuilt_handle(backend: LocalBackend, tmp_path: Path) -> None:
    handle = _submit_elsewhere(tmp_path / "run", "import time; time.sleep(30)", wait=False)
    backend.cancel(handle, grace_s=0.2)
    assert _wait_gone(int(handle.data["pid"]))
    status = backend.status(handle)
    assert status.state is RunState.CANCELLED, status


def test_a_reused_pid_is_not_mistaken_for_the_run(backend: LocalBackend, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    data = {"pid": str(os.getpid()), "create_time": "1.0", "run_dir": str(tmp_path / "run")}
    status = backend.status(RunHandle("local", "k", data))
    assert status.state is RunState.LOST


def test_a_foreign_handle_is_refused_with_a_sentence(backend: LocalBackend) -> None:
    with pytest.raises(BackendError, match="not made by the local backend"):
        backend.status(RunHandle("local", "k", {"run_dir": "/tmp"}))
