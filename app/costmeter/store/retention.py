"""How long each resolution is kept, and the deletions that apply it.

Deletion cut-offs are aligned to whole buckets (raw to minutes, minutes to hours), and the writer
rolls every committed raw row up in the same transaction, so no rollup ever loses data it was
built from. The cut-offs are remembered in ``store_meta`` so queries know which resolution covers
which time and rollups are never recomputed from a partly deleted bucket.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from costmeter.store.rollup import HOUR_MS, MINUTE_MS

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days kept per resolution; ``None`` keeps that resolution forever."""

    raw_days: float | None = 7
    minute_days: float | None = 90
    hour_days: float | None = None

    def __post_init__(self) -> None:
        order = [self.raw_days, self.minute_days, self.hour_days]
        for i, days in enumerate(order):
            if days is not None and days <= 0:
                raise ValueError("Retention periods must be positive numbers of days.")
            for coarser in order[i + 1 :]:
                if days is None and coarser is not None:
                    raise ValueError("A finer resolution cannot be kept longer than a coarser one.")
                if days is not None and coarser is not None and coarser < days:
                    raise ValueError("A finer resolution cannot be kept longer than a coarser one.")


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Raw rows exist from ``raw`` (ms) on, minute rollups from ``minute`` on."""

    raw: int = 0
    minute: int = 0
    hour: int = 0


def read_cutoffs(conn: sqlite3.Connection) -> Cutoffs:
    values = dict(conn.execute("SELECT key, value FROM store_meta").fetchall())
    return Cutoffs(
        raw=int(values.get("raw_cutoff_ms", 0)),
        minute=int(values.get("minute_cutoff_ms", 0)),
        hour=int(values.get("hour_cutoff_ms", 0)),
    )


def _cut(now_ms: int, days: float | None, align: int) -> int:
    if days is None:
        return 0
    t = now_ms - int(days * DAY_MS)
    return max(0, t - t % align)


def apply_retention(conn: sqlite3.Connection, policy: RetentionPolicy, now: float) -> Cutoffs:
    """Delete what the policy no longer keeps, in one transaction; return the new cut-offs."""
    now_ms = int(now * 1000)
    old = read_cutoffs(conn)
    raw = max(old.raw, _cut(now_ms, policy.raw_days, MINUTE_MS))
    minute = max(old.minute, min(_cut(now_ms, policy.minute_days, HOUR_MS), raw - raw % HOUR_MS))
    hour = max(old.hour, min(_cut(now_ms, policy.hour_days, HOUR_MS), minute))
    new = Cutoffs(raw=raw, minute=minute, hour=hour)
    if new == old:
        return old
    conn.execute("BEGIN IMMEDIATE")
    try:
        device_ids = [r[0] for r in conn.execute("SELECT id FROM devices")]
        host_ids = [r[0] for r in conn.execute("SELECT id FROM hosts")]
        for table, ids, cut in (
            ("device_samples", device_ids, raw),
            ("gpu_process_samples", device_ids, raw),
            ("device_rollup_1m", device_ids, minute),
            ("gpu_share_1m", device_ids, minute),
            ("device_rollup_1h", device_ids, hour),
            ("host_samples", host_ids, raw),
            ("host_rollup_1m", host_ids, minute),
            ("host_rollup_1h", host_ids, hour),
        ):
            key = "device_id" if table.startswith(("device", "gpu")) else "host_id"
            # One indexed range delete per id: the primary keys start with the id.
            conn.executemany(
                f"DELETE FROM {table} WHERE {key} = ? AND ts < ?", [(i, cut) for i in ids]
            )
        # Per process too: "WHERE ts < ?" alone scans every row, every pass (processes are
        # never deleted, so each row's process is listed).
        conn.executemany(
            "DELETE FROM process_samples WHERE proc_id = ? AND ts < ?",
            [(r[0], raw) for r in conn.execute("SELECT id FROM processes")],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)",
            [("raw_cutoff_ms", raw), ("minute_cutoff_ms", minute), ("hour_cutoff_ms", hour)],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return new
