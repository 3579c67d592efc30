"""The ``local`` backend: each run is a process group on this machine.

Files in the run directory (made private: the directory 0700 where it is made here, the log
0600, whatever the umask):

- ``output.log``: stdout and stderr of the whole group, interleaved in the order written (both
  go to one file). ``PYTHONUNBUFFERED=1`` is set unless the run's env says otherwise, so a Python
  script's prints and tracebacks arrive in order and at once.
- ``exit.json``: written when the run ends while Costmeter watches (exit code, end time,
  whether Costmeter cancelled it), so a Costmeter that restarts still knows how a run ended.
  While the command has exited but processes it started still run, it says ``"waiting": true``.
- ``cancel-requested``: written by ``cancel``.

A run is over when its command (the top process) has exited *and* no process of the run is
left (:mod:`costmeter.runs.tracking`: its process group, its descendants, and every process
carrying the run's marker ``COSTMETER_RUN_KEY`` in its environment, which finds ``setsid``
children and double-forked daemons). Until then it is running, billed, and its status lists
those processes; it then ends with the command's exit code. The option ``leftovers``
(``[backends.local]``) says what happens to them: ``"wait"`` (the default) waits for them to
end on their own; ``"stop"`` sends them SIGTERM as soon as the command exits, and SIGKILL after
``leftover_grace_s`` seconds (default 10). ``cancel`` stops all of them either way.

A handle's ``data`` holds ``pid``, ``pgid``, ``create_time`` (to tell a reused pid apart),
``run_dir``, ``started``, ``gpus`` (comma-separated indices) and, for a data-parallel run,
``nproc``, so ``status`` works on a handle rebuilt after a restart (its key is the marker). A
run that ended while no Costmeter watched it is ``LOST`` (its exit code is unknown), or
``CANCELLED`` when a cancel had been asked for.

A data-parallel run (``RunSpec.nproc_per_node`` > 1) is started through PyTorch's launcher
(:mod:`costmeter.runs.data_parallel`): its workers are the run's processes like any child (each
in a session of its own, found as descendants and by the marker), their lines reach
``output.log`` as ``[rank0]:...``, and a rank that fails gives the run its message.

Exit codes follow :mod:`subprocess`: a run ended by signal N has exit code -N.
Runs live in a table shared by every LocalBackend of this process: each child has one thread
that waits for it (so it is always reaped), then for what it left running, and records how
the run ended.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from costmeter import __version__
from costmeter.plugin_api import (
    API_VERSION,
    BackendConfig,
    BackendError,
    BackendMetadata,
    Capability,
    LogChunk,
    Placement,
    Resources,
    RunHandle,
    RunSpec,
    RunState,
    RunStatus,
)
from costmeter.runs.data_parallel import DataParallelError, rank_failure, torchrun_argv
from costmeter.runs.private import open_private_log
from costmeter.runs.tracking import MARK_ENV, RunProcesses

logger = logging.getLogger(__name__)

LOG_FILE = "output.log"
EXIT_FILE = "exit.json"
CANCEL_FILE = "cancel-requested"
#: The most a single ``read_logs`` call returns.
MAX_CHUNK = 1024 * 1024
#: What happens to processes a run's command leaves running (option ``leftovers``).
LEFTOVER_POLICIES = ("wait", "stop")
#: Seconds between looks at /proc while a run's command runs (its status looks too).
SCAN_WHILE_RUNNING_S = 2.0
#: The longest pause between looks for a run's leftover processes once its command exited.
SCAN_LEFTOVERS_MAX_S = 0.5
#: A status poll may report the PIDs of a look at /proc begun this long ago (another run's):
#: with many short runs, most polls then read nothing.
STATUS_SCAN_AGE_S = 0.05


@dataclass
class _Exit:
    code: int
    ended: float
    cancelled: bool
    forced: bool = False
    #: A data-parallel run's failed rank and its error (``data_parallel.rank_failure``).
    failure: str | None = None


@dataclass
class _Child:
    popen: subprocess.Popen[bytes]
    run_dir: Path
    procs: RunProcesses
    #: Processes per node: above 1, torchrun started the command (``data_parallel``).
    nproc: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: bool = False
    forced: bool = False
    #: The thread waiting for leftovers sent SIGKILL to some of them after ``forced`` was set:
    #: the timer's own SIGKILL may then find nobody left, and must not clear ``forced``.
    killed: bool = False
    exit: _Exit | None = None
    #: The command's exit code once it exited (the run may go on: see ``leftovers``).
    command_code: int | None = None
    #: The run's processes at the last look, the command first while it runs.
    members: tuple[int, ...] = ()

    def look(self, max_age_s: float = 0.0) -> tuple[int, ...]:
        """The run's live processes now (a look at /proc; see ``RunProcesses.scan``)."""
        found = tuple(self.procs.scan(max_age_s))
        with self.lock:
            self.members = found
        return found


