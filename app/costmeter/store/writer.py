"""The recorder's writer: a queue in front of one thread that owns the SQLite connection.

``submit`` (a ``Tick``) and ``submit_batch`` (a ``TickBatch``: many ticks as columns, stored
without ``Tick`` objects) only append to a queue. The thread commits everything queued in one
transaction at most every ``flush_interval`` seconds (sooner when the batch is large), updates
the rollups for the buckets it touched in the same transaction, and applies retention now and
then. A failed write keeps its ticks in memory and is retried (less often while it keeps
failing); each distinct problem is reported once. The queue is bounded: past ``max_pending``
the oldest ticks are dropped and counted, and ``stop`` says how many samples were lost and why.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from costmeter.core.clock import Clock
from costmeter.core.errors import StoreError
from costmeter.core.model import DeviceInfo, HostInfo, Tick
from costmeter.core.tick_batch import TickBatch
from costmeter.store.bulk_rows import (
    add_tick_batch,
    add_ticks_bulk,
    fresh_host_minutes_bulk,
    fresh_minutes_bulk,
    numpy_module,
)
from costmeter.store.database import DEFAULT_BUSY_TIMEOUT, open_database
from costmeter.store.errors import (
    StoreBusyError,
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
    classify,
    is_busy,
    path_problem,
)
from costmeter.store.holders import describe_holders
from costmeter.store.lock import RecorderLock
from costmeter.store.retention import Cutoffs, RetentionPolicy, apply_retention, read_cutoffs
from costmeter.store.rollup import (
    DEVICE_MINUTE_INSERT,
    HOST_MINUTE_INSERT,
    update_rollups,
    write_fresh_device_minutes,
)
from costmeter.store.rows import Batch, Registry, add_tick, write_batch
from costmeter.store.share_rollup import stale_minutes, write_share_minutes

log = logging.getLogger(__name__)

#: How often (seconds of the writer's clock) retention runs.
RETENTION_INTERVAL = 600.0

#: Ticks kept in memory while the database cannot be written, before the oldest are dropped.
#: One tick is one host's sample (all its GPUs and processes); 3,600 is an hour of this
#: machine at 1 s, or several minutes of it and a dozen remote hosts.
DEFAULT_MAX_PENDING = 3_600

#: Retries after failed writes back off up to this many seconds (``stop`` wakes the thread).
MAX_RETRY_DELAY = 30.0


@dataclass(frozen=True, slots=True)
class WriterStats:
    ticks_written: int
    rows_written: int
    flushes: int
    failed_flushes: int
    last_flush_s: float
    pending: int
    #: Ticks dropped from the full queue (oldest first) while writes were failing.
    dropped: int = 0
    #: Ticks that never reached the database: dropped ones, plus those pending at ``stop``.
    lost: int = 0


@dataclass(frozen=True, slots=True)
class _Register:
    host: HostInfo
    devices: tuple[DeviceInfo, ...]


_Item = Tick | TickBatch | _Register
#: An item and the caller's clock time when it was queued: a registration is recorded as of
#: then, and retention runs as of the first item queued at or after its time. With a simulated
#: clock the writer thread's own reading would depend on how far ahead the producer had run.
_Queued = tuple[_Item, float]


def _retention_due(entries: Sequence[_Queued], due: float) -> float | None:
    """The queue time of the first of ``entries`` queued at or after ``due``, or None."""
    return next((at for _, at in entries if at >= due), None)


def _weight(item: _Item) -> int:
    """How many ticks an item carries (a registration: none worth counting, so one)."""
    return len(item) if isinstance(item, TickBatch) else 1


class Writer:
    """Batched, single-threaded writer; the only process writing a database (see ``start``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock,
        flush_interval: float = 1.0,
        retention: RetentionPolicy | None = None,
        on_error: Callable[[str], None] | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        batch_ticks: int = 2_000,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        command: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.flush_interval = flush_interval
        self.retention = retention if retention is not None else RetentionPolicy()
        self.on_error = on_error
        self.max_pending = max_pending
        self.batch_ticks = batch_ticks
        self.busy_timeout = busy_timeout
        #: A message for the user from opening the file (a damaged file was moved aside), or None.
        self.notice: str | None = None
        self._lock = RecorderLock(self.path, command=command)
        self._cond = threading.Condition()
        #: Items with the caller's clock time when each was queued (see ``_Queued``).
        self._queue: deque[_Queued] = deque()
        self._queued_ticks = 0  # ticks in the queue (a TickBatch counts its length)
        self._inflight: list[_Queued] = []  # taken from the queue, not yet committed
        self._inflight_ticks = 0
        self._submitted = 0
        self._committed = 0
        self._flush_requested = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._reported: set[str] = set()
        self._ticks_written = 0
        self._rows_written = 0
        self._flushes = 0
        self._failed = 0
        self._failing = 0  # failed writes in a row
        self._last_flush_s = 0.0
        self._dropped = 0
        self._dropped_since_ok = 0
        self._lost = 0
        #: The cause of the last failed write (kept after writes succeed again), or None.
        self.last_error: StoreError | None = None
        self._last_detail = ""  # SQLite's own words for the last failure
        #: A sentence saying how many samples were lost and why, set by ``stop`` (or None).
        self.loss: str | None = None

    # -- caller side -------------------------------------------------------------------------

    def start(self) -> None:
        """Take the recorder lock, open (create, migrate) the database, start the thread.

        Raises a ``StoreError`` naming the cause when the database cannot be recorded into:
        a folder, read-only, a full disk, locked, or another recorder already at it.
        """
        if self._thread is not None:
            return
        found = path_problem(self.path, create=True, make_parent=True)
        if found is not None:  # before the lock file is made beside it
            raise found
        self._lock.acquire()
        try:
            self._conn, self.notice = open_database(
                self.path, busy_timeout=self.busy_timeout, replace_corrupt=True, writing=True
            )
        except BaseException:
            self._lock.release()
            raise
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="costmeter-writer", daemon=True)
        self._thread.start()

    def register(self, host: HostInfo, devices: Sequence[DeviceInfo]) -> None:
        """Record a host and its GPUs (again whenever they change); never blocks."""
        self._put(_Register(host, tuple(devices)), wait=False)

    def submit(self, tick: Tick, *, wait: bool = False) -> None:
        """Queue a tick. With ``wait=True`` block while more than ``max_pending`` are pending."""
        self._put(tick, wait=wait)

    def submit_batch(self, batch: TickBatch, *, wait: bool = False) -> None:
        """Queue a ``TickBatch`` (many ticks as columns: written without ``Tick`` objects).
        Its ticks count one by one against ``max_pending``; with ``wait=True`` block while
        they would not fit (a batch larger than ``max_pending`` waits for an empty queue)."""
        self._put(batch, wait=wait)

    def _put(self, item: _Item, *, wait: bool) -> None:
        weight = _weight(item)
        with self._cond:
            if wait:
                while (
                    self._pending()
                    and self._pending() + weight > self.max_pending
                    and self._alive()
                ):
                    self._cond.wait(0.5)
            self._queue.append((item, self.clock.now()))
            self._queued_ticks += weight
            self._submitted += 1
            first_drop = False
            while self._pending() > self.max_pending and self._drop_oldest_tick():
                first_drop = first_drop or self._dropped_since_ok == 1
            n = len(self._queue)
            if n == 1 or self._queued_ticks >= self.batch_ticks:
                self._cond.notify_all()
        if first_drop:
            self._report(
                "dropped",
                f"More than {self.max_pending} samples are waiting to be written to "
                f"{self.path}; the oldest are being dropped to keep memory bounded.",
            )

    def _drop_oldest_tick(self) -> bool:
        """Forget the oldest queued tick (registrations stay: later ticks need them).

        False when there is none to drop.
        """
        for i, (queued, _) in enumerate(self._queue):
            if isinstance(queued, Tick | TickBatch):
                del self._queue[i]
                self._queued_ticks -= _weight(queued)
                self._dropped += _weight(queued)
                self._dropped_since_ok += 1
                self._committed += 1  # accounted for: flush() must not wait for it
                return True
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything submitted so far is committed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if not self._alive():
                if self._pending():
                    raise StoreError("The writer is not running, so nothing can be flushed.")
                return True
            target = self._submitted
            while self._committed < target and self._alive():
                self._flush_requested = True
                self._cond.notify_all()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.2 if left is None else min(left, 0.2))
            return self._committed >= target

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, stop the thread, close the connection and release the lock.

        The thread writes everything still queued, but gives up at the first failed write:
        a full or read-only disk does not hold the recorder up. What could not be written is
        counted in ``stats.lost`` and described in ``loss`` (also sent to ``on_error``).
        """
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread.join(timeout)
        self._thread = None
        with self._cond:
            unwritten = sum(
                _weight(i)
                for i, _ in (*self._inflight, *self._queue)
                if not isinstance(i, _Register)
            )
            self._lost = self._dropped + unwritten
            lost = self._lost
        if lost:
            self.loss = self._loss_sentence(lost, unwritten)
            self._report("unwritten", self.loss)
        self._lock.release()

    def _loss_sentence(self, lost: int, unwritten: int) -> str:
        err = self.last_error
        cause = _short_cause(err, self._last_detail) if err is not None else "not written"
        detail = []
        if self._dropped:
            detail.append(f"{self._dropped} were dropped from memory while waiting")
        if unwritten:
            detail.append(f"{unwritten} were still waiting when the recorder stopped")
        return (
            f"{lost} sample{'s' if lost != 1 else ''} could not be written to {self.path}: "
            f"{cause}. {' and '.join(detail).capitalize()}; they are lost."
        )

    @property
    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                ticks_written=self._ticks_written,
                rows_written=self._rows_written,
                flushes=self._flushes,
                failed_flushes=self._failed,
                last_flush_s=self._last_flush_s,
                pending=self._pending(),
                dropped=self._dropped,
                lost=max(self._lost, self._dropped),
            )

    def _pending(self) -> int:
        """Ticks (and registrations) queued or being written."""
        return self._queued_ticks + self._inflight_ticks

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        numpy_module()  # imported here, once, rather than while the first batch waits
        last_attempt = time.monotonic()
        next_retention = self._retain(conn)
        cutoffs = read_cutoffs(conn)
        try:
            while True:
                with self._cond:
                    while not self._stopping:
                        waiting = len(self._queue) + len(self._inflight)
                        delay = self._retry_delay()
                        due = time.monotonic() - last_attempt >= delay
                        if waiting and (
                            due or self._flush_requested or self._queued_ticks >= self.batch_ticks
                        ):
                            break
                        left = delay - (time.monotonic() - last_attempt)
                        self._cond.wait(max(0.01, left) if waiting else None)
                    if self._stopping and not self._queue and not self._inflight:
                        break
                    self._flush_requested = False
                    # A write ends at the first item queued at or after retention's time, so
                    # retention always runs on the same rows at the same time: with a
                    # simulated clock the result does not depend on how far ahead the
                    # producer has run.
                    due_at = _retention_due(self._inflight, next_retention)
                    while (
                        due_at is None and self._inflight_ticks < self.batch_ticks and self._queue
                    ):
                        entry = self._queue.popleft()
                        self._inflight.append(entry)
                        weight = _weight(entry[0])
                        self._queued_ticks -= weight
                        self._inflight_ticks += weight
                        if entry[1] >= next_retention:
                            due_at = entry[1]
                    entries = list(self._inflight)
                last_attempt = time.monotonic()
                ok = self._write(conn, entries, cutoffs)
                if not ok and self._stopping:
                    break  # one final try on stop; stop() reports what is left
                if ok and due_at is not None:
                    # as of the last scheduled time the queue has reached (a batch of ticks
                    # may pass several), so ticks queued one by one or in batches prune alike
                    missed = (due_at - next_retention) // RETENTION_INTERVAL
                    next_retention = self._retain(
                        conn, next_retention + missed * RETENTION_INTERVAL
                    )
                    cutoffs = read_cutoffs(conn)
        finally:
            conn.close()
            self._conn = None
            with self._cond:
                self._cond.notify_all()

    def _write(self, conn: sqlite3.Connection, entries: list[_Queued], cutoffs: Cutoffs) -> bool:
        t0 = time.perf_counter()
        items = [item for item, _ in entries]
        batch = Batch()
        ticks = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                reg = Registry(conn)
                run: list[Tick] = []  # consecutive ticks, added in bulk where they can be
                for item, queued_at in (*entries, (None, 0.0)):
                    if isinstance(item, Tick):
                        run.append(item)
                        continue
                    _add_run(batch, reg, run)
                    ticks += len(run)
                    run = []
                    if isinstance(item, TickBatch):
                        if not add_tick_batch(batch, reg, item):
                            for tick in item.ticks():
                                add_tick(batch, reg, tick)
                        ticks += len(item)
                    elif item is not None:
                        # when it was registered, not when this thread got to it
                        reg.register(item.host, item.devices, queued_at)
                # Each device's newest stored sample before this batch (primary key look-ups).
                last_stored = {
                    did: conn.execute(
                        "SELECT coalesce(max(ts), -1) FROM device_samples WHERE device_id = ?",
                        (did,),
                    ).fetchone()[0]
                    for did in batch.device_spans
                }
                host_last = _newest_host_samples(conn, batch)
                write_batch(conn, batch)
                write_share_minutes(
                    conn,
                    batch.share_sums,
                    stale_minutes(
                        batch.ms_spans(batch.device_spans), last_stored, batch.share_dups
                    ),
                    raw_cutoff=cutoffs.raw,
                )
                done = _write_fresh_minutes(conn, batch, last_stored, cutoffs.raw)
                update_rollups(
                    conn,
                    "device",
                    batch.ms_spans(batch.device_spans),
                    raw_cutoff=cutoffs.raw,
                    minute_cutoff=cutoffs.minute,
                    done_minutes=done,
                )
                cpu_counts = reg.cpu_counts()
                host_done: set[tuple[int, int]] = set()
                if host_last is not None:
                    host_minutes, host_done = fresh_host_minutes_bulk(
                        batch.host_columns, host_last, cpu_counts, cutoffs.raw
                    )
                    conn.executemany(HOST_MINUTE_INSERT, host_minutes)
                update_rollups(
                    conn,
                    "host",
                    batch.ms_spans(batch.host_spans),
                    raw_cutoff=cutoffs.raw,
                    minute_cutoff=cutoffs.minute,
                    cpu_counts=cpu_counts,
                    done_minutes=host_done,
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            holder = describe_holders(self.path) if is_busy(err) else ""
            cause = classify(err, self.path, doing="written", holder=holder)
            with self._cond:
                self._failed += 1
                self._failing += 1
                self.last_error = cause
                self._last_detail = str(err)
                pending = self._pending()
            self._report_failure(cause, pending)
            return False
        elapsed = time.perf_counter() - t0
        with self._cond:
            del self._inflight[: len(items)]
            self._inflight_ticks -= sum(map(_weight, items))
            self._committed += len(items)
            self._ticks_written += ticks
            self._rows_written += batch.row_count
            self._flushes += 1
            self._last_flush_s = elapsed
            self._failing = 0
            self._dropped_since_ok = 0
            self._reported.clear()
            self._cond.notify_all()
        return True

    def _retain(self, conn: sqlite3.Connection, now: float | None = None) -> float:
        """Apply retention as of ``now`` (default: the clock's time); return when to do it
        next (of the writer's clock)."""
        if now is None:
            now = self.clock.now()
        try:
            apply_retention(conn, self.retention, now)
        except sqlite3.Error as err:
            self._report(
                "retention",
                f"Old history in {self.path} could not be pruned ({err}); "
                "Costmeter will try again later.",
            )
        return now + RETENTION_INTERVAL

    def _retry_delay(self) -> float:
        """``flush_interval``, doubled for each failed write in a row up to ``MAX_RETRY_DELAY``."""
        if not self._failing:
            return self.flush_interval
        return min(self.flush_interval * 2.0 ** min(self._failing, 16), MAX_RETRY_DELAY)

    def _report_failure(self, cause: StoreError, pending: int) -> None:
        waiting = f"{pending} samples are waiting in memory"
        if isinstance(cause, StoreBusyError):
            key = "locked"
            who = f" ({cause.holder})" if cause.holder else ""
            msg = (
                f"The database {self.path} is locked by another program{who}, so {waiting}. "
                "They will be written as soon as it is free."
            )
        elif isinstance(cause, StoreFullError):
            key = "full"
            msg = f"{cause} Meanwhile {waiting}; Costmeter keeps retrying."
        else:
            key = f"{type(cause).__name__}: {cause}"
            msg = f"{cause} Meanwhile {waiting}; Costmeter keeps retrying."
        self._report(key, msg)

    def _report(self, key: str, message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        # Said once: through on_error when there is one (the CLI prints it), else as a warning.
        log.log(logging.INFO if self.on_error is not None else logging.WARNING, "%s", message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("The on_error callback failed.")


def _add_run(batch: Batch, reg: Registry, run: list[Tick]) -> None:
    if run and not add_ticks_bulk(batch, reg, run):
        for tick in run:
            add_tick(batch, reg, tick)


def _newest_host_samples(conn: sqlite3.Connection, batch: Batch) -> dict[int, int] | None:
    """Each host's newest stored sample (ms) before the batch, where its host rows all came
    in bulk (their fresh minutes are then computed from the values in hand), else None."""
    if not batch.host_columns or batch.host_rows:
        return None
    return {
        hid: conn.execute(
            "SELECT coalesce(max(ts), -1) FROM host_samples WHERE host_id = ?", (hid,)
        ).fetchone()[0]
        for hid in batch.host_spans
    }


def _write_fresh_minutes(
    conn: sqlite3.Connection, batch: Batch, last_stored: dict[int, int], raw_cutoff: int
) -> set[tuple[int, int]]:
    """The minute rollups only this batch fills, from the values in hand (see ``rollup``)."""
    columns = batch.device_columns
    if columns and not batch.device_rows:
        rows, done = fresh_minutes_bulk(columns, last_stored, raw_cutoff)
        conn.executemany(DEVICE_MINUTE_INSERT, rows)
        return done
    every = [*chain.from_iterable(c.iter_rows() for c in columns), *batch.device_rows]
    return write_fresh_device_minutes(conn, every, last_stored, raw_cutoff)


def _short_cause(err: StoreError, text: str) -> str:
    """``disk full (database or disk is full)`` and the like, for the line that counts losses."""
    if isinstance(err, StoreFullError):
        return f"disk full ({text})"
    if isinstance(err, StoreReadOnlyError):
        return f"read-only ({text})"
    if isinstance(err, StoreBusyError):
        return f"locked by another program ({text})"
    if isinstance(err, StoreIOError):
        return f"I/O error ({text})"
    return text
