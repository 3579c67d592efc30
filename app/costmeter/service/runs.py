"""``RunService``: the run queue wired to the database, the monitor, cost and estimates.

Used by ``costmeter run`` / ``sweep`` and, later, the desktop app's Runs page (from a worker
thread: nothing here touches Qt). What it adds to the queue:

- every run is a row in ``runs`` from the moment it is queued (a run that cannot start too);
- each run gets a directory ``<runs_dir>/<id>`` for its output and progress file, and the
  environment variables ``COSTMETER_RUN_ID`` and ``COSTMETER_PROGRESS_FILE``;
- while a run lives, its PIDs (and children) are sampled by the monitor, when this process owns
  it; on simulated GPUs the run's PID is put on the GPUs it got, with a workload profile;
- a run on another machine (``RunStatus.node``, a Ray node) is priced from that node's samples,
  which a backend with ``Capability.NODE_SAMPLES`` hands back and the monitor's writer stores
  (``run_nodes.py``); a run whose node is this machine is treated as a local one;
- the budget: a run whose cost so far, or whose forecast at completion (once its progress
  reports at least ``FORECAST_FROM`` done), passes ``spec.budget`` is cancelled;
- when a run ends, its cost is computed from the samples (after the next sample is written)
  and stored in its row; subscribers then get a ``COSTED`` event.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from costmeter import progress
from costmeter.cost.prediction import Prediction
from costmeter.cost.pricing import Pricing
from costmeter.cost.run_cost import Estimate, RunCost
from costmeter.plugin_api import (
    PROGRESS_ENV,
    RUN_ID_ENV,
    Backend,
    LogChunk,
    RunHandle,
    RunSpec,
    RunState,
)
from costmeter.runs.commands import command_key, default_name
from costmeter.runs.events import EventKind, Listener, RunEvent, RunInfo
from costmeter.runs.queue import RunQueue
from costmeter.runs.scheduler import GpuPool
from costmeter.service.monitor import Monitor
from costmeter.service.run_costs import (
    LiveRun,
    budget_reason,
    cost_columns,
    cost_of_run,
    estimate_for,
    live_figures,
    reprice_estimated,
)
from costmeter.service.run_jobs import JobProcesses
from costmeter.service.run_nodes import RunNodes
from costmeter.service.run_prediction import predict_spec
from costmeter.service.run_reconcile import reconcile_at_start
from costmeter.service.run_support import (
    CpuTracker,
    SimulatedRuns,
    fresh_dir,
    spec_dict,
)
from costmeter.service.storage_watch import DEFAULT_INTERVAL_S, StorageWatch
from costmeter.store.lock import is_locked
from costmeter.store.runs import UNFINISHED, RunRow, RunStore

log = logging.getLogger(__name__)


@dataclass
class RunServiceOptions:
    db_path: Path
    pricing: Pricing
    #: Where run directories go (default: ``runs`` beside the database).
    runs_dir: Path | None = None
    #: A monitor this process owns: runs' PIDs are sampled by it, and simulated GPUs get them.
    monitor: Monitor | None = None
    #: GPUs Costmeter may place runs on (default: the monitor's devices, else none).
    gpu_count: int | None = None
    #: The machine's GPUs when other services place runs on them too (``RunSession``); its
    #: own count and runs per GPU then apply.
    gpu_pool: GpuPool | None = None
    max_parallel: int = 1
    per_gpu: int = 1
    stop_on_failure: bool = False
    #: Simulated workload of a run's PID (default: its GPU's profile in --simulate, else train).
    profile: str | None = None
    #: Take the simulated GPUs' own stand-in processes off, so runs are their only workload.
    simulated_runs_only: bool = False
    poll_s: float = 0.25
    #: How often a running run's CPU time and budget are checked.
    check_interval_s: float = 1.0
    stream_logs: bool = False
    #: Without a monitor of ours but with a recorder on the file: how long after a run's end to
    #: wait for its last samples to be written before pricing it.
    settle_s: float = 2.5
    grace_s: float = 10.0
    #: How often the samples of the nodes that runs execute on (other machines) are fetched.
    node_poll_s: float = 1.0
    #: How often the output folders of running runs (``RunSpec.output_dirs``) are measured.
    storage_interval_s: float = DEFAULT_INTERVAL_S
    #: Where notices go (a node whose samples cannot be stored, ...); default: the log.
    on_message: Callable[[str], None] | None = None


@dataclass
class _Live:
    run_dir: Path
    pids: set[int] = field(default_factory=set)
    cpu: CpuTracker = field(default_factory=CpuTracker)
    attached: list[tuple[int, int]] = field(default_factory=list)  # (gpu index, pid)
    next_check: float = 0.0
    #: The run executes on another machine: its PIDs are that machine's, not tracked here.
    remote: bool = False
    #: A scheduler's job on this machine: its processes, wherever they hang in the tree.
    job: JobProcesses | None = None


class RunService:
    def __init__(self, backend: Backend, options: RunServiceOptions) -> None:
        self.options = options
        self.backend = backend
        self.pricing = options.pricing
        self.monitor = options.monitor
        self.store = RunStore.open(options.db_path)
        self.runs_dir = options.runs_dir or options.db_path.parent / "runs"
        mon = self.monitor
        self.hostname = (
            mon.host_info.hostname if mon is not None and mon.host_info else socket.gethostname()
        )
        # Runs a Costmeter that stopped left "running" are marked lost where runs are managed
        # (advice only reads): once, as the service starts.
        self.reconciled = reconcile_at_start(self.store, say=options.on_message)
        # Estimated costs of batch jobs whose node's samples have arrived since: measured now.
        self.repriced: list[int] = []
        try:
            self.repriced = reprice_estimated(self.store, options.pricing)
        except Exception:
            log.exception("Estimated run costs could not be priced again.")
        gpu_count = options.gpu_count
        if gpu_count is None:
            gpu_count = len(mon.devices) if mon is not None else 0
        fake = mon.fake if mon is not None else None
        self._sim = (
            SimulatedRuns(fake, profile=options.profile, runs_only=options.simulated_runs_only)
            if fake is not None
            else None
        )
        # The runs' output folders, measured on a thread of its own (service/storage_watch.py).
        self.storage = StorageWatch(
            self.store,
            lambda: self.pricing.storage_gb_month,
            interval_s=options.storage_interval_s,
        )
        self.nodes = RunNodes(
            backend,
            monitor=mon,
            hostname=self.hostname,
            interval_s=options.node_poll_s,
            on_message=options.on_message,
        )
        self._lock = threading.RLock()
        self._live: dict[int, _Live] = {}
        self._costs: dict[int, RunCost] = {}
        self._listeners: list[Listener] = []
        self._last_tick = 0.0
        self._pending_costs = 0
        self._costs_done = threading.Condition(self._lock)
        self._jobs: queue.Queue[int | None] = queue.Queue()
        self._finisher = threading.Thread(target=self._cost_loop, name="costmeter-run-costs")
        self._finisher.daemon = True
        self._finisher.start()
        # Queue events are written to their rows and passed on here, in order, not on the
        # runs' polling threads: a run's end is noticed without waiting for its row writes.
        self._events: queue.Queue[tuple[RunEvent, _Live] | None] = queue.Queue()
        self._poster = threading.Thread(target=self._post_loop, name="costmeter-run-rows")
        self._poster.daemon = True
        self._poster.start()
        if mon is not None:
            mon.add_listener(self._on_tick)
        self.queue = RunQueue(
            backend,
            max_parallel=options.max_parallel,
            gpu_count=gpu_count,
            per_gpu=options.per_gpu,
            stop_on_failure=options.stop_on_failure,
            poll_s=options.poll_s,
            grace_s=options.grace_s,
            stream_logs=options.stream_logs,
            check=self._check,
            pool=options.gpu_pool,
        )
        self.queue.subscribe(self._on_event)

    # -- public API ---------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Events of every run, in order, after the database has them (on the service's
        threads: one for the queue's events, one for COSTED)."""
        with self._lock:
            self._listeners.append(listener)

        def undo() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return undo

    def estimate(self, argv: tuple[str, ...] | list[str], gpus: int) -> Estimate:
        return estimate_for(self.store, argv, gpus, self.pricing)

    def predict(self, spec: RunSpec) -> Prediction:
        """The run's predicted duration and cost from past runs of its command family."""
        return predict_spec(self.store, spec, self.pricing, host=self.hostname)

    def submit(
        self, spec: RunSpec, *, sweep: str | None = None, parent_id: int | None = None
    ) -> int:
        """Queue a run; returns its id in the database. Problems arrive as a FINISHED event.

        ``parent_id``: the run this one is launched again from (an applied recommendation)."""
        est = self.estimate(spec.argv, spec.gpus)
        try:
            pred = self.predict(spec)
        except Exception:  # a prediction never stops a run
            log.exception("The run's prediction could not be made.")
            pred = Prediction(None, None, None, None, "no prediction (an error)", 0, "none")
        name = spec.name or default_name(spec.argv)
        run_id = self.store.insert(
            name=name,
            backend=self.queue.backend_name,
            spec=spec_dict(spec),
            status=RunState.QUEUED.value,
            created=time.time(),
            host=self.hostname,
            command_key=command_key(spec.argv, spec.gpus),
            sweep=sweep,
            parent_id=parent_id,
            tags=dict(spec.tags),
            gpus=[],
            pids=[],
            currency=self.pricing.currency,
            estimate=est.amount,
            estimate_runs=est.runs,
            predicted_duration_s=pred.duration_s,
            predicted_cost=pred.cost,
            predicted_low=pred.low,
            predicted_high=pred.high,
            prediction_basis=pred.basis,
        )
        # Its directory goes in the row with its first state change (``_write_row``): one
        # write less on the submitting thread, which a sweep's hundreds of runs wait on.
        run_dir = fresh_dir(self.runs_dir, run_id)
        with self._lock:
            self._live[run_id] = _Live(run_dir)
        env = {RUN_ID_ENV: str(run_id), PROGRESS_ENV: str(run_dir / progress.FILE_NAME)}
        self.queue.submit(spec, key=run_id, run_dir=run_dir, env=env, name=name)
        return run_id

    def cancel(self, run_id: int, reason: str = "Cancelled by the user.") -> bool:
        return self.queue.cancel(run_id, reason)

    def cancel_all(self, reason: str = "Cancelled by the user.") -> None:
        self.queue.cancel_all(reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Until every run has finished and been priced; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.queue.wait(timeout):
            return False
        with self._costs_done:
            while self._pending_costs:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._costs_done.wait(0.5 if left is None else min(left, 0.5))
        return True

    def row(self, run_id: int) -> RunRow | None:
        return self.store.get(run_id)

    def cost(self, run_id: int) -> RunCost | None:
        """The final cost of a finished, priced run (None before)."""
        with self._lock:
            return self._costs.get(run_id)

    def live(self, run_id: int, now: float | None = None) -> LiveRun | None:
        """Cost so far, progress, ETA and forecast of a run (None if it is unknown)."""
        row = self.store.get(run_id)
        if row is None:
            return None
        with self._lock:
            live = self._live.get(run_id)
        cpu = live.cpu.seconds if live is not None else None
        return live_figures(self.store, row, self.pricing, tracked_cpu_s=cpu, now=now)

    def read_log(self, run_id: int, offset: int = 0) -> LogChunk:
        """The run's output from ``offset`` (pass ``next_offset`` back to follow it); also for
        runs of earlier sessions, through the handle stored in their row."""
        handle = None
        with contextlib.suppress(KeyError):
            handle = self.queue.info(run_id).handle
        row = self.store.get(run_id) if handle is None else None
        if row is not None and row.handle_key and row.backend == self.queue.backend_name:
            handle = RunHandle(row.backend, row.handle_key, row.handle_data)
        if handle is None:
            return LogChunk("", offset, complete=row is None or row.status not in UNFINISHED)
        return self.backend.read_logs(handle, offset)

    def close(self) -> None:
        """Stop taking runs; runs still going are left alone (cancel them first)."""
        self.queue.close()
        self._events.put(None)
        if threading.current_thread() is not self._poster:  # not from inside a listener
            self._poster.join(timeout=30)
        self._jobs.put(None)
        self._finisher.join(timeout=30)
        self.nodes.close()
        self.storage.close()
        self.store.close()

    # -- simulation and tracking --------------------------------------------------------------

    def _is_local(self, node: str | None) -> bool:
        """Whether a run on ``node`` runs on this machine (``None``, or this host's name: a Ray
        instance started here), where the local monitor samples it."""
        return not self.nodes.is_remote(node)

    def _attach(self, info: RunInfo, live: _Live) -> None:
        if self._sim is None or not info.pids or not self._is_local(info.node) or live.attached:
            return
        live.attached = self._sim.attach(info.pids[0], info.gpu_indices, info.spec.argv)

    def _detach(self, live: _Live) -> None:
        if self._sim is not None:
            self._sim.detach(live.attached)
        live.attached = []

    def _track(self) -> None:
        if self.monitor is not None:
            with self._lock:
                pids = set().union(*(lv.pids for lv in self._live.values() if not lv.remote))
            self.monitor.set_tracked_pids(pids)

    # -- queue callbacks ----------------------------------------------------------------------

    def _on_event(self, event: RunEvent) -> None:
        info = event.run
        with self._lock:
            live = self._live.get(info.key)
        if live is None:
            return
        running = event.kind in (EventKind.STARTED, EventKind.UPDATED)
        if running and self._is_local(info.node):
            live.pids |= set(info.pids)
            if event.kind == EventKind.STARTED:
                live.cpu.read(info.pids[:1])
                self.storage.watch(info.key, info.spec.output_dirs)
            self._attach(info, live)
            self._track()
        elif running and info.node is not None:
            # On another machine: its PIDs (that machine's) go in the row for attribution from
            # the node's samples; they are not tracked or read here.
            if not live.remote:
                live.remote = True
                self._track()
            live.pids |= set(info.pids)
            since = info.started or info.submitted_at or time.time()
            # A scheduler's job whose backend hands back no samples is priced from what an
            # agent or source there records (else estimated): nothing to poll, nothing to say.
            if info.job is None or self.nodes.fetches:
                self.nodes.started(info.key, info.node, info.handle, since)
        if event.kind == EventKind.FINISHED:
            self._detach(live)
            with self._lock:  # counted now: ``wait`` waits for its row, listeners and price
                self._pending_costs += 1
        self._events.put((event, live))

    def _post_loop(self) -> None:
        while (item := self._events.get()) is not None:
            event, live = item
            try:
                if event.kind in (EventKind.STARTED, EventKind.UPDATED, EventKind.FINISHED):
                    self._write_row(event.run, live)
                self._forward(event)
            except Exception:  # a bug here must not stop the events of every other run
                log.exception("Run %s: its %s event was not passed on.", event.run.key, event.kind)
            finally:
                if event.kind == EventKind.FINISHED:
                    # Priced after FINISHED has gone out: without a monitor to wait for, COSTED
                    # could otherwise reach listeners first (the desktop app then waited for it
                    # forever).
                    self._jobs.put(event.run.key)

    def _write_row(self, info: RunInfo, live: _Live) -> None:
        values: dict[str, object] = {
            "status": info.state.value,
            "started": info.started,
            "gpus": list(info.gpu_indices),
            "pids": sorted(live.pids),
            "node": info.node,
            "message": info.message,
            "run_dir": str(live.run_dir),
        }
        if info.job is not None:
            values["job"] = info.job
        if info.allocated_gpus is not None:
            values["allocated_gpus"] = info.allocated_gpus
        if info.handle is not None:
            values["handle_key"] = info.handle.key
            values["handle_data"] = dict(info.handle.data)
        if info.state.finished:
            values["ended"] = info.ended
            values["exit_code"] = info.exit_code
        try:
            self.store.update(info.key, **values)
        except Exception:
            log.exception("Run %s could not be written to the database.", info.key)

    def _forward(self, event: RunEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("A run listener failed on %s.", event.kind)

    def _check(self, info: RunInfo) -> str | None:
        """Called on every poll of a running run: its CPU time (cheap: the backend lists the
        live process tree), and now and then its budget."""
        with self._lock:
            live = self._live.get(info.key)
        if live is None:
            return None
        if info.pids and self._is_local(info.node):
            live.cpu.read(info.pids)
        if live.attached and not _alive(live.attached[0][1]):
            # A process that ended leaves the GPU as it does on real NVML, not when the
            # backend reports the run's end (a scheduler's poll, seconds later).
            self._detach(live)
        now = time.monotonic()
        if now < live.next_check:
            return None
        live.next_check = now + self.options.check_interval_s
        if info.job is not None and self._is_local(info.node):
            self._track_job(info.job, live)
        budget = info.spec.budget
        if budget is None:
            return None
        figures = self.live(info.key)
        return None if figures is None else budget_reason(figures, budget, self.pricing.currency)

    def _track_job(self, job: str, live: _Live) -> None:
        """A job's processes on this machine that are not the reported PID's descendants
        (Slurm starts tasks from slurmstepd): sampled as the run's from the next tick."""
        if live.job is None or live.job.job != job:
            live.job = JobProcesses(job)
        try:
            found = live.job.scan()
        except Exception:
            log.exception("The processes of job %s could not be listed.", job)
            return
        if not found <= live.pids:
            live.pids |= found
            self._track()

    def _on_tick(self, tick: object) -> None:
        self._last_tick = float(getattr(tick, "ts", time.time()))

    # -- pricing finished runs ----------------------------------------------------------------

    def _cost_loop(self) -> None:
        while True:
            run_id = self._jobs.get()
            if run_id is None:
                return
            try:
                self._price(run_id)
            except Exception:
                log.exception("Run %s could not be priced.", run_id)
            finally:
                with self._costs_done:
                    self._pending_costs -= 1
                    self._costs_done.notify_all()

    def _await_samples(self, ended: float) -> None:
        """Let the samples covering a run's last moments reach the database."""
        mon = self.monitor
        if mon is not None and mon.writer is not None:
            deadline = time.monotonic() + 2 * mon.interval_s + 1.0
            while self._last_tick < ended and time.monotonic() < deadline:
                time.sleep(0.02)
            with contextlib.suppress(Exception):
                mon.writer.flush(timeout=5.0)
        elif is_locked(self.options.db_path):
            time.sleep(self.options.settle_s)

    def _await_node_samples(self, run_id: int, node: str, ended: float) -> None:
        """A run on another machine: its node's readings up to its end, written."""
        with contextlib.suppress(KeyError):
            handle = self.queue.info(run_id).handle
            wait_s = 2 * self.options.node_poll_s + 2.0
            self.nodes.settle(node, handle, ended, timeout_s=wait_s)

    def _price(self, run_id: int) -> None:
        row = self.store.get(run_id)
        with self._lock:
            live = self._live.pop(run_id, None)
        self._track()
        self.nodes.finished(run_id)
        self.storage.finish(run_id)  # its outputs as the run left them
        if row is None or row.started is None:  # never started: nothing to price
            return
        if row.ended is not None and row.node is not None and self.nodes.is_remote(row.node):
            self._await_node_samples(run_id, row.node, row.ended)
        elif row.ended is not None:
            self._await_samples(row.ended)
        cpu = live.cpu.seconds if live is not None else None
        cost = cost_of_run(self.store, row, self.pricing, tracked_cpu_s=cpu)
        self.store.update(run_id, **cost_columns(cost))
        with self._lock:
            self._costs[run_id] = cost
        info = self.queue.info(run_id)
        self._forward(RunEvent(EventKind.COSTED, info))


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