_children: dict[str, _Child] = {}
_children_lock = threading.Lock()


class LocalBackend:
    """Runs commands on this machine. Costmeter picks the GPUs and passes them in ``env``."""

    API_VERSION = API_VERSION

    def __init__(self, config: BackendConfig | None = None) -> None:
        self._config = config or BackendConfig()
        options = self._config.options
        policy = options.get("leftovers", "wait")
        if policy not in LEFTOVER_POLICIES:
            raise BackendError(
                f'[backends.local] leftovers must be "wait" or "stop", not {policy!r}.'
            )
        grace = options.get("leftover_grace_s", 10.0)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
            raise BackendError(
                "[backends.local] leftover_grace_s must be a number of seconds >= 0."
            )
        self.leftovers = str(policy)
        self.leftover_grace_s = float(grace)

    @property
    def metadata(self) -> BackendMetadata:
        return BackendMetadata(
            name="local",
            version=__version__,
            api_version=API_VERSION,
            description="Runs commands as processes on this machine.",
            capabilities=frozenset(
                {Capability.GPUS, Capability.CANCEL, Capability.LOGS, Capability.DATA_PARALLEL}
            ),
        )

    def resources(self) -> Resources:
        return Resources(gpus=None, cpus=float(os.cpu_count() or 1))

    # -- submit -----------------------------------------------------------------------------

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        run_dir = Path(run_dir).absolute()
        cwd = Path(spec.cwd).expanduser() if spec.cwd else None
        if cwd is not None and not cwd.is_dir():
            what = "is not a directory" if cwd.exists() else "does not exist"
            raise BackendError(f"the working directory '{spec.cwd}' {what}.")
        key = uuid.uuid4().hex
        # The marker goes last: neither the run's env nor Costmeter's may change it.
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env, **env, MARK_ENV: key}
        bad = [k for k, v in full_env.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise BackendError(f"environment variable {bad[0]!r} must be a string.")
        argv = list(spec.argv)
        if spec.nproc_per_node > 1:
            try:
                argv = torchrun_argv(argv, spec.nproc_per_node, run_dir)
            except DataParallelError as exc:
                raise BackendError(str(exc)) from None
        _check_command(argv[0], full_env.get("PATH", os.defpath), cwd)
        log_path = run_dir / LOG_FILE
        try:
            log = open_private_log(log_path)
        except OSError as exc:
            raise BackendError(f"cannot write the run's log {log_path}: {exc.strerror}.") from None
        started = time.time()
        with log:
            try:
                popen = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: cancel reaches children
                    close_fds=True,
                )
            except OSError as exc:
                raise BackendError(f"cannot start '{spec.argv[0]}': {exc.strerror}.") from None
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.Error:
            create_time = 0.0
        child = _Child(popen, run_dir, RunProcesses(popen.pid, key), nproc=spec.nproc_per_node)
        with _children_lock:
            _children[key] = child
        threading.Thread(
            target=_wait_for,
            args=(child, self.leftovers, self.leftover_grace_s),
            name=f"costmeter-local-{popen.pid}",
            daemon=True,
        ).start()
        data = {
            "pid": str(popen.pid),
            "pgid": str(popen.pid),
            "create_time": repr(create_time),
            "run_dir": str(run_dir),
            "started": repr(started),
            "gpus": ",".join(str(i) for i in placement.gpu_indices),
        }
        if spec.nproc_per_node > 1:
            data["nproc"] = str(spec.nproc_per_node)
        return RunHandle(backend="local", key=key, data=data)

    # -- status -----------------------------------------------------------------------------

    def status(self, handle: RunHandle) -> RunStatus:
        info = _HandleData.parse(handle)
        child = _children.get(handle.key)
        if child is not None:
            with child.lock:
                ended = child.exit
                forced = child.forced
                code = child.command_code
            if ended is None:
                # Only the PIDs to report: whether it ended is the reaper's fresh look.
                members = child.look(STATUS_SCAN_AGE_S)
                with child.lock:  # it may have ended while we looked
                    ended = child.exit
                if ended is None:
                    return info.running(members or (info.pid,), code)
            return info.finished(
                ended.code, ended.ended, ended.cancelled, forced, failure=ended.failure
            )
        return self._status_from_disk(info)

    def _status_from_disk(self, info: _HandleData) -> RunStatus:
        recorded = info.read_exit()
        if recorded is not None and not recorded.waiting:
            return recorded.status
        members = info.processes().scan()
        if members:
            return info.running(tuple(members), recorded.code if recorded else None)
        again = info.read_exit()  # it may have been written while we looked
        if again is not None and not again.waiting:
            return again.status
        if again is not None:
            return info.finished(
                again.code, time.time(), again.cancelled, forced=False, unwatched_leftovers=True
            )
        log = info.run_dir / LOG_FILE
        if (info.run_dir / CANCEL_FILE).exists():
            return info.unknown_end(
                RunState.CANCELLED,
                "Cancelled; it ended while Costmeter was not watching, so its exit code is "
                "unknown.",
            )
        return info.unknown_end(
            RunState.LOST,
            f"The process (pid {info.pid}) ended while Costmeter was not watching, so its "
            f"exit code is unknown; its output is in {log}.",
        )

    def _finished(self, handle: RunHandle) -> bool:
        """Whether the run is over, without a look at /proc when this process watches it."""
        child = _children.get(handle.key)
        if child is not None:
            with child.lock:
                return child.exit is not None
        return self.status(handle).state.finished

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        """SIGTERM to every process of the run now (its group, and each one found by
        :mod:`~costmeter.runs.tracking`: ``setsid`` children, daemons), SIGKILL to those left
        after ``grace_s``."""
        info = _HandleData.parse(handle)
        child = _children.get(handle.key)
        if child is not None:
            with child.lock:
                if child.exit is not None or child.cancelled:
                    return
                child.cancelled = True
            procs = child.procs
        else:
            procs = info.processes()
            if not procs.scan():
                return
        with contextlib.suppress(OSError):
            (info.run_dir / CANCEL_FILE).write_text(f"{time.time()!r}\n")
        try:
            hit = _signal_run(procs, signal.SIGTERM)
        except PermissionError as exc:
            raise BackendError(
                f"not allowed to stop process {exc.filename or info.pgid}: it belongs to "
                "another user."
            ) from None
        if not hit:  # it ended on its own just before: not a cancellation
            if child is not None:
                with child.lock:
                    child.cancelled = False
            with contextlib.suppress(OSError):
                (info.run_dir / CANCEL_FILE).unlink()
            return
        _force_later(procs, child, grace_s)

    # -- logs -------------------------------------------------------------------------------

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        """Bytes of ``output.log`` from ``offset`` (offsets count bytes), decoded as UTF-8."""
        info = _HandleData.parse(handle)
        finished = self._finished(handle)  # before reading: nothing can be missed
        path = info.run_dir / LOG_FILE
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(MAX_CHUNK)
                at_end = not f.read(1)
        except FileNotFoundError:
            raise BackendError(f"the run's log {path} no longer exists.") from None
        except OSError as exc:
            raise BackendError(f"cannot read the run's log {path}: {exc.strerror}.") from None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        last = finished and at_end
        text = decoder.decode(data, final=last)
        held_back = len(decoder.getstate()[0])  # a character cut in half waits for the next call
        return LogChunk(text, offset + len(data) - held_back, complete=last)

    def close(self) -> None:
        """Nothing to release: runs go on, and pending SIGKILLs still fire."""


