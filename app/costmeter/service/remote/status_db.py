"""The ``remote_hosts`` and ``device_events`` tables: written in batches, read by ``report``.

The collector's threads only hand statuses and XID events to :class:`StatusTable`; one thread
writes them in one transaction at most every ``flush_interval`` seconds (sooner when a host's
state changes), on a connection of its own, so sampling never waits on the disk.

Rows are keyed by the source's URL (schema migration 4): two sources that report one host
name (two exporters of one machine given apart, or two agents named alike) keep a row each,
so the one that is refused shows as refused instead of overwriting the other.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from costmeter.service.remote.status import STATES, HostStatus
from costmeter.store.database import connect

log = logging.getLogger(__name__)

#: An XID for a device the writer has not registered yet is retried this many flushes.
EVENT_TRIES = 30

_UPSERT = (
    "INSERT INTO remote_hosts (name, url, kind, state, last_contact, newest_sample,"
    " last_error, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(url) DO UPDATE SET name = excluded.name, kind = excluded.kind,"
    " state = excluded.state, last_contact = coalesce(excluded.last_contact, last_contact),"
    " newest_sample = coalesce(excluded.newest_sample, newest_sample),"
    " last_error = excluded.last_error, updated = excluded.updated"
)
_EVENT = (
    "INSERT OR IGNORE INTO device_events (device_id, ts, kind, value)"
    " SELECT id, ?, 'xid', ? FROM devices WHERE uuid = ?"
)


class StatusTable:
    def __init__(
        self,
        db_path: Path,
        *,
        flush_interval: float = 2.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.flush_interval = flush_interval
        self.on_error = on_error
        self._cond = threading.Condition()
        self._dirty: dict[str, HostStatus] = {}
        self._forget: set[str] = set()
        self._events: list[tuple[int, int, str, int]] = []  # (ms, code, uuid, tries left)
        self._urgent = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._reported = False

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="costmeter-remote-status", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread.join(timeout)
        self._thread = None

    def put(self, status: HostStatus, *, urgent: bool = False) -> None:
        with self._cond:
            self._dirty[status.url] = status
            self._forget.discard(status.url)
            if urgent:
                self._urgent = True
            self._cond.notify_all()

    def forget(self, url: str) -> None:
        """Remove a source's row (it is no longer collected from)."""
        with self._cond:
            self._dirty.pop(url, None)
            self._forget.add(url)
            self._cond.notify_all()

    def add_xid(self, uuid: str, ts: float, code: int) -> None:
        with self._cond:
            self._events.append((round(ts * 1000), code, uuid, EVENT_TRIES))
            self._cond.notify_all()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        last = 0.0
        try:
            while True:
                with self._cond:
                    while not self._stopping:
                        due = time.monotonic() - last >= self.flush_interval
                        pending = self._dirty or self._forget or self._events
                        if pending and (due or self._urgent):
                            break
                        wait = max(0.05, self.flush_interval - (time.monotonic() - last))
                        self._cond.wait(wait if pending else None)
                    statuses = list(self._dirty.values())
                    forget = list(self._forget)
                    events = self._events
                    self._dirty, self._forget, self._events = {}, set(), []
                    self._urgent = False
                    stopping = self._stopping
                last = time.monotonic()
                if statuses or forget or events:
                    if conn is None:
                        conn = self._connect()
                    if conn is not None:
                        self._write(conn, statuses, forget, events)
                if stopping:
                    break
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            return connect(self.db_path)
        except (sqlite3.Error, OSError) as err:
            self._report(f"the remote hosts' status could not be saved in {self.db_path}: {err}")
            return None

    def _write(
        self,
        conn: sqlite3.Connection,
        statuses: list[HostStatus],
        forget: list[str],
        events: list[tuple[int, int, str, int]],
    ) -> None:
        now = time.time()
        retry: list[tuple[int, int, str, int]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for url in forget:
                    conn.execute("DELETE FROM remote_hosts WHERE url = ?", (url,))
                conn.executemany(
                    _UPSERT,
                    [
                        (s.name, s.url, s.kind, s.state, s.last_contact, s.newest_sample,
                         s.error, now)
                        for s in statuses
                    ],
                )  # fmt: skip
                for ms, code, uuid, tries in events:
                    inserted = conn.execute(_EVENT, (ms, code, uuid)).rowcount
                    if inserted == 0 and tries > 1 and not _known(conn, uuid):
                        retry.append((ms, code, uuid, tries - 1))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            self._report(f"the remote hosts' status could not be saved in {self.db_path}: {err}")
            with self._cond:  # keep what was not written, newer statuses win
                for s in statuses:
                    self._dirty.setdefault(s.url, s)
                self._events = events + self._events
            return
        if retry:
            with self._cond:
                self._events = retry + self._events

    def _report(self, message: str) -> None:
        log.warning("%s", message)
        if not self._reported and self.on_error is not None:
            self._reported = True
            self.on_error(message)


def _known(conn: sqlite3.Connection, uuid: str) -> bool:
    return conn.execute("SELECT 1 FROM devices WHERE uuid = ?", (uuid,)).fetchone() is not None


def read_statuses(db_path: Path, now: float | None = None) -> list[HostStatus]:
    """The ``remote_hosts`` rows, by name; empty when the table has none (or does not exist)."""
    now = time.time() if now is None else now
    try:
        conn = connect(db_path)
    except (sqlite3.Error, OSError):
        return []
    try:
        rows = conn.execute(
            "SELECT name, url, kind, state, last_contact, newest_sample, last_error"
            " FROM remote_hosts ORDER BY name, url"
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    out = []
    for name, url, kind, state, contact, newest, error in rows:
        out.append(
            HostStatus(
                name=str(name),
                url=str(url),
                kind=str(kind),
                state=state if state in STATES else "error",
                last_contact=contact,
                newest_sample=newest,
                lag_s=None if newest is None else max(0.0, now - float(newest)),
                error=error,
            )
        )
    return out


def newest_sample(db_path: Path, host: str) -> float | None:
    """The newest sample time stored for ``host`` (its host row or any of its GPUs), or None."""
    try:
        conn = connect(db_path)
    except (sqlite3.Error, OSError):
        return None
    try:
        row = conn.execute("SELECT id FROM hosts WHERE hostname = ?", (host,)).fetchone()
        if row is None:
            return None
        hid = int(row[0])
        best = conn.execute(
            "SELECT max(ts) FROM host_samples WHERE host_id = ?", (hid,)
        ).fetchone()[0]
        for (did,) in conn.execute("SELECT id FROM devices WHERE host_id = ?", (hid,)).fetchall():
            ts = conn.execute(
                "SELECT max(ts) FROM device_samples WHERE device_id = ?", (did,)
            ).fetchone()[0]
            if ts is not None and (best is None or ts > best):
                best = ts
        return None if best is None else best / 1000.0
    except sqlite3.Error:
        return None
    finally:
        conn.close()
