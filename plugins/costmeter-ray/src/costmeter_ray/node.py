"""What runs on the Ray nodes: one run actor per run, one agent per node.

Both classes are plain here; the backend turns them into Ray actors (``ray.remote``) when it
connects, so importing this module does not import Ray.

``RunActor`` holds the run's resources (``num_gpus``, ``num_cpus``): Ray creates it once they
are free, it starts the command in a process group of its own, waits for it and for every
process it left running (``costmeter_ray.procs``: a run is over when all of them are, and
until then they hold the run's GPUs), tells the node's agent how it ended, and exits, which
gives the GPUs back at once.

``NodeAgent`` (one per node and namespace, no resources, detached) keeps each run's record
(also as ``record.json`` beside the run's ``output.log``, so a new agent picks it up), reads
logs, signals process groups for cancel, and samples the node for every run on it with
Costmeter's node sampler: one stream of samples per node, however many runs it has.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from costmeter_ray.procs import MARK_ENV, run_processes, signal_run

LOG_FILE = "output.log"
RECORD_FILE = "record.json"
#: The most one ``read_log`` call returns.
MAX_CHUNK = 1024 * 1024
#: Seconds a finished run actor waits for the backend's first question before it exits.
ANSWER_WAIT_S = 5.0
#: The longest pause between looks for the processes a run's command left running.
LEFTOVER_POLL_MAX_S = 0.5
#: Environment variable naming a node in samples and statuses (else its hostname).
NODE_NAME_ENV = "COSTMETER_NODE_NAME"

# Runs the command with PR_SET_PDEATHSIG: if the run actor dies (killed, its node's raylet
# gone), the run's top process is killed instead of living on where nobody tracks it.
_LAUNCHER = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(137)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    print(f"costmeter-ray: cannot run {sys.argv[2]!r}: {exc.strerror}.", file=sys.stderr)
    os._exit(127)
"""


def make_private_dir(path: Path) -> None:
    """``path`` and its missing parents, made 0700 whatever the umask (a run's output may
    hold secrets); directories that exist are left as they are."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for made in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another run made it meanwhile
            made.mkdir(mode=0o700)
            os.chmod(made, 0o700)


def open_private_log(path: Path) -> Any:
    """``path`` opened for appending, created 0600 if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "ab")


def run_actor_name(key: str) -> str:
    return f"costmeter-run-{key}"


def agent_name(node_id: str) -> str:
    return f"costmeter-node-{node_id}"


def node_name() -> str:
    import socket

    return os.environ.get(NODE_NAME_ENV, "").strip() or socket.gethostname()


def base_dir(configured: str | None) -> Path:
    """Where runs keep their files on this node."""
    return Path(configured or Path(tempfile.gettempdir()) / "costmeter-ray")


def check_command(command: str, path: str, cwd: Path, node: str) -> str | None:
    """Why ``command`` cannot run on this node, in a sentence; None when it can."""
    if "/" in command:
        target = Path(command).expanduser()
        if not target.is_absolute():
            target = cwd / target
        if not target.exists():
            return f"command not found on {node}: '{command}' (there is no file {target})."
        if target.is_dir():
            return f"cannot run '{command}' on {node}: it is a directory."
        if not os.access(target, os.X_OK):
            hint = f"python {command}" if command.endswith(".py") else f"chmod +x {target}"
            return f"cannot run '{command}' on {node}: it is not executable (try: {hint})."
        return None
    if shutil.which(command, path=path) is not None:
        return None
    return f"command not found on {node}: '{command}' (looked in PATH: {path})."


# -- the run actor -------------------------------------------------------------------------