def _check_command(command: str, path: str, cwd: Path | None) -> None:
    """Raise a BackendError that says what is wrong, rather than Popen's bare errno."""
    if "/" in command:
        target = Path(command).expanduser()
        if not target.is_absolute():
            target = (cwd or Path.cwd()) / target
        if not target.exists():
            raise BackendError(f"command not found: '{command}' (there is no file {target}).")
        if target.is_dir():
            raise BackendError(f"cannot run '{command}': it is a directory.")
        if not os.access(target, os.X_OK):
            hint = f"python {command}" if command.endswith(".py") else f"chmod +x {target}"
            raise BackendError(f"cannot run '{command}': it is not executable (try: {hint}).")
        return
    if shutil.which(command, path=path) is not None:
        return
    message = f"command not found: '{command}' (looked in PATH: {path})."
    here = (cwd or Path.cwd()) / command
    if here.is_file():
        hint = f"python {command}" if command.endswith(".py") else f"./{command}"
        message += f" There is a file of that name in the working directory: run it as '{hint}'."
    raise BackendError(message)


def _wait_for(child: _Child, leftovers: str, grace_s: float) -> None:
    """Reap the command, wait for what it left running, record how the run ended (in memory
    and in exit.json)."""
    while True:
        try:
            code = child.popen.wait(timeout=SCAN_WHILE_RUNNING_S)
            break
        except subprocess.TimeoutExpired:  # a look now and then keeps its descendants known
            child.look()
    ended = time.time()
    try:
        if _await_leftovers(child, code, ended, leftovers, grace_s):
            ended = time.time()
    except Exception:  # the run's end must be recorded whatever went wrong in the looking
        logger.exception("Looking for the processes run %s left running failed.", child.popen.pid)
    failure = None
    if child.nproc > 1 and code != 0 and not child.cancelled:
        failure = rank_failure(child.run_dir / LOG_FILE)
    _write_exit(child, code, ended, waiting=False, failure=failure)
    with child.lock:
        child.exit = _Exit(code, ended, child.cancelled, child.forced, failure)
        child.members = ()
    child.procs.forget()


