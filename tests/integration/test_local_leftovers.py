"""A local run is over when all of its processes are: background children, ``setsid``
escapees and double-forked daemons (issue 12, item 4). Real processes, real /proc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from costmeter.config import Config
from costmeter.plugin_api import BackendConfig, BackendError, RunHandle, RunSpec, RunState
from costmeter.plugin_testing import read_all_logs, submit, wait_finished, wait_for_log
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.local import LocalBackend
from costmeter.runs.queue import RunQueue
from costmeter.runs.tracking import MARK_ENV, RunProcesses
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.service.runs import RunService, RunServiceOptions

pytestmark = pytest.mark.integration
PY = sys.executable
CASE_ENV = "COSTMETER_TEST_CASE"


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(BackendConfig(state_dir=tmp_path))


@pytest.fixture
def case_env() -> Iterator[dict[str, str]]:
    """An environment variable for a test's runs; whatever carries it is killed at the end,
    whether the test passed or not (the runs' leftovers must not outlive a failed test)."""
    token = uuid.uuid4().hex
    yield {CASE_ENV: token}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(CASE_ENV) == token:
                proc.kill()


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(check: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def wait_leftovers(backend: LocalBackend, handle: RunHandle) -> tuple[int, ...]:
    """The run's processes once its command has exited (the status then says so)."""
    leader = int(handle.data["pid"])
    deadline = time.monotonic() + 10
    while True:
        status = backend.status(handle)
        assert status.state is RunState.RUNNING, status
        if status.message:  # the command was reaped: the status says what the run waits for
            assert status.message.startswith("Its command exited with code 0; waiting for")
            assert leader not in status.pids
            return status.pids
        assert time.monotonic() < deadline
        time.sleep(0.02)


def our_zombies() -> list[int]:
    return [p.pid for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE]


def test_a_background_child_keeps_the_run_going_until_it_ends(
    backend: LocalBackend, tmp_path: Path, case_env: dict[str, str]
) -> None:
    begun = time.time()
    handle = submit(
        backend, RunSpec(("sh", "-c", "sleep 3 & echo started"), env=case_env), tmp_path / "run"
    )
    (sleeper,) = wait_leftovers(backend, handle)
    assert psutil.Process(sleeper).name() == "sleep"
    status = wait_finished(backend, handle, timeout_s=15)
    assert (status.state, status.exit_code) == (RunState.SUCCEEDED, 0)
    assert status.ended is not None and status.ended - begun >= 3.0
    assert status.started is not None and status.ended - status.started >= 2.9
    assert not running(sleeper)
    assert our_zombies() == []
    assert read_all_logs(backend, handle) == "started\n"
    record = json.loads((tmp_path / "run" / "exit.json").read_text())
    assert record["exit_code"] == 0 and "waiting" not in record


def test_cancel_kills_a_setsid_escapee(
    backend: LocalBackend, tmp_path: Path, case_env: dict[str, str]
) -> None:
    """``setsid`` leaves the run's process group (a group kill misses it); the marker finds it."""
    handle = submit(
        backend, RunSpec(("sh", "-c", "setsid sleep 30 &"), env=case_env), tmp_path / "run"
    )
    (escapee,) = wait_leftovers(backend, handle)
    assert os.getsid(escapee) != int(handle.data["pgid"])  # out of the run's group and session
    backend.cancel(handle, grace_s=2)
    status = wait_finished(backend, handle, timeout_s=5)
    assert status.state is RunState.CANCELLED, status
    assert status.exit_code == 0  # the command's own code: it had exited on its own
    assert not running(escapee)


def test_cancel_kills_leftovers_that_ignore_sigterm(
    backend: LocalBackend, tmp_path: Path, case_env: dict[str, str]
) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring TERM', flush=True); time.sleep(30)"
    )
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {stubborn!r}], start_new_session=True)"
    )
    handle = submit(backend, RunSpec((PY, "-c", code), env=case_env), tmp_path / "run")
    (left,) = wait_leftovers(backend, handle)
    wait_for_log(backend, handle, "ignoring TERM")
    begun = time.monotonic()
    backend.cancel(handle, grace_s=0.3)
    status = wait_finished(backend, handle, timeout_s=5)
    assert time.monotonic() - begun >= 0.3
    assert status.state is RunState.CANCELLED and "SIGKILL" in status.message, status
    assert not running(left)