class RunActor:
    """One run: started by Ray once its resources are free (see the module doc)."""

    def __init__(
        self,
        key: str,
        namespace: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        driver_cwd: str | None,
        agent_options: Mapping[str, Any],
    ) -> None:
        import ray

        self.key = key
        self._namespace = namespace
        self._agent_options = dict(agent_options)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.node = node_name()
        self.gpus = tuple(int(g) for g in ray.get_gpu_ids())
        self._asked = threading.Event()
        self.agent = get_agent(self.node_id, namespace, agent_options)
        run_dir = base_dir(agent_options.get("node_dir")) / namespace / key
        make_private_dir(run_dir)
        self._spawned = threading.Event()
        self._record: dict[str, Any] = {}
        thread = threading.Thread(
            target=self._run,
            args=(list(argv), dict(env), cwd, driver_cwd, run_dir),
            name=f"costmeter-run-{key}",
            daemon=True,
        )
        thread.start()
        self._spawned.wait()
        self._tell_agent("started", key, self._record, self._agent_options)

    def where(self) -> dict[str, Any]:
        """Where the run landed; answering it also lets a finished actor exit."""
        self._asked.set()
        return {"node_id": self.node_id, "node": self.node, "gpus": list(self.gpus)}

    def _run(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        driver_cwd: str | None,
        run_dir: Path,
    ) -> None:
        """Start, wait, report, exit. This thread must outlive the child (PR_SET_PDEATHSIG)."""
        popen = None
        try:
            popen = self._start(argv, env, cwd, driver_cwd, run_dir)
        finally:
            self._spawned.set()
        if popen is not None:
            code = popen.wait()
            self._wait_leftovers(popen.pid, code)
            self._report_end(code)
        self._asked.wait(ANSWER_WAIT_S)
        import ray

        ray.actor.exit_actor()

    def _start(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        driver_cwd: str | None,
        run_dir: Path,
    ) -> subprocess.Popen[bytes] | None:
        base = {
            "key": self.key,
            "node": self.node,
            "node_id": self.node_id,
            "gpus": list(self.gpus),
            "log": str(run_dir / LOG_FILE),
            "dir": str(run_dir),
        }
        node_env = dict(os.environ)
        full_env = {"PYTHONUNBUFFERED": "1", **node_env, **env, MARK_ENV: self.key}
        cvd = node_env.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None:  # Ray's placement wins over anything the run's env says
            full_env["CUDA_VISIBLE_DEVICES"] = cvd
        where = self._workdir(cwd, driver_cwd, run_dir)
        problem = where if isinstance(where, str) else None
        if problem is None and isinstance(where, Path):
            problem = check_command(argv[0], full_env.get("PATH", os.defpath), where, self.node)
        if problem is not None:
            now = time.time()
            self._record = {**base, "started": None, "ended": now, "message": problem}
            return None
        assert isinstance(where, Path)
        command = argv
        if sys.platform.startswith("linux"):
            command = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]
        try:
            with open_private_log(run_dir / LOG_FILE) as log:
                popen = subprocess.Popen(
                    command,
                    cwd=where,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: cancel reaches children
                    close_fds=True,
                )
        except OSError as exc:
            message = f"cannot start '{argv[0]}' on {self.node}: {exc.strerror}."
            self._record = {**base, "started": None, "ended": time.time(), "message": message}
            return None
        self._record = {
            **base,
            "pid": popen.pid,
            "pgid": popen.pid,
            "create_time": _create_time(popen.pid),
            "started": time.time(),
            "ended": None,
        }
        return popen

    @staticmethod
    def _workdir(cwd: str | None, driver_cwd: str | None, run_dir: Path) -> Path | str:
        """The run's working directory, or why there is none."""
        if cwd:
            path = Path(cwd).expanduser()
            if path.is_dir():
                return path
            what = "is not a directory" if path.exists() else "does not exist"
            return f"the working directory '{cwd}' {what} on {node_name()}."
        if driver_cwd and Path(driver_cwd).is_dir():  # the same files (this machine, a share)
            return Path(driver_cwd)
        return run_dir

    def _wait_leftovers(self, pgid: int, code: int) -> None:
        """Wait until no process of the run is left (the agent hears the command's end)."""
        left = run_processes(pgid, self.key)
        if not left:
            return
        with contextlib.suppress(Exception):
            self._tell_agent("command_ended", self.key, code)
        pause = 0.01
        while left:
            time.sleep(pause)
            pause = min(pause * 1.5, LEFTOVER_POLL_MAX_S)
            # Once more at once when none is found: a process forking as /proc is read.
            left = run_processes(pgid, self.key) or run_processes(pgid, self.key)

    def _report_end(self, code: int) -> None:
        with contextlib.suppress(Exception):  # else the agent finds the process gone: "lost"
            self._tell_agent("finished", self.key, code, time.time())

    def _tell_agent(self, method: str, *args: Any) -> None:
        """Call the node's agent; once more with a new one if it had just exited (idle)."""
        import ray

        for attempt in range(3):
            try:
                ray.get(getattr(self.agent, method).remote(*args), timeout=30)
                return
            except ray.exceptions.RayActorError:
                if attempt == 2:
                    raise
                time.sleep(0.3)
                self.agent = get_agent(self.node_id, self._namespace, self._agent_options)


