"""``run_storage``: the size of each run's output folders over time (migration 7), and the
run's latest totals in ``runs.storage_bytes/storage_files/storage_cost``.

Named queries for the run service's storage watch, ``report`` and the checkpoint advice; the
connection is the caller's ``RunStore``'s (the only SQLite is here).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple


class StoredSize(NamedTuple):
    """One folder of a run, measured: its path, bytes and file count."""

    path: str
    bytes: int
    files: int


class StorageRow(NamedTuple):
    run_id: int
    ts: float
    path: str
    bytes: int
    files: int


def add_storage(
    conn: sqlite3.Connection,
    run_id: int,
    ts: float,
    sizes: Sequence[StoredSize],
    storage_cost: float | None,
) -> None:
    """One measurement of every folder of a run, and the run's totals, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO run_storage (run_id, ts, path, bytes, files)"
            " VALUES (?, ?, ?, ?, ?)",
            [(run_id, ts, s.path, int(s.bytes), int(s.files)) for s in sizes],
        )
        conn.execute(
            "UPDATE runs SET storage_bytes = ?, storage_files = ?, storage_cost = ? WHERE id = ?",
            (
                sum(int(s.bytes) for s in sizes),
                sum(int(s.files) for s in sizes),
                storage_cost,
                run_id,
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def storage_history(conn: sqlite3.Connection, run_id: int) -> list[StorageRow]:
    """Every measurement of a run's folders, oldest first."""
    rows = conn.execute(
        "SELECT run_id, ts, path, bytes, files FROM run_storage WHERE run_id = ? ORDER BY ts, path",
        (run_id,),
    ).fetchall()
    return [StorageRow(*r) for r in rows]


def storage_between(conn: sqlite3.Connection, start: float, end: float) -> list[StorageRow]:
    """The measurements in ``[start, end]`` and, for each folder, the last one before
    ``start`` (its size then holds into the window)."""
    rows = conn.execute(
        "SELECT run_id, ts, path, bytes, files FROM run_storage WHERE ts >= ? AND ts <= ?"
        " UNION "
        "SELECT s.run_id, s.ts, s.path, s.bytes, s.files FROM run_storage s"
        " JOIN (SELECT run_id, path, max(ts) AS ts FROM run_storage WHERE ts < ?"
        "       GROUP BY run_id, path) b"
        " ON s.run_id = b.run_id AND s.path = b.path AND s.ts = b.ts"
        " ORDER BY 1, 3, 2",
        (start, end, start),
    ).fetchall()
    return [StorageRow(*r) for r in rows]
