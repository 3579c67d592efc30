"""``RunSession``: the runs one process launches into one database, for the CLI and the app alike.

What ``costmeter run``/``sweep`` and the desktop app's Runs page share: backends opened once by
name (with their configured options), one ``RunService`` per backend and simulated profile made
on first use, and **one GPU pool for the machine** that every service places its runs on, so two
backends (or two profiles) never hand out the same GPU. Each service tracks only its own runs'
PIDs in the monitor; with several, the session gives the monitor the union of all of them.

Qt-free and thread-safe: the app calls it from worker threads, the services call ``track`` from
theirs. What a caller does with events (print them, forward them to the GUI thread) is the
``listener`` it passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from costmeter.config import Config
from costmeter.cost.pricing import Pricing
from costmeter.plugin_api import Backend, LogChunk, RunHandle, RunSpec
from costmeter.runs.events import EventKind, Listener, RunEvent
from costmeter.runs.scheduler import GpuPool
from costmeter.service.backends import open_backend
from costmeter.service.monitor import Monitor
from costmeter.service.run_costs import LiveRun
from costmeter.service.run_support import record_refused
from costmeter.service.runs import RunService, RunServiceOptions
from costmeter.store.runs import UNFINISHED, RunStore

log = logging.getLogger(__name__)

LEFT_RUNNING = (
    "The desktop app closed while it ran and stopped watching it, so its end and cost were "
    "not recorded; its output is in its run directory."
)


@dataclass(frozen=True)
class SessionOptions:
    """How the session's services behave (the same for every backend)."""

    #: Take the simulated GPUs' own stand-in processes off, so runs are their only workload.
    simulated_runs_only: bool = False
    #: Send the runs' output to listeners as OUTPUT events (the CLI prints it).
    stream_logs: bool = False
    poll_s: float = 0.25
    #: Seconds between SIGTERM and SIGKILL when a run is cancelled.
    grace_s: float = 10.0
    #: Options given on the command line, over the configured ones, for every backend opened.
    backend_overrides: Mapping[str, object] | None = None
    #: Where notices go (default: the log).
    on_message: Callable[[str], None] | None = None
    #: A row's message for runs still going when the session closes (see ``close``).
    left_running: str = LEFT_RUNNING


def _no_monitor() -> Monitor | None:
    return None


