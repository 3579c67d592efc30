"""The agent's local buffer: every tick it sampled, kept for ``--buffer-hours`` in SQLite.

One row per tick: its exact timestamp (the key) and its wire JSON, zlib-compressed. Pages are
served straight from those bytes (nothing is decoded on the way out). One writer thread owns the
only writing connection; readers open their own (WAL lets them read while it writes). The file
outlives the agent: a restarted agent serves what it buffered before it stopped.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from costmeter.core.errors import StoreError
from costmeter.core.model import Tick
from costmeter.sampling import wire
from costmeter.store.errors import (
    classify,
    confirm_corrupt,
    is_corruption,
    path_problem,
    reworded,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (ts REAL PRIMARY KEY, payload BLOB NOT NULL) WITHOUT ROWID;
"""
#: Ticks waiting for the writer beyond this are dropped, oldest first: the disk is stuck.
QUEUE_LIMIT = 10_000
#: How often old ticks are deleted.
PRUNE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class BufferedPage:
    """Ticks as stored JSON bytes, in ascending ts order."""

    payloads: tuple[bytes, ...]
    more: bool
    last_ts: float | None


class TickBuffer:
    def __init__(
        self,
        path: Path,
        *,
        retention_s: float,
        now: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = path
        self.retention_s = retention_s
        self.busy_timeout = busy_timeout
        self._now = now
        self._queue: queue.Queue[Tick | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0
        self._count = 0
        #: A sentence for the user when the file had to be replaced, else None.
        self.notice: str | None = None
        try:
            self._db = self._open_or_set_aside()
        except StoreError as err:
            raise reworded(err, f"the agent's buffer {path} could not be opened: {err}") from err
        except (OSError, sqlite3.Error) as err:
            cause = classify(err, path)
            raise reworded(
                cause, f"the agent's buffer {path} could not be opened: {cause}"
            ) from err
        self._prune()
        # Counted once here, then kept up to date: COUNT(*) reads the whole table.
        self._count = int(self._db.execute("SELECT COUNT(*) FROM ticks").fetchone()[0])

    def _open_or_set_aside(self) -> sqlite3.Connection:
        """Open (create) the file; only a confirmed-damaged one is moved aside, never deleted."""
        path = self.path
        found = path_problem(path, create=True, make_parent=True)
        if found is not None:
            raise found
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Samples name processes and their command lines: the buffer is for its owner only
        # (SQLite gives the -wal and -shm files the same mode).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        try:
            return self._open()
        except sqlite3.DatabaseError as err:
            damage = confirm_corrupt(path) if is_corruption(err) else None
            if damage is None:  # locked, read-only, full, I/O: the file is not touched
                raise
        aside = path.with_name(f"{path.name}.damaged-{int(self._now())}")
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):  # an old -wal must not be replayed into the new file
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        self.notice = f"the agent's buffer {path} was damaged ({damage}); moved to {aside}."
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        return self._open()

    def _open(self) -> sqlite3.Connection:
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- writing ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agent-buffer", daemon=True)
        self._thread.start()

    def put(self, tick: Tick) -> None:
        """Queue ``tick`` for the writer; never blocks the sampling loop.

        When the queue is full (the disk is stuck) the oldest queued tick makes room and is
        counted in ``dropped``: the newest samples are the ones a collector still wants.
        """
        while True:
            try:
                self._queue.put_nowait(tick)
                return
            except queue.Full:
                try:
                    oldest = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if oldest is None:  # the stop marker stays, after this tick
                    self.dropped += 1
                    self._queue.put(None)
                    return
                self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self._db.close()

    def _run(self) -> None:
        last_prune = time.monotonic()
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            self._write([t for t in batch if t is not None])
            if time.monotonic() - last_prune >= PRUNE_EVERY_S:
                last_prune = time.monotonic()
                self._prune()

    def _write(self, ticks: list[Tick]) -> None:
        if not ticks:
            return
        rows = []
        for tick in ticks:
            try:
                data = wire.dumps(wire.encode_tick(tick))
                # What is buffered is what a collector accepts: one bad value would otherwise
                # stop its backfill at this tick for good.
                wire.decode_tick(wire.loads(data))
            except wire.WireError as err:
                self.dropped += 1
                log.error("The agent skipped a sample it could not serve: %s", err)
                continue
            rows.append((tick.ts, zlib.compress(data, 6)))
        if not rows:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                cursor = self._db.executemany("INSERT OR IGNORE INTO ticks VALUES (?, ?)", rows)
            self.written += len(rows)
            self._count += max(cursor.rowcount, 0)
        except sqlite3.Error as err:
            self.dropped += len(rows)
            log.error("The agent could not buffer %d samples: %s", len(rows), err)

    def _prune(self) -> None:
        cutoff = self._now() - self.retention_s
        try:
            self._count -= max(
                self._db.execute("DELETE FROM ticks WHERE ts < ?", (cutoff,)).rowcount, 0
            )
        except sqlite3.Error as err:
            log.error("The agent could not prune its buffer: %s", err)

    # -- reading (any thread) -------------------------------------------------------------------
    def page(self, since: float, limit: int, max_bytes: int) -> BufferedPage:
        """Up to ``limit`` ticks with ``ts > since`` (and about ``max_bytes`` of JSON at most)."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT ts, payload FROM ticks WHERE ts > ? ORDER BY ts LIMIT ?", (since, limit + 1)
            ).fetchall()
        payloads: list[bytes] = []
        size = 0
        last: float | None = None
        more = False
        for ts, blob in rows:
            if len(payloads) >= limit:
                more = True
                break
            data = zlib.decompress(blob)
            if payloads and size + len(data) > max_bytes:
                more = True
                break
            payloads.append(data)
            size += len(data) + 1
            last = float(ts)
        return BufferedPage(tuple(payloads), more, last)

    def span(self) -> tuple[float | None, float | None, int]:
        """(oldest ts, newest ts, number of ticks) held now."""
        with closing(self._connect()) as db:  # MIN and MAX alone are one index seek each
            oldest = db.execute("SELECT MIN(ts) FROM ticks").fetchone()[0]
            newest = db.execute("SELECT MAX(ts) FROM ticks").fetchone()[0]
        return oldest, newest, self._count
