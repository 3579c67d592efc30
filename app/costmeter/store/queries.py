"""Time series for charts: the coarsest resolution that keeps a range under ``max_points``."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

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


def _column(values: Sequence[float | None], scale: float) -> list[float]:
    """``_f`` over a column, inlined (charts and advice convert hundreds of thousands)."""
    nan = math.nan
    missing = values.count(None)
    if missing == len(values):  # a metric the source never reports (exporters: no power)
        return [nan] * len(values)
    if missing == 0:
        known = cast("Sequence[float]", values)
        if scale == 1.0:  # float(v) is v * 1.0, bit for bit, at C speed
            return list(map(float, known))
        return [v * scale for v in known]
    return [nan if v is None else v * scale for v in values]


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
    return query_metrics(conn, kind, obj_id, (metric,), start, end, max_points, cutoffs)[metric]


def query_metrics(
    conn: sqlite3.Connection,
    kind: str,
    obj_id: int,
    metrics: Sequence[str],
    start: float,
    end: float,
    max_points: int,
    cutoffs: Cutoffs,
) -> dict[str, Series]:
    """Several metrics of one object, each as ``query_series`` gives it, read in one pass (the
    resolution depends on the rows in the range, not on the metric)."""
    table = DEVICE_SERIES if kind == "device" else HOST_SERIES
    for metric in metrics:
        if metric not in table:
            raise ValueError(
                f"Unknown {kind} metric '{metric}'. Known metrics: {', '.join(table)}."
            )
    if max_points < 1:
        raise ValueError("max_points must be at least 1.")
    columns = [table[m][0] for m in metrics]
    key = f"{kind}_id"
    s_ms, e_ms = math.floor(start * 1000), math.ceil(end * 1000)
    if e_ms <= s_ms:
        return {m: Series(m, "raw") for m in metrics}
    limit = max_points + 1
    if s_ms >= cutoffs.raw:
        # At most one row past max_points: a range with more is read from the rollups below.
        rows = conn.execute(
            f"SELECT ts, {', '.join(columns)} FROM {kind}_samples WHERE {key} = ?"
            " AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?",
            (obj_id, s_ms, e_ms, limit),
        ).fetchall()
        if len(rows) <= max_points:
            cols = list(zip(*rows, strict=True)) or [()] * (len(metrics) + 1)
            ts = [t / 1000 for t in cols[0]]
            out = {}
            for m, col in zip(metrics, cols[1:], strict=True):
                vals = _column(col, table[m][1])
                out[m] = Series(m, "raw", list(ts), vals, list(vals), list(vals))
            return out
    stats = ", ".join(f"{c}_min, {c}_avg, {c}_max" for c in columns)
    for level, width, cut in (("1m", MINUTE_MS, cutoffs.minute), ("1h", HOUR_MS, cutoffs.hour)):
        lo = s_ms - s_ms % width
        if level == "1m" and lo < cut:
            continue
        n = _count_upto(conn, f"{kind}_rollup_{level}", key, obj_id, lo, e_ms, limit)
        if n <= max_points:
            rows = conn.execute(
                f"SELECT ts, {stats} FROM {kind}_rollup_{level}"
                f" WHERE {key} = ? AND ts >= ? AND ts < ? ORDER BY ts",
                (obj_id, lo, e_ms),
            ).fetchall()
            return _split_stats(metrics, table, level, rows, width)
    # Even hourly points are too many: merge hours into wider buckets (aligned on the start).
    lo = s_ms - s_ms % HOUR_MS
    width = HOUR_MS * math.ceil((e_ms - lo) / (max_points * HOUR_MS))
    merged = ", ".join(
        f"min({c}_min), sum({c}_avg * n) / sum(CASE WHEN {c}_avg IS NOT NULL THEN n END),"
        f" max({c}_max)"
        for c in columns
    )
    rows = conn.execute(
        f"SELECT :lo + ((ts - :lo) / {width}) * {width} AS b, {merged}"
        f" FROM {kind}_rollup_1h WHERE {key} = :id AND ts >= :lo"
        " AND ts < :hi GROUP BY b ORDER BY b",
        {"id": obj_id, "lo": lo, "hi": e_ms},
    ).fetchall()
    return _split_stats(metrics, table, "1h", rows, width)


def _split_stats(
    metrics: Sequence[str],
    table: dict[str, tuple[str, float]],
    level: str,
    rows: list[tuple[Any, ...]],
    width: int,
) -> dict[str, Series]:
    """Rows of (ts, min, avg, max per metric) as one ``Series`` per metric."""
    out = {}
    for i, m in enumerate(metrics):
        at = 1 + 3 * i
        part = [(r[0], r[at], r[at + 1], r[at + 2]) for r in rows]
        out[m] = _series(m, level, part, table[m][1], width)
    return out


def _series(
    metric: str, level: str, rows: list[tuple[Any, ...]], scale: float, width: int
) -> Series:
    cols = list(zip(*rows, strict=True)) or [()] * 4
    return Series(
        metric,
        level,
        [t / 1000 for t in cols[0]],
        _column(cols[1], scale),
        _column(cols[2], scale),
        _column(cols[3], scale),
        bucket_s=width / 1000,
    )