def _await_leftovers(child: _Child, code: int, ended: float, policy: str, grace_s: float) -> bool:
    """Wait until no process of the run is left; whether there were any."""
    members = child.look()
    if not members:
        return False
    with child.lock:
        cancelled = child.cancelled
    # The file first: once status says the command exited and the run waits for what it left,
    # a Costmeter that exits has left that record for the next one.
    _write_exit(child, code, ended, waiting=True)
    with child.lock:
        child.command_code = code
    if policy == "stop" and not cancelled:
        with contextlib.suppress(PermissionError):
            if _signal_run(child.procs, signal.SIGTERM):
                _force_later(child.procs, child, grace_s)
    pause = 0.01
    while members:
        with child.lock:
            forced = child.forced
        if forced:  # SIGKILL was sent: anything the run started since goes the same way
            with contextlib.suppress(PermissionError):
                if _signal_run(child.procs, signal.SIGKILL, members):
                    with child.lock:
                        child.killed = True
        time.sleep(pause)
        pause = min(pause * 1.5, SCAN_LEFTOVERS_MAX_S)
        # A second look at once when the first finds none: a process forking as we read
        # /proc is not missed.
        members = child.look() or child.look()
    return True


def _write_exit(
    child: _Child, code: int, ended: float, *, waiting: bool, failure: str | None = None
) -> None:
    # The file first: once status says "finished", a Costmeter that exits has left the record.
    with child.lock:
        record: dict[str, object] = {
            "exit_code": code,
            "ended": ended,
            "cancelled": child.cancelled,
        }
    if waiting:
        record["waiting"] = True
    if failure:
        record["failure"] = failure
    tmp = child.run_dir / (EXIT_FILE + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(record))
        os.replace(tmp, child.run_dir / EXIT_FILE)


def _signal_run(
    procs: RunProcesses, sig: int, members: tuple[int, ...] | list[int] | None = None
) -> bool:
    """Send ``sig`` to the run's process group and to each of its processes; whether any
    process got it. Raises PermissionError (``filename`` set to the pid) for another user's."""
    hit = False
    try:
        if procs.pgid is not None:
            os.killpg(procs.pgid, sig)
            hit = True
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        exc.filename = str(procs.pgid)
        raise
    for pid in procs.scan() if members is None else members:
        try:
            os.kill(pid, sig)
            hit = True
        except ProcessLookupError:
            continue
        except PermissionError as exc:
            exc.filename = str(pid)
            raise
    return hit


def _force_later(procs: RunProcesses, child: _Child | None, grace_s: float) -> None:
    timer = threading.Timer(max(grace_s, 0.0), _force, args=(procs, child))
    timer.name = f"costmeter-local-kill-{procs.leader}"
    timer.daemon = True
    timer.start()


