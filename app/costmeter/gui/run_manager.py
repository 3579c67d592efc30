"""Runs launched from the desktop app: the Qt side of a ``RunSession``.

The GUI thread never calls a backend or a ``RunService`` itself (both read SQLite or start
processes): every call goes through ``TaskRunner`` to the window's ``RunSession``
(``costmeter.service.run_session``, shared with ``costmeter run``) and its answer comes back by
callback. The services' events arrive on their own threads and are forwarded here with a queued
signal. What is left here is that glue: signals, worker threads, and which session is current.

Lifetime: a ``RunService`` is made on the first launch with a backend (and simulated profile),
on a worker thread, with the window's ``Monitor`` so the runs' PIDs are sampled and put on
simulated GPUs. On close the window asks what to do with runs still going (see
``MainWindow.closeEvent``): cancel them (the window waits for their end and cost) or leave them
running (their rows then say that the app stopped watching them).

The manager knows the window's state only through ``RunContext`` (``AppContext`` is one), so
``gui.context`` and this module do not import each other.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, Signal, Slot

from costmeter.config import Config
from costmeter.core import CostmeterError
from costmeter.cost.pricing import Pricing
from costmeter.gui.bridge import MonitorBridge
from costmeter.gui.tasks import TaskRunner, describe
from costmeter.runs.events import EventKind, RunEvent, RunInfo
from costmeter.service.monitor import Monitor
from costmeter.service.run_costs import LiveRun
from costmeter.service.run_launch import LaunchRequest
from costmeter.service.run_session import RunSession, SessionOptions
from costmeter.service.run_views import BackendChoice, LogRead, backend_choices, read_log

__all__ = ["GRACE_S", "BackendChoice", "Launched", "LogRead", "RunManager"]

#: Seconds between SIGTERM and SIGKILL when a run is cancelled from the app.
GRACE_S = 5.0
#: How long a launch waits for the window's monitor to open before it runs without one.
MONITOR_WAIT_S = 20.0


class LiveDevices(Protocol):
    @property
    def devices(self) -> Mapping[str, object]: ...

    @property
    def lost_at(self) -> Mapping[str, float]: ...


class RunContext(Protocol):
    """What the manager reads of the window's state (``AppContext`` has it)."""

    @property
    def db_path(self) -> Path: ...

    @property
    def config(self) -> Config: ...

    @property
    def live(self) -> LiveDevices: ...

    def pricing(self) -> Pricing: ...


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
        self, ctx: RunContext, bridge: MonitorBridge | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.bridge = bridge
        self.tasks = TaskRunner(4, self)
        self.session = self._new_session()
        #: This window's runs, as their latest events say (GUI thread).
        self.runs: dict[int, RunInfo] = {}
        self._settling: set[int] = set()
        #: Runs a launch queued whose end (priced, or never started) has not been seen yet:
        #: their first event may reach this thread after ``launched`` does.
        self._expected: set[int] = set()
        self._ended: set[int] = set()
        self.choices: list[BackendChoice] | None = None
        self._launches = itertools.count(1)
        self._received.connect(self._deliver)

    def _new_session(self) -> RunSession:
        holder: list[RunSession] = []

        def forward(event: RunEvent) -> None:  # on the services' threads
            with contextlib.suppress(RuntimeError):  # the manager was deleted with its window
                self._received.emit((holder[0], event))

        session = RunSession(
            self.ctx.db_path,
            config=lambda: self.ctx.config,
            monitor=self._monitor,
            gpu_count=self.gpu_count,
            listener=forward,
            options=SessionOptions(grace_s=GRACE_S),
        )
        holder.append(session)
        return session

    def _monitor(self) -> Monitor | None:
        """The window's monitor once it has opened; None when sampling is not running (or it
        never opens). On a worker thread."""
        bridge = self.bridge
        deadline = time.monotonic() + MONITOR_WAIT_S
        while bridge is not None and bridge.running and time.monotonic() < deadline:
            found = bridge.monitor
            if found is not None:
                return found
            time.sleep(0.05)
        return None

    # -- GUI-thread queries --------------------------------------------------------------------
    def active(self) -> list[RunInfo]:
        """This window's runs that have not finished."""
        return [info for info in self.runs.values() if not info.state.finished]

    def settled(self) -> bool:
        """No run of this window is going or waiting for its cost."""
        return not self.active() and not self._settling and not self._expected - self._ended

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
        old = self.session
        self.session = self._new_session()
        self.runs.clear()
        self._settling.clear()
        self._expected.clear()
        self._ended.clear()
        self.tasks.submit("retire", old.close)

    # -- launching -----------------------------------------------------------------------------
    def probe_backends(self) -> None:
        """Load every backend once, off the GUI thread; ``backends_ready`` says how it went."""
        if self.tasks.busy("probe"):
            return

        config = self.ctx.config

        def job() -> list[BackendChoice]:
            return backend_choices(config)

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
        session = self.session
        pricing = self.ctx.pricing()

        def job() -> Launched:
            try:
                service = session.service(request.backend, request.profile, pricing)
            except CostmeterError as exc:
                text = describe(exc)
                session.record_refused(request.specs, request.backend, text, sweep=request.sweep)
                raise CostmeterError(f"The run could not start: {text}") from None
            ids = session.submit(
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

        def done(launched: Launched) -> None:
            if session is self.session:
                self._expected.update(launched.ids)
            self.launched.emit(launched)

        self.tasks.submit(f"launch-{next(self._launches)}", job, done, failed)

    # -- events --------------------------------------------------------------------------------
    @Slot(object)
    def _deliver(self, payload: tuple[RunSession, RunEvent]) -> None:
        session, event = payload
        if session is not self.session:  # from before sampling restarted
            return
        info = event.run
        self.runs[info.key] = info
        if event.kind == EventKind.FINISHED and info.started is not None:
            self._settling.add(info.key)
        elif event.kind == EventKind.FINISHED or event.kind == EventKind.COSTED:
            self._settling.discard(info.key)
            self._ended.add(info.key)
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
        session = self.session
        self.tasks.submit("live", lambda: session.live(ids), done, failed)

    def read_log(
        self,
        run_id: int,
        offset: int,
        done: Callable[[LogRead], None],
        failed: Callable[[str], None],
    ) -> None:
        """The run's output from ``offset`` (from 0: at most the tail of what is there)."""
        session = self.session

        def job() -> LogRead:
            return read_log(session.log_reader(run_id), offset)

        self.tasks.submit("log", job, done, failed)

    def cancel(self, run_id: int, done: Callable[[bool], None]) -> None:
        """Cancel one of this window's runs (True: asked to stop; False: it had finished)."""
        session = self.session

        def failed(text: str) -> None:
            self.message.emit(f"Run {run_id} could not be cancelled: {text}", "error")

        self.tasks.submit(f"cancel-{run_id}", lambda: session.cancel(run_id), done, failed)

    def cancel_all(self, reason: str = "Cancelled when the desktop app closed.") -> None:
        session = self.session
        self.tasks.submit("cancel-all", lambda: session.cancel_all(reason))

    def shutdown(self, timeout: float = 10.0) -> None:
        """On window close: runs still going are left alone (their rows say so) and services
        with nothing left to do are closed. Waits at most ``timeout`` seconds."""
        left = [info.key for info in self.active()]
        self.tasks.shutdown(wait=False)
        thread = threading.Thread(
            target=self.session.close, args=(left,), name="costmeter-runs-close", daemon=True
        )
        thread.start()
        thread.join(timeout)
