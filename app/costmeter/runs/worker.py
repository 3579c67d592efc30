"""One run's life on its own thread: submit, poll, stream output, enforce limits, cancel.

The queue owns the bookkeeping (slots, GPUs, events); ``run_one`` drives the backend and tells
the queue what it saw through the ``QueueSide`` methods.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from costmeter.plugin_api import Backend, Placement, RunHandle, RunState, RunStatus
from costmeter.runs.events import Check, EventKind, RunInfo
from costmeter.runs.messages import describe_failure, format_seconds

log = logging.getLogger(__name__)

#: The first polls of a new run come this soon, so a short run's end is seen at once; the
#: interval then grows with the run's age (a tenth of it) up to the queue's ``poll_s``.
MIN_POLL_S = 0.002
#: Consecutive failed ``status`` calls after which a run counts as lost.
MAX_STATUS_FAILURES = 5


@dataclass
class RunEntry:
    """The queue's mutable record of one run (``info`` is replaced, never mutated)."""

    info: RunInfo
    env: dict[str, str]
    wake: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str | None = None
    cancel_sent: bool = False
    log_offset: int = 0
    lost_message: str = "Costmeter lost track of the run: its backend stopped answering."

    def request_cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.wake.set()


class QueueSide(Protocol):
    backend: Backend
    backend_name: str
    poll_s: float
    grace_s: float
    stream_logs: bool
    check: Check | None
    clock: Callable[[], float]

    @property
    def places_gpus(self) -> bool: ...

    def update(self, entry: RunEntry, **changes: object) -> RunInfo: ...

    def apply(self, entry: RunEntry, status: RunStatus | None, kind: EventKind) -> None: ...

    def emit(self, kind: EventKind, info: RunInfo, text: str = "") -> None: ...

    def finish(self, entry: RunEntry, state: RunState, message: str, **kw: object) -> None: ...

    def finish_from_status(self, entry: RunEntry, status: RunStatus) -> None: ...


def run_one(q: QueueSide, entry: RunEntry, gpus: tuple[int, ...]) -> None:
    """The body of a run's thread; never raises (a bug here must not keep the slot taken)."""
    try:
        _run(q, entry, gpus)
    except Exception as exc:
        log.exception("Run %s failed inside the queue.", entry.info.key)
        if not entry.info.state.finished:
            q.finish(entry, RunState.LOST, f"Costmeter lost track of the run ({exc}).")


def _run(q: QueueSide, entry: RunEntry, gpus: tuple[int, ...]) -> None:
    info = entry.info
    env = dict(entry.env)
    if not q.places_gpus and gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
    if entry.cancel_reason is not None:
        q.finish(entry, RunState.CANCELLED, entry.cancel_reason)
        return
    submitted = q.clock()
    try:
        handle = q.backend.submit(info.spec, Placement(gpus), env, info.run_dir)
    except Exception as exc:
        q.finish(entry, RunState.FAILED, describe_failure(exc, q.backend_name, "start the run"))
        return
    q.update(entry, handle=handle, submitted_at=submitted)
    # A first look a moment later rather than at once: a status call can be costly (the local
    # backend walks /proc for the run's children) and a very short run has ended by then.
    entry.wake.wait(MIN_POLL_S)
    status = _status(q, entry, handle, failures=0)
    q.apply(entry, status, EventKind.STARTED)
    failures = 0
    while status is None or not status.state.finished:
        if status is not None:
            _enforce_limits(q, entry, handle)
        _read_output(q, entry, handle)
        age = q.clock() - submitted
        entry.wake.wait(min(q.poll_s, max(MIN_POLL_S, age / 10)))
        entry.wake.clear()
        status = _status(q, entry, handle, failures)
        if status is None:
            failures += 1
            if failures >= MAX_STATUS_FAILURES:
                q.finish(entry, RunState.LOST, entry.lost_message)
                return
            continue
        failures = 0
        q.apply(entry, status, EventKind.UPDATED)
    _read_output(q, entry, handle, final=True)
    q.finish_from_status(entry, status)


def _status(q: QueueSide, entry: RunEntry, handle: RunHandle, failures: int) -> RunStatus | None:
    try:
        return q.backend.status(handle)
    except Exception as exc:
        if failures + 1 >= MAX_STATUS_FAILURES:
            entry.lost_message = describe_failure(exc, q.backend_name, "report the run's status")
        log.warning("Status of run %s failed: %s", entry.info.key, exc)
        return None


def _enforce_limits(q: QueueSide, entry: RunEntry, handle: RunHandle) -> None:
    """Time limit and the queue's check (the budget); cancel once when either says so."""
    info = entry.info
    if entry.cancel_reason is None:
        limit = info.spec.time_limit_s
        begun = info.started if info.started is not None else info.submitted_at
        reason: str | None = None
        if limit is not None and begun is not None and q.clock() - begun >= limit:
            reason = f"Stopped: it ran past its time limit of {format_seconds(limit)}."
        elif q.check is not None:
            try:
                reason = q.check(info)
            except Exception:
                log.exception("The run check failed for run %s.", info.key)
        if reason is not None:
            entry.request_cancel(reason)
    if entry.cancel_reason is not None and not entry.cancel_sent:
        entry.cancel_sent = True
        # cancel may wait out its grace period: polling goes on meanwhile.
        threading.Thread(
            target=_send_cancel, args=(q, entry, handle), daemon=True, name="costmeter-cancel"
        ).start()


def _send_cancel(q: QueueSide, entry: RunEntry, handle: RunHandle) -> None:
    try:
        q.backend.cancel(handle, q.grace_s)
    except Exception as exc:
        msg = describe_failure(exc, q.backend_name, "cancel the run")
        log.warning("%s", msg)
        entry.cancel_reason = f"{entry.cancel_reason} {msg}"


def _read_output(q: QueueSide, entry: RunEntry, handle: RunHandle, *, final: bool = False) -> None:
    if not q.stream_logs:
        return
    for _ in range(100_000 if final else 4):
        try:
            chunk = q.backend.read_logs(handle, entry.log_offset)
        except Exception as exc:
            log.warning("Reading the output of run %s failed: %s", entry.info.key, exc)
            return
        entry.log_offset = chunk.next_offset
        if chunk.text:
            q.emit(EventKind.OUTPUT, entry.info, chunk.text)
        if chunk.complete or not chunk.text:
            return
