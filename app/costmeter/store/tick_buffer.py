"""The agent's buffer file: one row per tick, its timestamp (the key) and its payload bytes.

Payloads are stored zlib-compressed and handed back as they were given (nothing is decoded).
One connection writes (one thread at a time); every read opens its own, so reads from any
thread go on while the writer writes (WAL). Only a file that SQLite calls damaged and a
read-only check confirms is moved aside (never deleted); every other problem is a
``StoreError`` naming its cause, and the file is left as it is.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from costmeter.core.errors import StoreError
from costmeter.store.errors import classify, confirm_corrupt, is_corruption, path_problem

SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (ts REAL PRIMARY KEY, payload BLOB NOT NULL) WITHOUT ROWID;
"""


class _Damaged(Exception):
    """``quick_check`` found the file damaged (it opened without an error)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class BufferedPage:
    """Ticks as stored bytes, in ascending ts order."""

    payloads: tuple[bytes, ...]
    more: bool
    last_ts: float | None


class TickBufferFile:
    """Open (create) the buffer at ``path``.

    ``notice``: a sentence for the user when a damaged file had to be moved aside, else None.
    Raises a ``StoreError`` subclass when the file cannot be used.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 10.0, now: Callable[[], float]) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.notice: str | None = None
        try:
            self._conn = self._open_or_set_aside(now)
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as err:
            raise classify(err, path) from err
        # Counted once here, then kept up to date: COUNT(*) reads the whole table.
        try:
            self._count = int(self._conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0])
        except sqlite3.Error as err:
            self._conn.close()
            raise classify(err, path, doing="read") from err

    @property
    def count(self) -> int:
        """How many ticks the file holds (kept up to date by ``insert`` and ``prune``)."""
        return self._count

    def close(self) -> None:
        self._conn.close()

    # -- opening --------------------------------------------------------------------------------
    def _open_or_set_aside(self, now: Callable[[], float]) -> sqlite3.Connection:
        path = self.path
        found = path_problem(path, create=True, make_parent=True)
        if found is not None:
            raise found
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Samples name processes and their command lines: the buffer is for its owner only
        # (SQLite gives the -wal and -shm files the same mode).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        damage: str | None
        try:
            return self._open()
        except _Damaged as err:
            damage = err.problem
        except sqlite3.DatabaseError as err:
            damage = confirm_corrupt(path) if is_corruption(err) else None
            if damage is None:  # locked, read-only, full, I/O: the file is not touched
                raise
        aside = path.with_name(f"{path.name}.damaged-{int(now())}")
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
            # Checked before anything is written: SQLite opens some damaged files without a
            # word (found on the malformed files of its own fuzzers, tests/data/store), and
            # creating the table would have written into them.
            rows = db.execute("PRAGMA quick_check").fetchall()
            problem = "; ".join(str(r[0]) for r in rows)
            if problem != "ok":
                raise _Damaged(problem)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        except (sqlite3.Error, _Damaged):
            db.close()
            raise
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- writing (one thread) -------------------------------------------------------------------
    def insert(self, rows: Sequence[tuple[float, bytes]]) -> int:
        """Store ``(ts, payload)`` rows in one transaction; a ts already held is kept as it is.

        Returns how many rows were new.
        """
        packed = [(ts, zlib.compress(data, 6)) for ts, data in rows]
        try:
            with self._conn:
                self._conn.execute("BEGIN")
                cursor = self._conn.executemany("INSERT OR IGNORE INTO ticks VALUES (?, ?)", packed)
        except sqlite3.Error as err:
            raise classify(err, self.path, doing="written") from err
        added = max(cursor.rowcount, 0)
        self._count += added
        return added

    def prune(self, cutoff: float) -> int:
        """Delete the ticks older than ``cutoff``; returns how many went."""
        try:
            gone = max(self._conn.execute("DELETE FROM ticks WHERE ts < ?", (cutoff,)).rowcount, 0)
        except sqlite3.Error as err:
            raise classify(err, self.path, doing="written") from err
        self._count -= gone
        return gone

    # -- reading (any thread) -------------------------------------------------------------------
    def page(self, since: float, limit: int, max_bytes: int) -> BufferedPage:
        """Up to ``limit`` ticks with ``ts > since`` (and about ``max_bytes`` at most, but at
        least one)."""
        try:
            with closing(self._connect()) as db:
                rows = db.execute(
                    "SELECT ts, payload FROM ticks WHERE ts > ? ORDER BY ts LIMIT ?",
                    (since, limit + 1),
                ).fetchall()
        except sqlite3.Error as err:
            raise classify(err, self.path, doing="read") from err
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

    def bounds(self) -> tuple[float | None, float | None]:
        """(oldest ts, newest ts), None for an empty buffer."""
        try:
            with closing(self._connect()) as db:  # MIN and MAX alone are one index seek each
                oldest = db.execute("SELECT MIN(ts) FROM ticks").fetchone()[0]
                newest = db.execute("SELECT MAX(ts) FROM ticks").fetchone()[0]
        except sqlite3.Error as err:
            raise classify(err, self.path, doing="read") from err
        return oldest, newest