class RunSession:
    """Backends, run services and the machine's GPU pool of one database in this process."""

    def __init__(
        self,
        db_path: Path,
        *,
        config: Callable[[], Config],
        monitor: Callable[[], Monitor | None] = _no_monitor,
        gpu_count: Callable[[], int] = lambda: 0,
        listener: Listener | None = None,
        options: SessionOptions | None = None,
    ) -> None:
        self.db_path = db_path
        self.options = options or SessionOptions()
        self._config = config
        self._monitor = monitor
        self._gpu_count = gpu_count
        self._listener = listener
        self._lock = threading.RLock()
        self._services: dict[tuple[str, str | None], RunService] = {}
        self._owner: dict[int, RunService] = {}
        self._backends: dict[str, Backend] = {}
        self._pids: dict[int, frozenset[int]] = {}
        self._store: RunStore | None = None
        #: This machine's GPUs, shared by every service (made with the first one).
        self.gpus: GpuPool | None = None

    # -- services and backends -----------------------------------------------------------------
    def backend(self, name: str) -> Backend:
        """The backend, loaded once with its configured options (raises a PluginError)."""
        with self._lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = open_backend(
                    name, self.db_path, self._config(), overrides=self.options.backend_overrides
                )
                self._backends[name] = backend
            return backend

    def service(
        self,
        backend_name: str,
        profile: str | None,
        pricing: Pricing,
        *,
        max_parallel: int = 1,
        per_gpu: int = 1,
        stop_on_failure: bool = False,
    ) -> RunService:
        """The service of this backend and profile, made on first use (the limits apply to a
        new one; ``submit`` sets them for every launch)."""
        key = (backend_name, profile)
        with self._lock:
            service = self._services.get(key)
            if service is not None:
                return service
            backend = self.backend(backend_name)
        monitor = self._monitor()  # may wait for the window's monitor: not under the lock
        gpu_count = len(monitor.devices) if monitor is not None else self._gpu_count()
        with self._lock:
            service = self._services.get(key)
            if service is not None:  # another launch made it meanwhile
                return service
            if self.gpus is None:
                self.gpus = GpuPool(gpu_count, per_gpu)
            options = RunServiceOptions(
                db_path=self.db_path,
                pricing=pricing,
                monitor=monitor,
                gpu_count=gpu_count,
                gpu_pool=self.gpus,
                max_parallel=max_parallel,
                per_gpu=per_gpu,
                stop_on_failure=stop_on_failure,
                profile=profile,
                simulated_runs_only=self.options.simulated_runs_only,
                stream_logs=self.options.stream_logs,
                poll_s=self.options.poll_s,
                check_interval_s=min(1.0, monitor.interval_s) if monitor is not None else 1.0,
                grace_s=self.options.grace_s,
                on_message=self.options.on_message,
            )
            service = RunService(backend, options)
            service.subscribe(self.track)
            self._services[key] = service
            return service

    def submit(
        self,
        service: RunService,
        specs: Sequence[RunSpec],
        *,
        sweep: str | None = None,
        max_parallel: int | None = None,
        per_gpu: int | None = None,
        parent_id: int | None = None,
    ) -> list[int]:
        """Queue ``specs`` on ``service``; the launch's limits (when given) become its queue's
        and, for runs Costmeter places, the machine's runs per GPU."""
        queue = service.queue
        if max_parallel is not None:
            queue.max_parallel = max_parallel
        if per_gpu is not None and not queue.places_gpus:
            queue.pool.per_gpu = per_gpu
        ids = []
        for spec in specs:
            run_id = service.submit(spec, sweep=sweep, parent_id=parent_id)
            with self._lock:
                self._owner[run_id] = service
            ids.append(run_id)
        return ids

    def owner(self, run_id: int) -> RunService | None:
        with self._lock:
            return self._owner.get(run_id)

    def services(self) -> list[RunService]:
        with self._lock:
            return list(self._services.values())

    # -- events (on the services' threads) -----------------------------------------------------
    def track(self, event: RunEvent) -> None:
        """Keep every service's PIDs sampled, then pass the event on."""
        info = event.run
        with self._lock:
            if event.kind in (EventKind.STARTED, EventKind.UPDATED) and info.node is None:
                self._pids[info.key] = self._pids.get(info.key, frozenset()) | set(info.pids)
            elif event.kind == EventKind.COSTED or (
                event.kind == EventKind.FINISHED and info.started is None
            ):
                self._pids.pop(info.key, None)
            several = len(self._services) > 1
            monitors = {id(s.monitor): s.monitor for s in self._services.values() if s.monitor}
            pids = set().union(*self._pids.values()) if several and self._pids else set()
        if several:
            for monitor in monitors.values():
                monitor.set_tracked_pids(pids)
        if self._listener is not None:
            self._listener(event)

    # -- calls on runs -------------------------------------------------------------------------
    def live(self, ids: list[int]) -> dict[int, LiveRun]:
        out = {}
        for run_id in ids:
            service = self.owner(run_id)
            figures = service.live(run_id) if service is not None else None
            if figures is not None:
                out[run_id] = figures
        return out

    def log_reader(self, run_id: int) -> Callable[[int], LogChunk]:
        """Reads the run's output from an offset: through its service when this session runs
        it, else through its backend with the handle stored in its row."""
        service = self.owner(run_id)
        if service is not None:
            return lambda at: service.read_log(run_id, at)
        with self._lock:
            if self._store is None:
                self._store = RunStore.open(self.db_path)
            store = self._store
        row = store.get(run_id)
        if row is None:
            raise LookupError(f"Run {run_id} is not in the database.")
        if not row.handle_key:
            done = row.status not in UNFINISHED
            return lambda at: LogChunk("", at, complete=done)
        backend = self.backend(row.backend)
        handle = RunHandle(row.backend, row.handle_key, row.handle_data)
        return lambda at: backend.read_logs(handle, at)

    def cancel(self, run_id: int) -> bool:
        service = self.owner(run_id)
        return service is not None and service.cancel(run_id)

    def cancel_all(self, reason: str) -> None:
        for service in self.services():
            service.cancel_all(reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Until every run of every service has finished and been priced; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for service in self.services():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not service.wait(left):
                return False
        return True

    def record_refused(
        self, specs: Sequence[RunSpec], backend: str, text: str, *, sweep: str | None = None
    ) -> None:
        """A failed row per run that could not even be queued (its backend failed to load),
        so that ``costmeter runs`` and the Runs page say why. Call off the GUI thread."""
        with RunStore.open(self.db_path) as store:
            for spec in specs:
                record_refused(store, spec, backend, text, sweep=sweep)

    def close(self, left: Sequence[int] = ()) -> None:
        """Close the services with nothing going; the runs ``left`` go on, and their rows say
        that nobody watches them any more. Backends stay open (``close_backends``)."""
        with self._lock:
            services = list(self._services.values())
            busy = {id(self._owner[k]) for k in left if k in self._owner}
            store, self._store = self._store, None
        for service in services:
            if id(service) not in busy:
                _close_quietly(service)
        for run_id in left:
            owner = self.owner(run_id)
            if owner is not None:
                self._note_left_running(owner, run_id)
        if store is not None:
            store.close()

    def close_backends(self) -> list[str]:
        """Close every backend opened; returns what went wrong, one sentence each."""
        with self._lock:
            backends = list(self._backends.values())
            self._backends.clear()
        problems = []
        for backend in backends:
            try:
                backend.close()
            except Exception as exc:
                problems.append(str(exc))
        return problems

    def _note_left_running(self, service: RunService, run_id: int) -> None:
        try:
            row = service.row(run_id)
            if row is not None and row.status in UNFINISHED:
                service.store.update(run_id, message=self.options.left_running)
        except Exception:
            log.exception("Run %s could not be marked as left running.", run_id)


def _close_quietly(service: RunService) -> None:
    try:
        service.close()
    except Exception:
        log.exception("A run service did not close cleanly.")
