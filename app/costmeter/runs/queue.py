"""``RunQueue``: up to K runs at once through one backend, GPUs placed, limits enforced.

Each started run gets a thread that submits it, polls ``backend.status`` (quickly at first, then
every ``poll_s``), streams its output if asked, enforces its time limit and whatever a ``check``
callback says (the budget), and cancels it when told. What happens is reported as ``RunEvent``s
to subscribers, called on the queue's threads: a GUI forwards them to its own thread, the run
service writes them to the database. Nothing here imports Qt or the store.

Placement: unless the backend has ``Capability.PLACES_GPUS``, the queue picks free GPUs for a
run that asks for some (``spec.gpus`` > 0) from a ``GpuPool`` and sets ``CUDA_VISIBLE_DEVICES``.
A run that asks for none is not placed and its environment is left as it is: Costmeter then
attributes to it whatever GPUs its processes show up on. Runs start in the order queued: a run
waiting for GPUs holds back the ones behind it.

Stop on failure: when a run fails and ``stop_on_failure`` is set, runs not yet started are
cancelled; runs already going are left to finish.

Shared GPUs: pass ``pool`` to place runs on a machine's ``GpuPool`` that other queues use too
(one per backend in the desktop app). The queue then starts its waiting runs when another queue
frees GPUs, not only when one of its own runs ends.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from costmeter.plugin_api import Backend, Capability, RunSpec, RunState, RunStatus
from costmeter.runs.data_parallel import gpus_problem as data_parallel_gpus_problem
from costmeter.runs.events import Check, EventKind, Listener, RunEvent, RunInfo
from costmeter.runs.messages import describe_exit
from costmeter.runs.private import make_private_dir
from costmeter.runs.scheduler import GpuPool, PlacementError, check_request
from costmeter.runs.worker import RunEntry, run_one

log = logging.getLogger(__name__)


class RunQueue:
    def __init__(
        self,
        backend: Backend,
        *,
        max_parallel: int = 1,
        gpu_count: int = 0,
        per_gpu: int = 1,
        stop_on_failure: bool = False,
        poll_s: float = 0.25,
        grace_s: float = 10.0,
        stream_logs: bool = False,
        check: Check | None = None,
        clock: Callable[[], float] = time.time,
        pool: GpuPool | None = None,
    ) -> None:
        if max_parallel < 1:
            raise PlacementError(f"At most {max_parallel} runs at once is not possible: use 1+.")
        self.backend = backend
        meta = backend.metadata
        # A GuardedBackend carries the name it is registered under (what users type).
        self.backend_name = str(getattr(backend, "name", "") or meta.name)
        self.capabilities = meta.capabilities
        self.max_parallel = max_parallel
        #: GPUs of this machine; ``gpu_count`` and ``per_gpu`` are the pool's when it is shared.
        self.pool = pool if pool is not None else GpuPool(gpu_count, per_gpu)
        self.pool.add_waker(self._dispatch)
        self.stop_on_failure = stop_on_failure
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.stream_logs = stream_logs and Capability.LOGS in self.capabilities
        self.check = check
        self.clock = clock
        self._cond = threading.Condition()
        self._pending: deque[RunEntry] = deque()
        self._entries: dict[int, RunEntry] = {}
        self._running = 0
        self._unfinished = 0
        #: Why queued runs no longer start (a failure with stop_on_failure), or None.
        self._stopped: str | None = None
        self._closed = False
        self._listeners: list[Listener] = []
        self._keys = itertools.count(1)
        self.max_parallel_seen = 0

    @property
    def places_gpus(self) -> bool:
        """True when the backend picks GPUs itself (and reports them in ``RunStatus``)."""
        return Capability.PLACES_GPUS in self.capabilities

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event from now on (on queue threads); returns an undo."""
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, kind: EventKind, info: RunInfo, text: str = "") -> None:
        with self._cond:
            listeners = list(self._listeners)
        event = RunEvent(kind, info, text)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("A run event listener failed on %s.", kind)

    # -- submitting ----------------------------------------------------------------------------

    def submit(
        self,
        spec: RunSpec,
        *,
        key: int | None = None,
        run_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> RunInfo:
        """Queue a run. A run that can never start here (GPUs it cannot have) is reported as
        failed with a message, as any other failure is; this never raises for the run itself."""
        if run_dir is None:
            run_dir = Path(tempfile.mkdtemp(prefix="costmeter-run-"))  # 0700 already
        make_private_dir(run_dir)  # a run's output may hold secrets
        with self._cond:
            if self._closed:
                raise RuntimeError("The run queue is closed.")
            k = next(self._keys) if key is None else key
            info = RunInfo(
                key=k,
                name=name or spec.name or f"run-{k}",
                spec=spec,
                backend=self.backend_name,
                state=RunState.QUEUED,
                run_dir=run_dir,
                queued_at=self.clock(),
            )
            entry = RunEntry(info, dict(env or {}))
            self._entries[k] = entry
            self._unfinished += 1
        self.emit(EventKind.QUEUED, info)
        problem = self._refusal(spec)
        if problem is not None:
            self.finish(entry, RunState.FAILED, problem, slot=False)
            return self.info(k)
        if self._stopped is not None:
            self.finish(entry, RunState.CANCELLED, self._stopped, slot=False)
            return self.info(k)
        with self._cond:
            self._pending.append(entry)
        self._dispatch()
        return self.info(k)

    def _refusal(self, spec: RunSpec) -> str | None:
        if spec.gpus > 0 and Capability.GPUS not in self.capabilities:
            return (
                f"The backend '{self.backend_name}' cannot give runs GPUs, but this run asks for "
                f"{spec.gpus}. Choose another backend with --backend, or leave out --gpus."
            )
        if spec.nproc_per_node > 1:
            if Capability.DATA_PARALLEL not in self.capabilities:
                return (
                    f"The backend '{self.backend_name}' cannot start data-parallel runs, but this "
                    f"run asks for {spec.nproc_per_node} processes per node. Choose a backend "
                    "that can (local) with --backend, or leave out --nproc-per-node."
                )
            problem = data_parallel_gpus_problem(spec.nproc_per_node, spec.gpus)
            if problem is not None:
                return problem
        if self.places_gpus:
            return None
        try:
            check_request(spec.gpus, self.pool.gpu_count, per_gpu=self.pool.per_gpu)
        except PlacementError as err:
            return str(err)
        return None

    def _dispatch(self) -> None:
        """Start queued runs while there are free slots and GPUs (in queue order)."""
        to_start: list[tuple[RunEntry, tuple[int, ...]]] = []
        with self._cond:
            while self._pending and self._running < self.max_parallel and self._stopped is None:
                entry = self._pending[0]
                if self.places_gpus:
                    gpus: tuple[int, ...] | None = ()
                else:
                    gpus = self.pool.try_acquire(entry.info.spec.gpus)
                if gpus is None:
                    break
                self._pending.popleft()
                self._running += 1
                self.max_parallel_seen = max(self.max_parallel_seen, self._running)
                entry.info = replace(entry.info, state=RunState.STARTING, gpu_indices=gpus)
                to_start.append((entry, gpus))
        for entry, gpus in to_start:
            thread = threading.Thread(
                target=run_one, args=(self, entry, gpus), name=f"costmeter-run-{entry.info.key}"
            )
            thread.daemon = True
            thread.start()

    # -- state changes (called by the runs' threads, see worker.py) ---------------------------

    def update(self, entry: RunEntry, **changes: object) -> RunInfo:
        with self._cond:
            entry.info = replace(entry.info, **changes)  # type: ignore[arg-type]
            return entry.info

    def apply(self, entry: RunEntry, status: RunStatus | None, kind: EventKind) -> None:
        if status is None:
            return
        old = entry.info
        changes: dict[str, object] = {
            "state": status.state if not status.state.finished else old.state,
            "pids": status.pids or old.pids,
            "node": status.node,
            "started": status.started if status.started is not None else old.started,
            **_job_changes(status),
        }
        if self.places_gpus and status.gpu_indices:
            changes["gpu_indices"] = tuple(status.gpu_indices)
        if status.state == RunState.STARTING and old.state == RunState.STARTING:
            changes["state"] = RunState.STARTING
        new = self.update(entry, **changes)
        if kind == EventKind.STARTED or (
            (new.state, new.pids, new.gpu_indices, new.node)
            != (old.state, old.pids, old.gpu_indices, old.node)
        ):
            self.emit(kind, new)

    def finish_from_status(self, entry: RunEntry, status: RunStatus) -> None:
        job = _job_changes(status)
        if status.node is not None and entry.info.node is None:
            job["node"] = status.node  # a job that ended before its first status was seen
        if job:
            self.update(entry, **job)
        state = status.state
        message = status.message
        if entry.cancel_reason is not None:
            state, message = RunState.CANCELLED, entry.cancel_reason
        elif state == RunState.FAILED and not message:
            message = describe_exit(status.exit_code)
        self.finish(
            entry,
            state,
            message,
            exit_code=status.exit_code,
            ended=status.ended,
            started_at=status.started,
        )

    def finish(
        self,
        entry: RunEntry,
        state: RunState,
        message: str,
        *,
        slot: bool = True,
        exit_code: int | None = None,
        ended: float | None = None,
        started_at: float | None = None,
    ) -> None:
        now = self.clock()
        with self._cond:
            old = entry.info
            entry.info = replace(
                old,
                state=state,
                message=message,
                exit_code=exit_code,
                started=started_at if started_at is not None else old.started,
                ended=ended if ended is not None else now,
                detected_at=now,
            )
            info = entry.info
            freed = slot and not self.places_gpus and bool(old.gpu_indices)
            if slot:
                self._running -= 1
                if freed:
                    self.pool.release(old.gpu_indices)
            self._unfinished -= 1
            stop = self.stop_on_failure and state in (RunState.FAILED, RunState.LOST)
            reason = f"Not started: run '{info.name}' failed, and the sweep stops on failure."
            if stop and self._stopped is None:
                self._stopped = reason  # before the freed slot is handed on
        # The freed slot and GPUs go to the next run before listeners hear of this end (the run
        # service writes it to the database first): their work is not the next run's wait.
        self._dispatch()
        if freed:
            self.pool.wake_others(self._dispatch)
        self.emit(EventKind.FINISHED, info)
        if stop:
            self._stop_pending(reason)
        with self._cond:
            self._cond.notify_all()

    def _stop_pending(self, reason: str, *, for_good: bool = True) -> None:
        with self._cond:
            if for_good and self._stopped is None:
                self._stopped = reason
            dropped = list(self._pending)
            self._pending.clear()
        for entry in dropped:
            self.finish(entry, RunState.CANCELLED, reason, slot=False)

    # -- control -------------------------------------------------------------------------------

    def cancel(self, key: int, reason: str = "Cancelled by the user.") -> bool:
        """Cancel one run (queued: dropped; running: stopped). False if it already finished."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None or entry.info.state.finished:
                return False
            queued = entry in self._pending
            if queued:
                self._pending.remove(entry)
        if queued:
            self.finish(entry, RunState.CANCELLED, reason, slot=False)
        else:
            entry.request_cancel(reason)
        return True

    def cancel_all(self, reason: str = "Cancelled by the user.") -> None:
        """Drop every queued run and stop every running one; later submits still run."""
        self._stop_pending(reason, for_good=False)
        with self._cond:
            running = [e for e in self._entries.values() if not e.info.state.finished]
        for entry in running:
            entry.request_cancel(reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every run queued so far has finished; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._unfinished > 0:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.5 if left is None else min(left, 0.5))
            return True

    def close(self) -> None:
        """Refuse new runs. Runs already queued go on (cancel them first to stop them)."""
        with self._cond:
            self._closed = True

    def info(self, key: int) -> RunInfo:
        with self._cond:
            return self._entries[key].info

    def runs(self) -> list[RunInfo]:
        with self._cond:
            return [e.info for e in self._entries.values()]


def _job_changes(status: RunStatus) -> dict[str, object]:
    """The scheduler's job id and allocated GPUs, when the status carries them (API 1.2)."""
    out: dict[str, object] = {}
    job = getattr(status, "job", None)
    if job is not None:
        out["job"] = str(job)
    gpus = getattr(status, "allocated_gpus", None)
    if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 0:
        out["allocated_gpus"] = gpus
    return out