_remote_agent: Any = None


def get_agent(node_id: str, namespace: str, options: Mapping[str, Any]) -> Any:
    """This node's agent, created if there is none (any node may ask for any node's)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    global _remote_agent
    if _remote_agent is None:
        _remote_agent = ray.remote(NodeAgent)
    return _remote_agent.options(
        name=agent_name(node_id),
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=16,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(namespace, dict(options))


# -- the node agent ------------------------------------------------------------------------


class NodeAgent:
    """Records, logs, cancel and samples for every run on one node (see the module doc)."""

    def __init__(self, namespace: str, options: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.root = base_dir(options.get("node_dir")) / namespace
        self.node = node_name()
        self._factory: Callable[[], Any] | None = options.get("node_sampler")
        self._interval = float(options.get("sample_interval_s", 1.0))
        self._idle_exit_s = float(options.get("idle_exit_s", 600.0))
        buffer_s = float(options.get("sample_buffer_s", 900.0))
        self._samples: deque[dict[str, Any]] = deque(maxlen=max(10, int(buffer_s / self._interval)))
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._gone_since: dict[str, float] = {}
        self._sampler: Any = None
        self._sampler_lock = threading.Lock()
        self._sampler_error = ""
        self._last_busy = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="costmeter-node-agent", daemon=True).start()

    # -- records -----------------------------------------------------------------------------

    def ping(self) -> str:
        return self.node

    def started(self, key: str, record: dict[str, Any], options: Mapping[str, Any]) -> None:
        with self._lock:
            if self._factory is None and options.get("node_sampler") is not None:
                # Made by a backend without a sampler: the first one with one sets it.
                self._factory = options["node_sampler"]
                self._interval = float(options.get("sample_interval_s", self._interval))
            self._records[key] = dict(record)
            self._save(key, self._records[key])
            self._last_busy = time.monotonic()

    def command_ended(self, key: str, code: int) -> None:
        """The run's command exited; processes it started still run (the run goes on)."""
        with self._lock:
            rec = self._load(key)
            if rec is None or rec.get("ended") is not None:
                return
            rec["command_code"] = code
            self._save(key, rec)

    def finished(self, key: str, code: int | None, ended: float) -> None:
        with self._lock:
            rec = self._load(key)
            if rec is None:
                return
            rec.update(exit_code=code, ended=ended, end_known=code is not None)
            self._save(key, rec)
            self._last_busy = time.monotonic()
        self._sample_now()  # the run's last moments

    def record(self, key: str) -> dict[str, Any] | None:
        """The run's record, with its live process ids while it runs."""
        with self._lock:
            rec = self._load(key)
            if rec is None:
                return None
            out = dict(rec)
        if out.get("ended") is None and out.get("pid"):
            out["pids"] = _members(out)
        return out

    def cancel(self, key: str, grace_s: float) -> str:
        """SIGTERM to the run's group now, SIGKILL after ``grace_s``; returns what it did."""
        with self._lock:
            rec = self._load(key)
            if rec is None:
                return "unknown"
            if rec.get("ended") is not None or rec.get("cancel_requested"):
                return "nothing"
            rec["cancel_requested"] = True
            self._save(key, rec)
        if not self._signal(key, signal.SIGTERM):
            return "gone"
        timer = threading.Timer(max(grace_s, 0.0), self._force, args=(key,))
        timer.daemon = True
        timer.start()
        return "signalled"

    def _force(self, key: str) -> None:
        with self._lock:
            rec = self._load(key)
            if rec is None or rec.get("ended") is not None:
                return
            rec["forced"] = True
            self._save(key, rec)
        if not self._signal(key, signal.SIGKILL):
            with self._lock:
                rec["forced"] = False
                self._save(key, rec)

    def _signal(self, key: str, sig: int) -> bool:
        """``sig`` to the run's group and to every process of it (``setsid`` ones too)."""
        rec = self._records.get(key) or {}
        pgid = rec.get("pgid")
        if not pgid or rec.get("ended") is not None:
            return False
        return signal_run(int(pgid), key, sig)

    def read_log(self, key: str, offset: int) -> dict[str, Any]:
        """Bytes of the run's log from ``offset``; ``finished`` is read before the bytes."""
        rec = self.record(key)
        if rec is None:
            return {"error": "unknown"}
        finished = rec.get("ended") is not None
        path = Path(rec.get("log") or self.root / key / LOG_FILE)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(MAX_CHUNK)
                at_end = not f.read(1)
        except FileNotFoundError:
            if rec.get("started") is None:  # it never started: there is no output
                return {"data": b"", "at_end": True, "finished": finished}
            return {"error": f"the run's log {path} no longer exists on {self.node}."}
        except OSError as exc:
            return {"error": f"cannot read the run's log {path} on {self.node}: {exc.strerror}."}
        return {"data": data, "at_end": at_end, "finished": finished}

    def _load(self, key: str) -> dict[str, Any] | None:
        rec = self._records.get(key)
        if rec is None:
            try:
                rec = json.loads((self.root / key / RECORD_FILE).read_text())
            except (OSError, ValueError):
                return None
            self._records[key] = rec
        return rec

    def _save(self, key: str, rec: dict[str, Any]) -> None:
        path = self.root / key / RECORD_FILE
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(rec))
            os.replace(tmp, path)

    # -- sampling ----------------------------------------------------------------------------

    def samples(self, since_ts: float) -> dict[str, Any]:
        """``{"samples": readings after since_ts, "error": why sampling failed, or ""}``."""
        with self._lock:
            found = [s for s in self._samples if s["tick"].ts > since_ts]
        return {"samples": found, "error": self._sampler_error}

    def _running(self) -> dict[int, list[int]]:
        """Top pid -> GPU indices of the runs still going; once a run's command has exited,
        each process it left running stands in for it."""
        found: dict[int, list[int]] = {}
        for key, r in self._records.items():
            if r.get("ended") is not None or not r.get("pid"):
                continue
            gpus = list(r.get("gpus", ()))
            if r.get("command_code") is None:
                found[int(r["pid"])] = gpus
            else:
                found.update(dict.fromkeys(run_processes(int(r["pgid"]), key), gpus))
        return found

    def _sample_now(self) -> None:
        if self._factory is None or self._sampler_error:
            return
        with self._lock:
            running = self._running()
        try:
            with self._sampler_lock:
                if self._sampler is None:
                    self._sampler = self._factory()
            reading = self._sampler.sample(list(running), running)
        except Exception as exc:  # a broken sampler costs the samples, never the runs
            self._sampler_error = f"sampling {self.node} failed: {type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._samples.append(reading)

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self._interval
            if next_at < time.monotonic():
                next_at = time.monotonic() + self._interval
            with self._lock:
                busy = bool(self._running())
            if busy:
                self._last_busy = time.monotonic()
                self._sample_now()
                self._notice_lost()
            elif time.monotonic() - self._last_busy > self._idle_exit_s:
                self._exit()
                return

    def _notice_lost(self) -> None:
        """A run whose process is gone with no end reported (its actor died): end unknown."""
        now = time.monotonic()
        with self._lock:
            for key, rec in self._records.items():
                if rec.get("ended") is not None or not rec.get("pid"):
                    continue
                pgid = int(rec.get("pgid") or rec["pid"])
                if _alive(int(rec["pid"]), rec.get("create_time")) or run_processes(pgid, key):
                    self._gone_since.pop(key, None)
                    continue
                since = self._gone_since.setdefault(key, now)
                if now - since >= 1.0:  # the run actor reports an end within ms of it
                    rec.update(ended=time.time(), exit_code=None, end_known=False)
                    self._save(key, rec)

    def _exit(self) -> None:
        import ray

        if self._sampler is not None:
            with contextlib.suppress(Exception):
                self._sampler.close()
        with contextlib.suppress(BaseException):
            ray.actor.exit_actor()


def _alive(pid: int, create_time: float | None) -> bool:
    """Whether the run's process still exists (a zombie not yet reaped counts)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return not create_time or abs(proc.create_time() - create_time) < 0.05
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return [pid]
    return [pid, *(k.pid for k in kids)]


def _members(rec: Mapping[str, Any]) -> list[int]:
    """The run's live processes, its command first while it runs."""
    pid = int(rec["pid"])
    running = rec.get("command_code") is None
    found: dict[int, None] = dict.fromkeys(_tree(pid)) if running else {}
    found.update(dict.fromkeys(run_processes(int(rec.get("pgid") or pid), str(rec["key"]))))
    return list(found) or [pid]
