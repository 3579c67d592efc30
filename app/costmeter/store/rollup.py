"""1-minute and 1-hour rollups, recomputed for the buckets a flush touched.

Minute buckets come from raw rows, hour buckets from minute rows; both are written with
``INSERT OR REPLACE`` so recomputing a bucket is always safe. Sums are integers (ms, mJ) so a
total over rollups equals the same total over raw rows exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import compress
from operator import mul
from typing import Any, cast

from costmeter.core.model import IDLE_UTIL_PERCENT
from costmeter.store.schema import DEVICE_ROLLUP_METRICS, HOST_ROLLUP_METRICS

MINUTE_MS = 60_000
HOUR_MS = 3_600_000

_IDLE = f"gpu_util < {IDLE_UTIL_PERCENT!r}"

#: (rollup column, aggregate over raw rows) for the additive device columns.
DEVICE_SUMS: tuple[tuple[str, str], ...] = (
    ("n", "count(*)"),
    ("dt_ms", "coalesce(sum(dt_ms), 0)"),
    ("idle_ms", f"coalesce(sum(CASE WHEN {_IDLE} THEN dt_ms END), 0)"),
    ("util_ms", "coalesce(sum(gpu_util * dt_ms), 0)"),
    ("util_known_ms", "coalesce(sum(CASE WHEN gpu_util IS NOT NULL THEN dt_ms END), 0)"),
    ("energy_mj", "coalesce(sum(energy_mj), 0)"),
    ("energy_measured_mj", "coalesce(sum(CASE WHEN energy_measured THEN energy_mj END), 0)"),
    ("idle_energy_mj", f"coalesce(sum(CASE WHEN {_IDLE} THEN energy_mj END), 0)"),
)

#: The same for hosts; ``:cpus`` is the host's logical CPU count (``cpu_pct_x100`` is in 0.01 %).
HOST_SUMS: tuple[tuple[str, str], ...] = (
    ("n", "count(*)"),
    ("dt_ms", "coalesce(sum(dt_ms), 0)"),
    ("busy_core_ms", "coalesce(sum(cpu_pct_x100 * dt_ms), 0) * :cpus / 10000.0"),
    ("cpu_energy_mj", "coalesce(sum(cpu_energy_mj), 0)"),
    (
        "cpu_energy_measured_mj",
        "coalesce(sum(CASE WHEN cpu_energy_measured THEN cpu_energy_mj END), 0)",
    ),
)


def raw_sums(kind: str) -> tuple[tuple[str, str], ...]:
    return DEVICE_SUMS if kind == "device" else HOST_SUMS


def rollup_sums(kind: str) -> tuple[tuple[str, str], ...]:
    """Aggregates that combine rollup rows into a coarser total."""
    return tuple((col, f"coalesce(sum({col}), 0)") for col, _ in raw_sums(kind))


def _stats_from_raw(metrics: Sequence[str]) -> list[str]:
    return [f"min({m}), avg({m}), max({m})" for m in metrics]


def _stats_from_rollup(metrics: Sequence[str]) -> list[str]:
    # Averages are combined weighted by the sample count of the finer buckets.
    return [
        f"min({m}_min), sum({m}_avg * n) / sum(CASE WHEN {m}_avg IS NOT NULL THEN n END),"
        f" max({m}_max)"
        for m in metrics
    ]


def _rollup_sql(kind: str, level: str, grouped: bool) -> str:
    """Recompute buckets of ``level`` in ``[:start, :end)``.

    The per-bucket form (``grouped=False``, one execution per bucket) avoids the temporary
    B-tree that ``GROUP BY ts / width`` needs; the grouped form serves whole-table rebuilds.
    """
    key = f"{kind}_id"
    metrics = DEVICE_ROLLUP_METRICS if kind == "device" else HOST_ROLLUP_METRICS
    if level == "1m":
        source, width = f"{kind}_samples", MINUTE_MS
        aggs = [expr for _, expr in raw_sums(kind)] + _stats_from_raw(metrics)
    else:
        source, width = f"{kind}_rollup_1m", HOUR_MS
        aggs = [expr for _, expr in rollup_sums(kind)] + _stats_from_rollup(metrics)
    bucket = f"(ts / {width}) * {width} AS bucket" if grouped else ":start"
    tail = "GROUP BY bucket" if grouped else "HAVING count(*) > 0"
    return (
        f"INSERT OR REPLACE INTO {kind}_rollup_{level} "
        f"SELECT {key}, {bucket}, {', '.join(aggs)} "
        f"FROM {source} WHERE {key} = :id AND ts >= :start AND ts < :end {tail}"
    )


_SQL = {
    (k, lv, g): _rollup_sql(k, lv, g)
    for k in ("device", "host")
    for lv in ("1m", "1h")
    for g in (False, True)
}


def update_rollups(
    conn: sqlite3.Connection,
    kind: str,
    touched: dict[int, list[int]],
    *,
    raw_cutoff: int = 0,
    minute_cutoff: int = 0,
    cpu_counts: dict[int, int] | None = None,
    done_minutes: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
) -> None:
    """Recompute the minute buckets from each ``touched`` id's [first, last] ms, and their hours.

    Minutes before ``raw_cutoff`` are skipped: their raw rows were partly deleted by retention,
    so a recomputation would be wrong. Likewise hours before ``minute_cutoff``. So are the
    ``(id, minute start)`` pairs in ``done_minutes`` (written by ``write_fresh_device_minutes``).
    """
    minutes: list[dict[str, int]] = []
    hours: list[dict[str, int]] = []
    for obj_id, (first, last) in touched.items():
        cpus = (cpu_counts or {}).get(obj_id, 1) if kind == "host" else 0
        lo = max(first - first % MINUTE_MS, raw_cutoff)
        for m in range(lo, last + 1, MINUTE_MS):
            if (obj_id, m) in done_minutes:
                continue
            minutes.append({"id": obj_id, "start": m, "end": m + MINUTE_MS, "cpus": cpus})
        lo = max(lo - lo % HOUR_MS, minute_cutoff)
        for h in range(lo, last + 1, HOUR_MS):
            hours.append({"id": obj_id, "start": h, "end": h + HOUR_MS})
    conn.executemany(_SQL[(kind, "1m", False)], minutes)
    conn.executemany(_SQL[(kind, "1h", False)], hours)


def update_buckets(conn: sqlite3.Connection, kind: str, minutes: dict[int, set[int]]) -> None:
    """Recompute the given minute buckets (start, ms) of each id, then the hours holding them.

    No retention cut-off applies: the caller vouches that the raw rows of these minutes are
    complete (``store.imports`` only adds rows to minutes no rollup summarised yet).
    """
    minute_params = [
        {"id": obj_id, "start": m, "end": m + MINUTE_MS, "cpus": 0}
        for obj_id, starts in minutes.items()
        for m in sorted(starts)
    ]
    hours = sorted(
        {(obj_id, m - m % HOUR_MS) for obj_id, starts in minutes.items() for m in starts}
    )
    conn.executemany(_SQL[(kind, "1m", False)], minute_params)
    conn.executemany(
        _SQL[(kind, "1h", False)], [{"id": i, "start": h, "end": h + HOUR_MS} for i, h in hours]
    )


#: ``device_samples`` columns in table order (the rows that ``rows.device_row`` builds).
DEVICE_COLUMNS: tuple[str, ...] = (
    "device_id",
    "ts",
    "dt_ms",
    "gpu_util",
    "mem_util",
    "mem_used",
    "power_mw",
    "energy_mj",
    "energy_measured",
    "temp_c",
    "sm_clock",
    "mem_clock",
)
_METRIC_POS = tuple(DEVICE_COLUMNS.index(m) for m in DEVICE_ROLLUP_METRICS)
DEVICE_MINUTE_INSERT = (
    "INSERT OR REPLACE INTO device_rollup_1m VALUES ("
    + ",".join("?" * (2 + len(DEVICE_SUMS) + 3 * len(DEVICE_ROLLUP_METRICS)))
    + ")"
)
HOST_MINUTE_INSERT = (
    "INSERT OR REPLACE INTO host_rollup_1m VALUES ("
    + ",".join("?" * (2 + len(HOST_SUMS) + 3 * len(HOST_ROLLUP_METRICS)))
    + ")"
)


def _minute_row(did: int, start: int, rows: list[tuple[object, ...]]) -> tuple[object, ...]:
    """A ``device_rollup_1m`` row computed from the bucket's raw rows, as ``DEVICE_SUMS`` and
    the min/avg/max stats would compute it in SQL."""
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True))
    dt, util, energy, measured = cols[2], cols[3], cols[7], cols[8]
    idle = IDLE_UTIL_PERCENT
    out: list[object] = [did, start, len(rows)]
    if None not in util and None not in energy:
        # The common case, with every loop in C.
        is_idle = list(map(float(idle).__gt__, util))
        dt_ms = sum(dt)
        out += (
            dt_ms,
            sum(compress(dt, is_idle)),
            sum(map(mul, util, dt)),
            dt_ms,
            sum(energy),
            sum(compress(energy, measured)),
            sum(compress(energy, is_idle)),
        )
    else:
        out += (
            sum(dt),
            sum(d for u, d in zip(util, dt, strict=True) if u is not None and u < idle),
            sum(u * d for u, d in zip(util, dt, strict=True) if u is not None),
            sum(d for u, d in zip(util, dt, strict=True) if u is not None),
            sum(e for e in energy if e is not None),
            sum(e for e, m in zip(energy, measured, strict=True) if m and e is not None),
            sum(
                e
                for u, e in zip(util, energy, strict=True)
                if e is not None and u is not None and u < idle
            ),
        )
    for pos in _METRIC_POS:
        vals = cols[pos]
        if None in vals:
            vals = tuple(v for v in vals if v is not None)
        if vals:
            out += (min(vals), sum(vals) / len(vals), max(vals))
        else:
            out += (None, None, None)
    return tuple(out)


def write_fresh_device_minutes(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[object, ...]],
    last_stored: dict[int, int],
    raw_cutoff: int = 0,
) -> set[tuple[int, int]]:
    """Write the minute rollups of buckets that only this batch's ``rows`` fill; return them.

    A bucket qualifies when it starts after the device's newest stored sample before the batch
    (``last_stored``, ms), from ``raw_cutoff`` on, and holds no duplicate timestamps: then its
    raw rows are exactly the batch's, and aggregating them in Python saves re-reading them.
    Every other touched bucket is left to ``update_rollups``.
    """
    buckets: dict[tuple[int, int], list[tuple[object, ...]]] = {}
    for r in rows:
        ts = cast(int, r[1])
        key = (cast(int, r[0]), ts - ts % MINUTE_MS)
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = [r]
        else:
            bucket.append(r)
    done: set[tuple[int, int]] = set()
    out = []
    for (did, start), bucket in buckets.items():
        if start < raw_cutoff or start <= last_stored.get(did, -1):
            continue
        if len({r[1] for r in bucket}) != len(bucket):
            continue  # INSERT OR REPLACE kept only the last of each duplicate
        out.append(_minute_row(did, start, bucket))
        done.add((did, start))
    conn.executemany(DEVICE_MINUTE_INSERT, out)
    return done


def rebuild_rollups(conn: sqlite3.Connection) -> None:
    """Recompute every rollup from the raw rows that are left (for bulk loads and repairs)."""
    full = {"start": 0, "end": 2**62, "cpus": 0}
    for kind, table in (("device", "devices"), ("host", "hosts")):
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table}")]
        for obj_id in ids:
            if kind == "host":
                row = conn.execute("SELECT cpu_count FROM hosts WHERE id = ?", (obj_id,)).fetchone()
                full["cpus"] = row[0] or 1
            conn.execute(_SQL[(kind, "1m", True)], {**full, "id": obj_id})
            conn.execute(_SQL[(kind, "1h", True)], {**full, "id": obj_id})
