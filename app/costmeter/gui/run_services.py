"""The worker-thread side of the Runs page: run services, backends, log readers, row listing.

Qt-free and thread-safe: ``RunManager`` calls it only from ``TaskRunner`` threads (and the run
services call ``track`` from theirs). A ``ServicePool`` belongs to one database and one monitor;
when sampling restarts elsewhere the manager makes a new pool and closes the old one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from costmeter.config import Config
from costmeter.cost.pricing import Pricing
from costmeter.plugin_api import LogChunk, RunHandle, RunSpec
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.registry import GuardedBackend
from costmeter.service.backends import open_backend
from costmeter.service.monitor import Monitor
from costmeter.service.run_costs import LiveRun, live_figures
from costmeter.service.runs import RunService, RunServiceOptions
from costmeter.store import Store
from costmeter.store.runs import UNFINISHED, RunRow, RunStore

log = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when a run is cancelled from the app.
GRACE_S = 5.0
#: How long a launch waits for the window's monitor to open before it runs without one.
MONITOR_WAIT_S = 20.0
LEFT_RUNNING = (
    "The desktop app closed while it ran and stopped watching it, so its end and cost were "
    "not recorded; its output is in its run directory."
)
UNWATCHED = (
    "No Costmeter process is watching this run any more (its launcher exited), so its end "
    "was not recorded."
)
#: Live figures of runs other processes launched: at most this many running ones.
OTHERS_LIVE_LIMIT = 20

Listener = Callable[[RunEvent], None]


class ServicePool:
    """One ``RunService`` per backend and simulated profile, made on first use.

    Every service of a backend shares one GPU pool; the latest launch's ``max_parallel`` and
    ``per_gpu`` become its queue's limits. Each service tracks only its own runs' PIDs in the
    monitor, so with several the pool gives the monitor the union of all of them.
    """

    def __init__(
        self,
        db_path: Path,
        listener: Listener,
        monitor: Callable[[], Monitor | None],
        gpu_count: Callable[[], int],
        config: Callable[[], Config],
    ) -> None:
        self.db_path = db_path
        self._config = config
        self._listener = listener
        self._monitor = monitor
        self._gpu_count = gpu_count
        self._lock = threading.RLock()
        self._services: dict[tuple[str, str | None], RunService] = {}
        self._owner: dict[int, RunService] = {}
        self._backends: dict[str, GuardedBackend] = {}
        self._pids: dict[int, frozenset[int]] = {}
        self._store: RunStore | None = None

    # -- services and backends -----------------------------------------------------------------
    def service(self, backend_name: str, profile: str | None, pricing: Pricing) -> RunService:
        key = (backend_name, profile)
        with self._lock:
            service = self._services.get(key)
            if service is not None:
                return service
            backend = self.backend(backend_name)
        monitor = self._monitor()
        gpu_count = len(monitor.devices) if monitor is not None else self._gpu_count()
        options = RunServiceOptions(
            db_path=self.db_path,
            pricing=pricing,
            monitor=monitor,
            gpu_count=gpu_count,
            profile=profile,
            simulated_runs_only=False,
            stream_logs=False,
            poll_s=0.25,
            check_interval_s=min(1.0, monitor.interval_s) if monitor is not None else 1.0,
            grace_s=GRACE_S,
        )
        with self._lock:
            service = self._services.get(key)
            if service is not None:  # another launch made it meanwhile
                return service
            service = RunService(backend, options)
            sibling = next((s for (b, _), s in self._services.items() if b == backend_name), None)
            if sibling is not None:  # one backend, one set of GPUs
                service.queue.pool = sibling.queue.pool
            service.subscribe(self.track)
            self._services[key] = service
            return service

    def backend(self, name: str) -> GuardedBackend:
        """The backend, loaded once with its configured options (raises a PluginError)."""
        with self._lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = open_backend(name, self.db_path, self._config())
                self._backends[name] = backend
            return backend

    def submit(
        self,
        service: RunService,
        specs: Sequence[RunSpec],
        *,
        sweep: str | None,
        max_parallel: int,
        per_gpu: int,
        parent_id: int | None = None,
    ) -> list[int]:
        queue = service.queue
        # The latest launch's limits are the queue's (submit starts what they allow).
        queue.max_parallel = max_parallel
        if not queue.places_gpus:
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
            services = list(self._services.values())
            pids = set().union(*self._pids.values()) if self._pids else set()
        if len(services) > 1:
            for monitor in {id(s.monitor): s.monitor for s in services if s.monitor}.values():
                monitor.set_tracked_pids(pids)
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
        """Reads the run's output from an offset: through its service when this window runs
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
        with self._lock:
            services = list(self._services.values())
        for service in services:
            service.cancel_all(reason)

    def close(self, left: Sequence[int] = ()) -> None:
        """Close the services with nothing going; the runs ``left`` go on, and their rows say
        that nobody watches them any more."""
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
                _note_left_running(owner, run_id)
        if store is not None:
            store.close()


def _note_left_running(service: RunService, run_id: int) -> None:
    try:
        row = service.row(run_id)
        if row is not None and row.status in UNFINISHED:
            service.store.update(run_id, message=LEFT_RUNNING)
    except Exception:
        log.exception("Run %s could not be marked as left running.", run_id)


def _close_quietly(service: RunService) -> None:
    try:
        service.close()
    except Exception:
        log.exception("A run service did not close cleanly.")


def wait_for(monitor: Callable[[], Monitor | None], running: Callable[[], bool]) -> Monitor | None:
    """The monitor once it has opened; None when sampling is not running (or never opens)."""
    deadline = time.monotonic() + MONITOR_WAIT_S
    while running() and time.monotonic() < deadline:
        found = monitor()
        if found is not None:
            return found
        time.sleep(0.05)
    return None


def _alive(row: RunRow, hostname: str) -> bool:
    """Whether an unfinished row's process still runs (local runs on this machine only)."""
    pid = row.handle_data.get("pid") if row.handle_data else None
    if row.backend != "local" or row.host != hostname or not pid:
        return True  # cannot tell from here
    try:
        proc = psutil.Process(int(pid))
        created = float(row.handle_data.get("create_time", "0") or 0)
        if created and abs(proc.create_time() - created) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.Error:
        return True


def load_runs(
    store: Store, limit: int, ours: frozenset[int], pricing: Pricing, hostname: str
) -> tuple[list[RunRow], dict[int, LiveRun], dict[int, str]]:
    """For the Runs page, on the reader thread: the newest ``limit`` rows, the live figures of
    runs other processes launched, and a note for those nobody watches any more."""
    runs = store.runs()
    rows = runs.list_runs(limit)
    live: dict[int, LiveRun] = {}
    notes: dict[int, str] = {}
    others = [r for r in rows if r.status in UNFINISHED and r.id not in ours]
    for row in others[:OTHERS_LIVE_LIMIT]:
        if not _alive(row, hostname):
            notes[row.id] = UNWATCHED
        elif row.started is not None:
            live[row.id] = live_figures(runs, row, pricing)
    return rows, live, notes
