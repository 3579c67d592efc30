"""Runs launched from the desktop app: run services on worker threads, their events on the GUI's.

The GUI thread never calls a backend or a ``RunService`` itself (both read SQLite or start
processes): every call goes through ``TaskRunner`` to a ``ServicePool`` (``run_services.py``)
and its answer comes back by callback. The services' events arrive on their own threads and are
forwarded here with a queued signal.

Lifetime: a ``RunService`` is made on the first launch with a backend (and simulated profile),
on a worker thread, with the window's ``Monitor`` so the runs' PIDs are sampled and put on
simulated GPUs. On close the window asks what to do with runs still going (see
``MainWindow.closeEvent``): cancel them (the window waits for their end and cost) or leave them
running (their rows then say that the app stopped watching them).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from costmeter.core import CostmeterError
from costmeter.gui.bridge import MonitorBridge
from costmeter.gui.context import AppContext
from costmeter.gui.run_launch import LaunchRequest
from costmeter.gui.run_services import GRACE_S, ServicePool, wait_for
from costmeter.gui.tasks import TaskRunner, describe
from costmeter.plugin_api import BackendConfig, Capability
from costmeter.runs.events import EventKind, RunEvent, RunInfo
from costmeter.runs.registry import OK, probe_all
from costmeter.service.backends import backend_config
from costmeter.service.monitor import Monitor
from costmeter.service.run_costs import LiveRun
from costmeter.service.run_support import record_refused
from costmeter.store.runs import RunStore

__all__ = ["GRACE_S", "BackendChoice", "Launched", "LogRead", "RunManager"]

#: At most this much of a log is shown when a run is first selected (its tail).
LOG_TAIL_CHARS = 512 * 1024


@dataclass(frozen=True)
class BackendChoice:
    """One backend for the launch dialog: loadable or not, and what it can do."""

    name: str
    ok: bool
    error: str = ""
    description: str = ""
    gpus: bool = True
    places_gpus: bool = False


@dataclass(frozen=True)
class LogRead:
    text: str
    next_offset: int
    complete: bool
    #: Output before ``text`` was skipped (only the tail of a long log is shown at first).
    skipped: bool = False


@dataclass(frozen=True)
class Launched:
    ids: tuple[int, ...]
    backend: str
    sweep: str | None


class RunManager(QObject):
    #: A run event, on the GUI thread.
    run_event = Signal(object)
    #: Runs were queued (a ``Launched``; no ids when they could not be).
    launched = Signal(object)
    #: A sentence for the user, and its level ("info" or "error").
    message = Signal(str, str)
    #: The backends were probed (a list of ``BackendChoice``).
    backends_ready = Signal(object)
    #: Every run of this window has finished and been priced.
    idle = Signal()
    _received = Signal(object)

    def __init__(
        self, ctx: AppContext, bridge: MonitorBridge | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.bridge = bridge
        self.tasks = TaskRunner(4, self)
        self.pool = self._new_pool()
        #: This window's runs, as their latest events say (GUI thread).
        self.runs: dict[int, RunInfo] = {}
        self._settling: set[int] = set()
        self.choices: list[BackendChoice] | None = None
        self._launches = itertools.count(1)
        self._received.connect(self._deliver)

    def _new_pool(self) -> ServicePool:
        holder: list[ServicePool] = []

        def forward(event: RunEvent) -> None:  # on the services' threads
            with contextlib.suppress(RuntimeError):  # the manager was deleted with its window
                self._received.emit((holder[0], event))

        pool = ServicePool(
            self.ctx.db_path, forward, self._monitor, self.gpu_count, lambda: self.ctx.config
        )
        holder.append(pool)
        return pool

    def _monitor(self) -> Monitor | None:
        bridge = self.bridge
        if bridge is None:
            return None
        return wait_for(lambda: bridge.monitor, lambda: bridge.running)

    # -- GUI-thread queries --------------------------------------------------------------------
    def active(self) -> list[RunInfo]:
        """This window's runs that have not finished."""
        return [info for info in self.runs.values() if not info.state.finished]

    def settled(self) -> bool:
        """No run of this window is going or waiting for its cost."""
        return not self.active() and not self._settling

    def pid_names(self) -> dict[int, str]:
        """PID -> run name for this window's live runs (for the Processes page)."""
        return {pid: info.name for info in self.active() for pid in info.pids}

    def gpu_count(self) -> int:
        """GPUs the monitor sees and has not lost."""
        live = self.ctx.live
        return sum(1 for uuid in list(live.devices) if uuid not in live.lost_at)

    def gpu_limit(self, choice: BackendChoice | None) -> int | None:
        """GPUs a run may ask for on this backend; None when the backend places them itself."""
        if choice is not None and choice.places_gpus:
            return None
        if choice is not None and not choice.gpus:
            return 0
        return self.gpu_count()

    # -- bridge --------------------------------------------------------------------------------
    def set_bridge(self, bridge: MonitorBridge | None) -> None:
        """Sampling restarted (on simulated GPUs, into another database): new launches get new
        services; runs already going finish on the old ones, no longer shown here."""
        self.bridge = bridge
        old = self.pool
        self.pool = self._new_pool()
        self.runs.clear()
        self._settling.clear()
        self.tasks.submit("retire", old.close)

    # -- launching -----------------------------------------------------------------------------
    def probe_backends(self) -> None:
        """Load every backend once, off the GUI thread; ``backends_ready`` says how it went."""
        if self.tasks.busy("probe"):
            return

        config = self.ctx.config

        def made(name: str, state_dir: Path) -> BackendConfig:  # each with its options
            return backend_config(name, config=config, state_dir=state_dir)

        def job() -> list[BackendChoice]:
            out = []
            for status in probe_all(timeout_s=15.0, make_config=made):
                ok = status.status == OK
                caps = status.capabilities
                out.append(
                    BackendChoice(
                        name=status.name,
                        ok=ok,
                        error=status.error,
                        description=status.info.description,
                        gpus=Capability.GPUS in caps if ok else True,
                        places_gpus=Capability.PLACES_GPUS in caps,
                    )
                )
            return out

        def done(choices: list[BackendChoice]) -> None:
            self.choices = choices
            self.backends_ready.emit(choices)

        def failed(text: str) -> None:
            self.choices = [BackendChoice("local", True)]
            self.backends_ready.emit(self.choices)
            self.message.emit(f"The run backends could not be listed: {text}", "error")

        self.tasks.submit("probe", job, done, failed)

    def launch(self, request: LaunchRequest) -> None:
        """Queue the request's runs (on a worker thread); ``launched`` or ``message`` answers.

        A backend that cannot be loaded leaves a failed row per run, saying why."""
        pool = self.pool
        pricing = self.ctx.pricing()

        def job() -> Launched:
            try:
                service = pool.service(request.backend, request.profile, pricing)
            except CostmeterError as exc:
                text = describe(exc)
                with RunStore.open(pool.db_path) as store:
                    for spec in request.specs:
                        record_refused(store, spec, request.backend, text, sweep=request.sweep)
                raise CostmeterError(f"The run could not start: {text}") from None
            ids = pool.submit(
                service,
                request.specs,
                sweep=request.sweep,
                max_parallel=request.max_parallel,
                per_gpu=request.per_gpu,
                parent_id=request.parent_id,
            )
            return Launched(tuple(ids), request.backend, request.sweep)

        def failed(text: str) -> None:
            self.message.emit(text, "error")
            self.launched.emit(Launched((), request.backend, request.sweep))

        self.tasks.submit(f"launch-{next(self._launches)}", job, self.launched.emit, failed)

    # -- events --------------------------------------------------------------------------------
    @Slot(object)
    def _deliver(self, payload: tuple[ServicePool, RunEvent]) -> None:
        pool, event = payload
        if pool is not self.pool:  # from before sampling restarted
            return
        info = event.run
        self.runs[info.key] = info
        if event.kind == EventKind.FINISHED and info.started is not None:
            self._settling.add(info.key)
        elif event.kind == EventKind.COSTED:
            self._settling.discard(info.key)
        self.run_event.emit(event)
        if event.kind in (EventKind.FINISHED, EventKind.COSTED) and self.settled():
            self.idle.emit()

    # -- calls on runs -------------------------------------------------------------------------
    def live(
        self,
        ids: list[int],
        done: Callable[[dict[int, LiveRun]], None],
        failed: Callable[[str], None] | None = None,
    ) -> None:
        """Cost so far, ETA and forecast of this window's running runs (a worker reads)."""
        pool = self.pool
        self.tasks.submit("live", lambda: pool.live(ids), done, failed)

    def read_log(
        self,
        run_id: int,
        offset: int,
        done: Callable[[LogRead], None],
        failed: Callable[[str], None],
    ) -> None:
        """The run's output from ``offset`` (from 0: at most the tail of what is there)."""
        pool = self.pool

        def job() -> LogRead:
            read = pool.log_reader(run_id)
            text, at, skipped = "", offset, False
            for _ in range(256):  # 256 MiB at most per call with the local backend
                chunk = read(at)
                text += chunk.text
                at = chunk.next_offset
                if len(text) > LOG_TAIL_CHARS:
                    text, skipped = text[-LOG_TAIL_CHARS:], True
                if chunk.complete or not chunk.text:
                    return LogRead(text, at, chunk.complete, skipped)
            return LogRead(text, at, False, skipped)

        self.tasks.submit("log", job, done, failed)

    def cancel(self, run_id: int, done: Callable[[bool], None]) -> None:
        """Cancel one of this window's runs (True: asked to stop; False: it had finished)."""
        pool = self.pool

        def failed(text: str) -> None:
            self.message.emit(f"Run {run_id} could not be cancelled: {text}", "error")

        self.tasks.submit(f"cancel-{run_id}", lambda: pool.cancel(run_id), done, failed)

    def cancel_all(self, reason: str = "Cancelled when the desktop app closed.") -> None:
        pool = self.pool
        self.tasks.submit("cancel-all", lambda: pool.cancel_all(reason))

    def shutdown(self, timeout: float = 10.0) -> None:
        """On window close: runs still going are left alone (their rows say so) and services
        with nothing left to do are closed. Waits at most ``timeout`` seconds."""
        left = [info.key for info in self.active()]
        self.tasks.shutdown(wait=False)
        thread = threading.Thread(
            target=self.pool.close, args=(left,), name="costmeter-runs-close", daemon=True
        )
        thread.start()
        thread.join(timeout)
