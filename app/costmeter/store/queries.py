"""Time series for charts: the coarsest resolution that keeps a range under ``max_points``."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field

from costmeter.store.retention import Cutoffs
from costmeter.store.rollup import HOUR_MS, MINUTE_MS

#: API metric name -> (stored column, factor from stored units to API units).
DEVICE_SERIES: dict[str, tuple[str, float]] = {
    "gpu_util": ("gpu_util", 1.0),
    "mem_util": ("mem_util", 1.0),
    "mem_used": ("mem_used", 1.0),
    "power_w": ("power_mw", 0.001),
    "temp_c": ("temp_c", 1.0),
    "sm_clock_mhz": ("sm_clock", 1.0),
    "mem_clock_mhz": ("mem_clock", 1.0),
}

HOST_SERIES: dict[str, tuple[str, float]] = {
    "cpu_percent": ("cpu_pct_x100", 0.01),
    "mem_used": ("mem_used", 1.0),
    "load1": ("load1_x100", 0.01),
    "swap_used": ("swap_used", 1.0),
    "disk_read_bps": ("disk_read", 1.0),
    "disk_write_bps": ("disk_write", 1.0),
    "net_rx_bps": ("net_rx", 1.0),
    "net_tx_bps": ("net_tx", 1.0),
}


@dataclass(frozen=True, slots=True)
class Series:
    """Points of one metric; for rollups ``ts`` is the bucket start. NaN marks a missing value."""

    metric: str
    resolution: str  # "raw", "1m" or "1h"
    ts: list[float] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    avg: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    #: Width of each point in seconds (0 for raw samples).
    bucket_s: float = 0.0

    def __len__(self) -> int:
        return len(self.ts)


def _count_upto(
    conn: sqlite3.Connection, table: str, key: str, obj_id: int, lo: int, hi: int, limit: int
) -> int:
    """Rows in the range, counting no further than ``limit`` (cheap however long the range)."""
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {key} = ? AND ts >= ? AND ts < ?"
        " LIMIT ?)",
        (obj_id, lo, hi, limit),
    ).fetchone()
    return int(row[0])


def _f(v: float | None, scale: float) -> float:
    return math.nan if v is None else v * scale


def query_series(
    conn: sqlite3.Connection,
    kind: str,
    obj_id: int,
    metric: str,
    start: float,
    end: float,
    max_points: int,
    cutoffs: Cutoffs,
) -> Series:
    """See ``Store.query_series``; ``kind`` is "device" or "host"."""
    table = DEVICE_SERIES if kind == "device" else HOST_SERIES
    if metric not in table:
        raise ValueError(f"Unknown {kind} metric '{metric}'. Known metrics: {', '.join(table)}.")
    if max_points < 1:
        raise ValueError("max_points must be at least 1.")
    column, scale = table[metric]
    key = f"{kind}_id"
    s_ms, e_ms = math.floor(start * 1000), math.ceil(end * 1000)
    if e_ms <= s_ms:
        return Series(metric, "raw")
    limit = max_points + 1
    if s_ms >= cutoffs.raw:
        n = _count_upto(conn, f"{kind}_samples", key, obj_id, s_ms, e_ms, limit)
        if n <= max_points:
            rows = conn.execute(
                f"SELECT ts, {column} FROM {kind}_samples WHERE {key} = ? AND ts >= ? AND ts < ?"
                " ORDER BY ts",
                (obj_id, s_ms, e_ms),
            ).fetchall()
            ts = [t / 1000 for t, _ in rows]
            vals = [_f(v, scale) for _, v in rows]
            return Series(metric, "raw", ts, vals, list(vals), list(vals))
    for level, width, cut in (("1m", MINUTE_MS, cutoffs.minute), ("1h", HOUR_MS, cutoffs.hour)):
        lo = s_ms - s_ms % width
        if level == "1m" and lo < cut:
            continue
        n = _count_upto(conn, f"{kind}_rollup_{level}", key, obj_id, lo, e_ms, limit)
        if n <= max_points:
            rows = conn.execute(
                f"SELECT ts, {column}_min, {column}_avg, {column}_max FROM {kind}_rollup_{level}"
                f" WHERE {key} = ? AND ts >= ? AND ts < ? ORDER BY ts",
                (obj_id, lo, e_ms),
            ).fetchall()
            return _series(metric, level, rows, scale, width)
    # Even hourly points are too many: merge hours into wider buckets (aligned on the start).
    lo = s_ms - s_ms % HOUR_MS
    width = HOUR_MS * math.ceil((e_ms - lo) / (max_points * HOUR_MS))
    rows = conn.execute(
        f"SELECT :lo + ((ts - :lo) / {width}) * {width} AS b, min({column}_min),"
        f" sum({column}_avg * n) / sum(CASE WHEN {column}_avg IS NOT NULL THEN n END),"
        f" max({column}_max) FROM {kind}_rollup_1h WHERE {key} = :id AND ts >= :lo"
        " AND ts < :hi GROUP BY b ORDER BY b",
        {"id": obj_id, "lo": lo, "hi": e_ms},
    ).fetchall()
    return _series(metric, "1h", rows, scale, width)


def _series(
    metric: str, level: str, rows: list[tuple[int, float, float, float]], scale: float, width: int
) -> Series:
    return Series(
        metric,
        level,
        [r[0] / 1000 for r in rows],
        [_f(r[1], scale) for r in rows],
        [_f(r[2], scale) for r in rows],
        [_f(r[3], scale) for r in rows],
        bucket_s=width / 1000,
    )