def _force(procs: RunProcesses, child: _Child | None) -> None:
    if child is not None:  # set first, so a status read as the process dies already says so
        with child.lock:
            child.forced = child.exit is None or child.forced
    try:
        hit = _signal_run(procs, signal.SIGKILL)
    except PermissionError:
        hit = False
    if child is not None:
        with child.lock:
            child.forced = hit or child.killed


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class _Recorded:
    """What exit.json says: how the run ended, or (``waiting``) how its command did."""

    status: RunStatus
    code: int
    cancelled: bool
    waiting: bool


@dataclass(frozen=True)
class _HandleData:
    key: str
    pid: int
    pgid: int
    create_time: float
    run_dir: Path
    started: float
    gpus: tuple[int, ...]

    @classmethod
    def parse(cls, handle: RunHandle) -> _HandleData:
        d = handle.data
        try:
            gpus = tuple(int(i) for i in d.get("gpus", "").split(",") if i)
            return cls(
                handle.key,
                int(d["pid"]),
                int(d.get("pgid", d["pid"])),
                float(d.get("create_time", "0")),
                Path(d["run_dir"]),
                float(d.get("started", "0")),
                gpus,
            )
        except (KeyError, ValueError) as exc:
            raise BackendError(
                f"this run's handle was not made by the local backend (bad or missing {exc})."
            ) from None

    def alive(self) -> bool:
        """Whether our process still runs: same pid and start time, and not a zombie."""
        try:
            proc = psutil.Process(self.pid)
            if self.create_time and abs(proc.create_time() - self.create_time) > 0.05:
                return False  # the pid was reused by another process
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True

    def processes(self) -> RunProcesses:
        """The run's processes as a Costmeter that did not start it finds them: by its marker,
        and by its process group only while its command runs (else the group's number may
        belong to someone else by now)."""
        return RunProcesses(self.pid, self.key, by_group=self.alive())

    def running(self, pids: tuple[int, ...], command_code: int | None = None) -> RunStatus:
        message = ""
        if command_code is not None:
            others = ", ".join(str(p) for p in pids[:5]) + (", ..." if len(pids) > 5 else "")
            message = (
                f"Its command exited with code {command_code}; waiting for the {len(pids)} "
                f"process{'es' if len(pids) > 1 else ''} it left running ({others})."
            )
        return RunStatus(
            RunState.RUNNING,
            started=self.started,
            pids=pids,
            gpu_indices=self.gpus,
            message=message,
        )

    def finished(
        self,
        code: int,
        ended: float,
        cancelled: bool,
        forced: bool,
        *,
        unwatched_leftovers: bool = False,
        failure: str | None = None,
    ) -> RunStatus:
        if cancelled:
            state, message = RunState.CANCELLED, "Cancelled by Costmeter."
            if forced:
                message = (
                    "Cancelled by Costmeter; it did not stop within the grace period after "
                    "SIGTERM and was killed with SIGKILL."
                )
        elif code == 0:
            state, message = RunState.SUCCEEDED, ""
        elif code < 0:
            name = _signal_name(-code)
            state = RunState.FAILED
            message = f"Killed by signal {-code} ({name}) from outside Costmeter."
        else:
            state, message = RunState.FAILED, f"Exited with code {code}."
            if code > 128 and code - 128 < signal.NSIG:
                message = (
                    f"Exited with code {code}, which usually means signal {code - 128} "
                    f"({_signal_name(code - 128)})."
                )
            if failure:
                message = failure
        if unwatched_leftovers:
            message = (
                f"{message} The processes its command left running ended while Costmeter was "
                "not watching, so its end time is when Costmeter noticed."
            ).strip()
        return RunStatus(
            state,
            exit_code=code,
            started=self.started,
            ended=ended,
            gpu_indices=self.gpus,
            message=message,
        )

    def read_exit(self) -> _Recorded | None:
        try:
            record = json.loads((self.run_dir / EXIT_FILE).read_text())
            code, ended = int(record["exit_code"]), float(record["ended"])
            cancelled = bool(record.get("cancelled"))
            waiting = bool(record.get("waiting"))
            failure = record.get("failure")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        failure = failure if isinstance(failure, str) else None
        status = self.finished(code, ended, cancelled, forced=False, failure=failure)
        return _Recorded(status, code, cancelled, waiting)

    def unknown_end(self, state: RunState, message: str) -> RunStatus:
        return RunStatus(state, started=self.started, gpu_indices=self.gpus, message=message)
