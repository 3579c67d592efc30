"""The ``local`` backend: each run is a process group on this machine.

Files in the run directory:

- ``output.log``: stdout and stderr of the whole group, interleaved in the order written (both
  go to one file). ``PYTHONUNBUFFERED=1`` is set unless the run's env says otherwise, so a Python
  script's prints and tracebacks arrive in order and at once.
- ``exit.json``: written when the process ends while Costmeter watches (exit code, end time,
  whether Costmeter cancelled it), so a Costmeter that restarts still knows how a run ended.
- ``cancel-requested``: written by ``cancel``.

A handle's ``data`` holds ``pid``, ``pgid``, ``create_time`` (to tell a reused pid apart),
``run_dir``, ``started`` and ``gpus`` (comma-separated indices), so ``status`` works on a
handle rebuilt after a restart. A run that ended while no Costmeter watched it is ``LOST``
(its exit code is unknown), or ``CANCELLED`` when a cancel had been asked for.

Exit codes follow :mod:`subprocess`: a run ended by signal N has exit code -N.
Runs live in a table shared by every LocalBackend of this process: each child has one thread
that waits for it (so it is always reaped) and records how it ended.
"""

from __future__ import annotations

import codecs
import contextlib
import json
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

LOG_FILE = "output.log"
EXIT_FILE = "exit.json"
CANCEL_FILE = "cancel-requested"
#: The most a single ``read_logs`` call returns.
MAX_CHUNK = 1024 * 1024


@dataclass
class _Exit:
    code: int
    ended: float
    cancelled: bool
    forced: bool = False


@dataclass
class _Child:
    popen: subprocess.Popen[bytes]
    run_dir: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: bool = False
    forced: bool = False
    exit: _Exit | None = None


_children: dict[str, _Child] = {}
_children_lock = threading.Lock()


