"""The recorder's writer: a queue in front of one thread that owns the SQLite connection.

``submit`` only appends to a queue. The thread commits everything queued in one transaction at
most every ``flush_interval`` seconds (sooner when the batch is large), updates the rollups for
the buckets it touched in the same transaction, and applies retention now and then. A failed
write keeps its ticks in memory and is retried; each distinct problem is reported once.
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
from pathlib import Path

from costmeter.core.clock import Clock
from costmeter.core.errors import StoreError
from costmeter.core.model import DeviceInfo, HostInfo, Tick
from costmeter.store.database import DEFAULT_BUSY_TIMEOUT, open_database
from costmeter.store.lock import RecorderLock
from costmeter.store.retention import Cutoffs, RetentionPolicy, apply_retention, read_cutoffs
from costmeter.store.rollup import update_rollups, write_fresh_device_minutes
from costmeter.store.rows import Batch, Registry, add_tick, write_batch

log = logging.getLogger(__name__)

#: How often (seconds of the writer's clock) retention runs.
RETENTION_INTERVAL = 600.0


@dataclass(frozen=True, slots=True)
class WriterStats:
    ticks_written: int
    rows_written: int
    flushes: int
    failed_flushes: int
    last_flush_s: float
    pending: int


@dataclass(frozen=True, slots=True)
class _Register:
    host: HostInfo
    devices: tuple[DeviceInfo, ...]


_Item = Tick | _Register


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
        max_pending: int = 10_000,
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
        self._queue: deque[_Item] = deque()
        self._inflight: list[_Item] = []  # taken from the queue, not yet committed
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
        self._last_flush_s = 0.0

    # -- caller side -------------------------------------------------------------------------

    def start(self) -> None:
        """Take the recorder lock, open (create, migrate) the database, start the thread."""
        if self._thread is not None:
            return
        self._lock.acquire()
        try:
            self._conn, self.notice = open_database(self.path, busy_timeout=self.busy_timeout)
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

    def _put(self, item: _Item, *, wait: bool) -> None:
        with self._cond:
            if wait:
                while self._pending() > self.max_pending and self._alive():
                    self._cond.wait(0.5)
            self._queue.append(item)
            self._submitted += 1
            n = len(self._queue)
            if n == 1 or n >= self.batch_ticks:
                self._cond.notify_all()

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
        """Flush, stop the thread, close the connection and release the lock."""
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread.join(timeout)
        self._thread = None
        lost = self._pending()
        if lost:
            self._report(
                "unwritten",
                f"{lost} samples could not be written to {self.path} "
                "before the recorder stopped; they are lost.",
            )
        self._lock.release()

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
            )

    def _pending(self) -> int:
        return len(self._queue) + len(self._inflight)

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        last_attempt = time.monotonic()
        next_retention = self._retain(conn)
        cutoffs = read_cutoffs(conn)
        try:
            while True:
                with self._cond:
                    while not self._stopping:
                        waiting = len(self._queue) + len(self._inflight)
                        due = time.monotonic() - last_attempt >= self.flush_interval
                        if waiting and (
                            due or self._flush_requested or len(self._queue) >= self.batch_ticks
                        ):
                            break
                        left = self.flush_interval - (time.monotonic() - last_attempt)
                        self._cond.wait(max(0.01, left) if waiting else None)
                    if self._stopping and not self._queue and not self._inflight:
                        break
                    self._flush_requested = False
                    take = max(0, self.batch_ticks - len(self._inflight))
                    while take and self._queue:
                        self._inflight.append(self._queue.popleft())
                        take -= 1
                    items = list(self._inflight)
                last_attempt = time.monotonic()
                ok = self._write(conn, items, cutoffs)
                if not ok and self._stopping:
                    break  # one final try on stop; stop() reports what is left
                if ok and self.clock.now() >= next_retention:
                    next_retention = self._retain(conn)
                    cutoffs = read_cutoffs(conn)
        finally:
            conn.close()
            self._conn = None
            with self._cond:
                self._cond.notify_all()

    def _write(self, conn: sqlite3.Connection, items: list[_Item], cutoffs: Cutoffs) -> bool:
        t0 = time.perf_counter()
        batch = Batch()
        ticks = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                reg = Registry(conn)
                for item in items:
                    if isinstance(item, _Register):
                        reg.register(item.host, item.devices, self.clock.now())
                    else:
                        add_tick(batch, reg, item)
                        ticks += 1
                # Each device's newest stored sample before this batch (primary key look-ups).
                last_stored = {
                    did: conn.execute(
                        "SELECT coalesce(max(ts), -1) FROM device_samples WHERE device_id = ?",
                        (did,),
                    ).fetchone()[0]
                    for did in batch.device_spans
                }
                write_batch(conn, batch)
                done = write_fresh_device_minutes(
                    conn, batch.device_rows, last_stored, raw_cutoff=cutoffs.raw
                )
                update_rollups(
                    conn,
                    "device",
                    batch.ms_spans(batch.device_spans),
                    raw_cutoff=cutoffs.raw,
                    minute_cutoff=cutoffs.minute,
                    done_minutes=done,
                )
                update_rollups(
                    conn,
                    "host",
                    batch.ms_spans(batch.host_spans),
                    raw_cutoff=cutoffs.raw,
                    minute_cutoff=cutoffs.minute,
                    cpu_counts=reg.cpu_counts(),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            with self._cond:
                self._failed += 1
                pending = self._pending()
            self._report_failure(err, pending)
            return False
        elapsed = time.perf_counter() - t0
        with self._cond:
            del self._inflight[: len(items)]
            self._committed += len(items)
            self._ticks_written += ticks
            self._rows_written += batch.row_count
            self._flushes += 1
            self._last_flush_s = elapsed
            self._reported.clear()
            self._cond.notify_all()
        return True

    def _retain(self, conn: sqlite3.Connection) -> float:
        """Apply retention; return when to do it next (of the writer's clock)."""
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

    def _report_failure(self, err: sqlite3.Error, pending: int) -> None:
        text = str(err)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            key = "locked"
            msg = (
                f"The database {self.path} is locked by another program, so {pending} samples "
                "are waiting in memory. They will be written as soon as it is free."
            )
        elif "full" in lowered:
            key = "full"
            msg = (
                f"The disk holding {self.path} is full, so {pending} samples are waiting in "
                "memory. Free some space; Costmeter keeps retrying."
            )
        else:
            key = text
            msg = (
                f"Writing to {self.path} failed ({text}), so {pending} samples are waiting in "
                "memory. Costmeter keeps retrying."
            )
        self._report(key, msg)

    def _report(self, key: str, message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("%s", message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("The on_error callback failed.")
