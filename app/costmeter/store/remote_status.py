"""The ``remote_hosts`` and ``device_events`` tables: the collector's statuses and XID events.

Their schema lives in ``store.schema`` (rows keyed by the source's URL since migration 4).
Errors leave as ``StoreError`` subclasses naming the cause (``store.errors``); a database that
does not exist yet, or predates these tables, simply has no rows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from costmeter.store.database import DEFAULT_BUSY_TIMEOUT, connect
from costmeter.store.errors import classify, read_only_uri

_SELECT = (
    "SELECT name, url, kind, state, last_contact, newest_sample, last_error, updated"
    " FROM remote_hosts ORDER BY name, url"
)
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


@dataclass(frozen=True, slots=True)
class RemoteHostRow:
    """One row of ``remote_hosts``: the last status a collector wrote for one source URL."""

    name: str
    url: str
    kind: str
    state: str
    last_contact: float | None
    newest_sample: float | None
    error: str | None
    updated: float | None = None


@dataclass(frozen=True, slots=True)
class XidEvent:
    """An XID error of the GPU ``uuid`` at ``ts_ms`` (milliseconds since the epoch)."""

    ts_ms: int
    code: int
    uuid: str


def read_remote_hosts(path: str | os.PathLike[str]) -> list[RemoteHostRow]:
    """Every ``remote_hosts`` row by name, then URL; opened read-only (nothing is created).

    A missing file or a database without the table gives ``[]``; anything else that goes wrong
    is a ``StoreError`` naming the cause.
    """
    if not Path(path).exists():
        return []
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=2.0)
    except sqlite3.Error as err:
        raise classify(err, path, doing="read") from err
    with closing(conn):
        try:
            rows = conn.execute(_SELECT).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return []
            raise classify(err, path, doing="read") from err
        except sqlite3.Error as err:
            raise classify(err, path, doing="read") from err
    return [RemoteHostRow(*row) for row in rows]


def newest_sample(path: str | os.PathLike[str], host: str) -> float | None:
    """The newest sample time stored for ``host`` (its host row or any of its GPUs), or None."""
    try:
        conn = connect(path)
    except (sqlite3.Error, OSError) as err:
        raise classify(err, path, doing="read") from err
    with closing(conn):
        try:
            return _newest_sample(conn, host)
        except sqlite3.Error as err:
            raise classify(err, path, doing="read") from err


def _newest_sample(conn: sqlite3.Connection, host: str) -> float | None:
    row = conn.execute("SELECT id FROM hosts WHERE hostname = ?", (host,)).fetchone()
    if row is None:
        return None
    hid = int(row[0])
    best = conn.execute("SELECT max(ts) FROM host_samples WHERE host_id = ?", (hid,)).fetchone()[0]
    for (did,) in conn.execute("SELECT id FROM devices WHERE host_id = ?", (hid,)).fetchall():
        # One max per device: each uses the (device_id, ts) primary key.
        ts = conn.execute(
            "SELECT max(ts) FROM device_samples WHERE device_id = ?", (did,)
        ).fetchone()[0]
        if ts is not None and (best is None or ts > best):
            best = ts
    return None if best is None else best / 1000.0


class RemoteStatusWriter:
    """A connection of its own that writes status batches (one transaction per batch).

    For one thread at a time (the collector's status thread).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        self.path = Path(path)
        try:
            self._conn = connect(path, busy_timeout=busy_timeout)
        except (sqlite3.Error, OSError) as err:
            raise classify(err, path, doing="opened") from err

    def close(self) -> None:
        self._conn.close()

    def write(
        self,
        rows: Sequence[RemoteHostRow],
        forget: Sequence[str],
        events: Sequence[XidEvent],
    ) -> list[XidEvent]:
        """Delete the ``forget`` URLs' rows, upsert ``rows``, store ``events``; all or nothing.

        Returns the events not stored because their device is not registered yet (an event
        already stored is not returned). On an error nothing is written and a ``StoreError``
        leaves.
        """
        conn = self._conn
        unknown: list[XidEvent] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for url in forget:
                    conn.execute("DELETE FROM remote_hosts WHERE url = ?", (url,))
                conn.executemany(
                    _UPSERT,
                    [
                        (r.name, r.url, r.kind, r.state, r.last_contact, r.newest_sample, r.error,
                         r.updated)
                        for r in rows
                    ],
                )  # fmt: skip
                for ev in events:
                    inserted = conn.execute(_EVENT, (ev.ts_ms, ev.code, ev.uuid)).rowcount
                    if inserted == 0 and not _known(conn, ev.uuid):
                        unknown.append(ev)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise classify(err, self.path, doing="written") from err
        return unknown


def _known(conn: sqlite3.Connection, uuid: str) -> bool:
    return conn.execute("SELECT 1 FROM devices WHERE uuid = ?", (uuid,)).fetchone() is not None