class LocalBackend:
    """Runs commands on this machine. Costmeter picks the GPUs and passes them in ``env``."""

    API_VERSION = API_VERSION

    def __init__(self, config: BackendConfig | None = None) -> None:
        self._config = config or BackendConfig()

    @property
    def metadata(self) -> BackendMetadata:
        return BackendMetadata(
            name="local",
            version=__version__,
            api_version=API_VERSION,
            description="Runs commands as processes on this machine.",
            capabilities=frozenset({Capability.GPUS, Capability.CANCEL, Capability.LOGS}),
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
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env, **env}
        bad = [k for k, v in full_env.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise BackendError(f"environment variable {bad[0]!r} must be a string.")
        _check_command(spec.argv[0], full_env.get("PATH", os.defpath), cwd)
        log_path = run_dir / LOG_FILE
        try:
            log = open(log_path, "ab")  # noqa: SIM115 - the child keeps its own copy
        except OSError as exc:
            raise BackendError(f"cannot write the run's log {log_path}: {exc.strerror}.") from None
        started = time.time()
        with log:
            try:
                popen = subprocess.Popen(
                    list(spec.argv),
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
        key = uuid.uuid4().hex
        child = _Child(popen, run_dir)
        with _children_lock:
            _children[key] = child
        threading.Thread(
            target=_wait_for, args=(child,), name=f"costmeter-local-{popen.pid}", daemon=True
        ).start()
        data = {
            "pid": str(popen.pid),
            "pgid": str(popen.pid),
            "create_time": repr(create_time),
            "run_dir": str(run_dir),
            "started": repr(started),
            "gpus": ",".join(str(i) for i in placement.gpu_indices),
        }
        return RunHandle(backend="local", key=key, data=data)

    # -- status -----------------------------------------------------------------------------

    def status(self, handle: RunHandle) -> RunStatus:
        info = _HandleData.parse(handle)
        child = _children.get(handle.key)
        if child is not None:
            with child.lock:
                ended = child.exit
                forced = child.forced
            if ended is None:
                return info.running(self._pids(info.pid))
            return info.finished(ended.code, ended.ended, ended.cancelled, forced)
        return self._status_from_disk(info)

    def _status_from_disk(self, info: _HandleData) -> RunStatus:
        recorded = info.read_exit()
        if recorded is not None:
            return recorded
        if info.alive():
            return info.running(self._pids(info.pid))
        recorded = info.read_exit()  # it may have been written while we looked
        if recorded is not None:
            return recorded
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

    @staticmethod
    def _pids(pid: int) -> tuple[int, ...]:
        try:
            kids = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            return (pid,)
        return (pid, *(k.pid for k in kids))

    # -- cancel -----------------------------------------------------------------------------

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        """SIGTERM to the run's process group now, SIGKILL to the group after ``grace_s``."""
        info = _HandleData.parse(handle)
        child = _children.get(handle.key)
        if child is not None:
            with child.lock:
                if child.exit is not None or child.cancelled:
                    return
                child.cancelled = True
        elif not info.alive():
            return
        with contextlib.suppress(OSError):
            (info.run_dir / CANCEL_FILE).write_text(f"{time.time()!r}\n")
        try:
            os.killpg(info.pgid, signal.SIGTERM)
        except ProcessLookupError:  # it ended on its own just before: not a cancellation
            if child is not None:
                with child.lock:
                    child.cancelled = False
            with contextlib.suppress(OSError):
                (info.run_dir / CANCEL_FILE).unlink()
            return
        except PermissionError:
            raise BackendError(
                f"not allowed to stop process group {info.pgid}: it belongs to another user."
            ) from None
        timer = threading.Timer(max(grace_s, 0.0), _force, args=(info.pgid, child))
        timer.name = f"costmeter-local-kill-{info.pgid}"
        timer.daemon = True
        timer.start()

    # -- logs -------------------------------------------------------------------------------

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        """Bytes of ``output.log`` from ``offset`` (offsets count bytes), decoded as UTF-8."""
        info = _HandleData.parse(handle)
        finished = self.status(handle).state.finished  # before reading: nothing can be missed
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


def _wait_for(child: _Child) -> None:
    """Reap the child, record how it ended (in memory and in exit.json)."""
    code = child.popen.wait()
    ended = time.time()
    with child.lock:
        record = {"exit_code": code, "ended": ended, "cancelled": child.cancelled}
    # The file first: once status says "finished", a Costmeter that exits has left the record.
    tmp = child.run_dir / (EXIT_FILE + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(record))
        os.replace(tmp, child.run_dir / EXIT_FILE)
    with child.lock:
        child.exit = _Exit(code, ended, child.cancelled, child.forced)


def _force(pgid: int, child: _Child | None) -> None:
    if child is not None:  # set first, so a status read as the process dies already says so
        with child.lock:
            child.forced = child.exit is None or child.forced
    try:
        os.killpg(pgid, signal.SIGKILL)
        if child is not None:
            with child.lock:
                child.forced = True
    except OSError:  # the whole group is gone already
        if child is not None:
            with child.lock:
                child.forced = False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


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

    def running(self, pids: tuple[int, ...]) -> RunStatus:
        return RunStatus(RunState.RUNNING, started=self.started, pids=pids, gpu_indices=self.gpus)

    def finished(self, code: int, ended: float, cancelled: bool, forced: bool) -> RunStatus:
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
        return RunStatus(
            state,
            exit_code=code,
            started=self.started,
            ended=ended,
            gpu_indices=self.gpus,
            message=message,
        )

    def read_exit(self) -> RunStatus | None:
        try:
            record = json.loads((self.run_dir / EXIT_FILE).read_text())
            code, ended = int(record["exit_code"]), float(record["ended"])
            cancelled = bool(record.get("cancelled"))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self.finished(code, ended, cancelled, forced=False)

    def unknown_end(self, state: RunState, message: str) -> RunStatus:
        return RunStatus(state, started=self.started, gpu_indices=self.gpus, message=message)