def test_a_kill_by_the_waiting_thread_still_says_sigkill(
    backend: LocalBackend, tmp_path: Path, case_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a fresh clone hit once: the grace timer marks the run forced, the thread waiting
    for leftovers kills them first, and the timer's own SIGKILL then finds nobody. The run was
    killed all the same: its message must say so. The timer's SIGKILL is held back here so the
    waiting thread always wins."""
    import costmeter.runs.local as local

    original = local._signal_run

    def late_timer_kill(procs, sig, members=None):  # type: ignore[no-untyped-def]
        if sig == signal.SIGKILL and threading.current_thread().name.startswith(
            "costmeter-local-kill"
        ):
            time.sleep(0.5)
        return original(procs, sig, members)

    monkeypatch.setattr(local, "_signal_run", late_timer_kill)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring TERM', flush=True); time.sleep(30)"
    )
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {stubborn!r}], start_new_session=True)"
    )
    handle = submit(backend, RunSpec((PY, "-c", code), env=case_env), tmp_path / "run")
    (left,) = wait_leftovers(backend, handle)
    wait_for_log(backend, handle, "ignoring TERM")
    backend.cancel(handle, grace_s=0.3)
    status = wait_finished(backend, handle, timeout_s=5)
    time.sleep(0.6)  # the held-back timer has finished: the status must not change back
    status = backend.status(handle)
    assert status.state is RunState.CANCELLED and "SIGKILL" in status.message, status
    assert not running(left)


DAEMON = textwrap.dedent(
    """
    import os, sys, time
    pidfile, go = sys.argv[1], sys.argv[2]
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + '.tmp', 'w') as f:
                f.write(str(os.getpid()))
            os.replace(pidfile + '.tmp', pidfile)
            while not os.path.exists(go):
                time.sleep(0.02)
            print('daemon done', flush=True)
            os._exit(0)
        os._exit(0)
    os.wait()
    """
)


def test_a_double_forked_daemon_is_waited_for(
    backend: LocalBackend, tmp_path: Path, case_env: dict[str, str]
) -> None:
    pidfile, go = tmp_path / "daemon.pid", tmp_path / "go"
    handle = submit(
        backend, RunSpec((PY, "-c", DAEMON, str(pidfile), str(go)), env=case_env), tmp_path / "run"
    )
    wait_until(pidfile.exists)
    daemon = int(pidfile.read_text())
    assert wait_leftovers(backend, handle) == (daemon,)
    proc = psutil.Process(daemon)
    assert proc.ppid() != os.getpid() and os.getpgid(daemon) != int(handle.data["pgid"])
    assert proc.environ()[MARK_ENV] == handle.key
    time.sleep(0.3)
    assert backend.status(handle).state is RunState.RUNNING
    go.touch()
    status = wait_finished(backend, handle)
    assert status.state is RunState.SUCCEEDED
    assert not running(daemon) and our_zombies() == []
    assert read_all_logs(backend, handle) == "daemon done\n"  # written after the command ended


def test_the_marker_alone_finds_a_process() -> None:
    """Neither in the group nor a descendant of the run's top process: only its environment
    says it is the run's."""
    env = {**os.environ, MARK_ENV: "k123"}
    other = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    unrelated = subprocess.Popen(["sleep", "30"], start_new_session=True)
    gone_leader = subprocess.Popen(["true"])
    gone_leader.wait()
    try:
        assert RunProcesses(gone_leader.pid, "k123").scan() == [other.pid]
        assert RunProcesses(gone_leader.pid, "k12").scan() == []  # the whole value, not a prefix
    finally:
        for p in (other, unrelated):
            p.kill()
            p.wait()


def test_leftovers_stop_policy_ends_them_with_the_command(
    tmp_path: Path, case_env: dict[str, str]
) -> None:
    backend = LocalBackend(BackendConfig({"leftovers": "stop", "leftover_grace_s": 0.3}))
    code = (
        "import subprocess, sys\n"
        "print(subprocess.Popen(['sleep', '30']).pid, flush=True)\n"
        "stubborn = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(30)'\n"
        "p = subprocess.Popen([sys.executable, '-c', stubborn], stdout=subprocess.PIPE)\n"
        "p.stdout.readline(); print(p.pid, flush=True)\n"
        "raise SystemExit(3)"
    )
    handle = submit(backend, RunSpec((PY, "-c", code), env=case_env), tmp_path / "run")
    status = wait_finished(backend, handle, timeout_s=10)
    sleeper, stubborn = (int(x) for x in read_all_logs(backend, handle).split())
    assert (status.state, status.exit_code) == (RunState.FAILED, 3)
    assert not running(sleeper) and not running(stubborn)


def test_bad_leftover_options_are_refused_with_a_sentence() -> None:
    with pytest.raises(BackendError, match='leftovers must be "wait" or "stop"'):
        LocalBackend(BackendConfig({"leftovers": "kill"}))
    with pytest.raises(BackendError, match="leftover_grace_s must be a number"):
        LocalBackend(BackendConfig({"leftover_grace_s": "soon"}))


RESTARTING_COSTMETER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from costmeter.plugin_api import Placement, RunSpec
    from costmeter.runs.local import LocalBackend
    run_dir, code = Path(sys.argv[1]), sys.argv[2]
    run_dir.mkdir()
    b = LocalBackend()
    h = b.submit(RunSpec(argv=(sys.executable, "-c", code)), Placement(), {}, run_dir)
    while "waiting for" not in b.status(h).message:
        time.sleep(0.01)
    print(json.dumps({"key": h.key, "data": dict(h.data)}))
    """
)


def test_a_costmeter_that_restarts_finds_the_leftovers(
    backend: LocalBackend, tmp_path: Path, case_env: dict[str, str]
) -> None:
    """The command exited (code 5) while the first Costmeter watched; its leftover runs on
    after that Costmeter is gone, and a new one knows the run goes on, and how it ends."""
    go = tmp_path / "go"
    left = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)"
    code = (
        f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {left!r}])\n"
        "raise SystemExit(5)"
    )
    out = subprocess.run(
        [PY, "-c", RESTARTING_COSTMETER, str(tmp_path / "run"), code],
        capture_output=True, text=True, check=True, timeout=30, env={**os.environ, **case_env},
    )  # fmt: skip
    stored = json.loads(out.stdout)
    handle = RunHandle("local", stored["key"], stored["data"])
    assert json.loads((tmp_path / "run" / "exit.json").read_text())["waiting"] is True
    status = backend.status(handle)
    assert status.state is RunState.RUNNING and len(status.pids) == 1, status
    go.touch()
    wait_until(lambda: backend.status(handle).state.finished)
    status = backend.status(handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, 5)
    assert "ended while Costmeter was not watching" in status.message


def test_run_log_and_directory_are_private_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        queue = RunQueue(LocalBackend(), stream_logs=False)
        run_dir = tmp_path / "runs" / "1-now"
        queue.submit(RunSpec(("sh", "-c", "echo secret")), run_dir=run_dir)
        assert queue.wait(timeout=10)
    finally:
        os.umask(old)
    assert stat.S_IMODE((run_dir / "output.log").stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(run_dir.parent.stat().st_mode) == 0o700  # made here too


def test_an_existing_run_directory_and_log_keep_their_modes(tmp_path: Path) -> None:
    """They are the user's: not ours to change on a guess."""
    run_dir = tmp_path / "mine"
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    (run_dir / "output.log").write_text("earlier\n")
    os.chmod(run_dir / "output.log", 0o644)
    handle = submit(LocalBackend(), RunSpec(("sh", "-c", "echo later")), run_dir)
    wait_finished(LocalBackend(), handle)
    assert (run_dir / "output.log").read_text() == "earlier\nlater\n"
    assert stat.S_IMODE((run_dir / "output.log").stat().st_mode) == 0o644
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o755


def _stream(queue: RunQueue) -> dict[int, str]:
    out: dict[int, str] = {}
    lock = threading.Lock()

    def listen(event: RunEvent) -> None:
        if event.kind is EventKind.OUTPUT:
            with lock:
                out[event.run.key] = out.get(event.run.key, "") + event.text

    queue.subscribe(listen)
    return out


def test_the_last_line_of_many_quick_runs_is_never_lost(tmp_path: Path) -> None:
    """Through the worker's streaming path, as ``costmeter run`` uses it: a last line printed
    right before the command exits, and one printed by a leftover after it exited."""
    queue = RunQueue(LocalBackend(), stream_logs=True, max_parallel=2)
    out = _stream(queue)
    quick = 40
    for i in range(quick):
        queue.submit(
            RunSpec(("sh", "-c", f"echo first; printf 'last {i}'")), run_dir=tmp_path / f"q{i}"
        )
    late = ("sh", "-c", "echo first; (sleep 0.3; echo late) &")
    queue.submit(RunSpec(late), run_dir=tmp_path / "late")
    assert queue.wait(timeout=60)
    assert [out.get(k + 1) for k in range(quick)] == [f"first\nlast {i}" for i in range(quick)]
    assert out[quick + 1] == "first\nlate\n"
    assert {info.state for info in queue.runs()} == {RunState.SUCCEEDED}


def test_a_leftover_is_billed_to_its_run(tmp_path: Path, case_env: dict[str, str]) -> None:
    """Through the run service with a monitor: the run's row lasts as long as its leftover,
    names its PID (attribution goes by the row's PIDs), and counts its CPU time."""
    monitor = Monitor(
        MonitorOptions(db_path=tmp_path / "c.db", config=Config(), interval_s=0.1),
        on_message=lambda m: None,
    )
    monitor.open()
    loop = threading.Thread(target=monitor.run_until, args=(None,), daemon=True)
    options = RunServiceOptions(
        db_path=tmp_path / "c.db", pricing=Config().pricing(), monitor=monitor, poll_s=0.05
    )
    service = RunService(LocalBackend(BackendConfig(state_dir=tmp_path)), options)
    loop.start()
    busy = "import time\nwhile time.process_time() < 1.0: pass"  # a second of CPU
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {busy!r}], start_new_session=True)\n"
        "print(p.pid, flush=True)"
    )
    try:
        rid = service.submit(RunSpec(argv=(PY, "-c", code), name="leaves-work", env=case_env))
        assert service.wait(30)
        row = service.row(rid)
    finally:
        service.close()
        monitor.stop()
        loop.join(5)
        monitor.close()
    assert row is not None and row.run_dir is not None
    leftover = int((Path(row.run_dir) / "output.log").read_text())
    assert (row.status, row.exit_code) == ("succeeded", 0)
    assert leftover in row.pids
    assert row.duration_s is not None and row.duration_s >= 1.0
    assert row.cpu_seconds is not None and row.cpu_seconds >= 0.8  # the leftover's, mostly
