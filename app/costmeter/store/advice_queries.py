"""Named queries for the advice service: every device window the rules look at, read in one
call (chart metrics, the memory its processes held, the CPU they used), and the table of
dismissed and snoozed recommendations.

A window's process figures are averaged per bucket of ``(end - start) / max_points`` (buckets
aligned on multiples of the width): each bucket's mean over its sample times of the sum over
processes. In a dense window each bucket is read by its own index range (a correlated
subquery), so SQLite never sorts the window's rows to group them: three times faster than a
``GROUP BY`` over 86,400 samples, with the same figures; a sparse one is grouped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from costmeter.store.queries import Series, query_metrics
from costmeter.store.store import Store

#: The chart metrics the rules read.
ADVICE_METRICS = ("gpu_util", "mem_util", "mem_used", "power_w")

#: (device id, start, end): one stretch of one GPU.
WindowKey = tuple[int, float, float]


@dataclass(frozen=True, slots=True)
class DeviceWindow:
    """What the store holds about one device over ``[start, end)``."""

    series: Mapping[str, Series]
    #: (bucket start in s, bytes held on the GPU by its processes), sampled buckets only.
    held_mem: tuple[tuple[float, float], ...]
    #: (bucket start in s, CPU % of one core used by the GPU's processes).
    proc_cpu: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class AdviceState:
    key: str
    state: str
    until: float | None


# Buckets of width :w from the one holding :lo up to :hi; each bucket's figure is read by its
# own index range; buckets without a row are left out.
_BUCKETS = (
    "WITH RECURSIVE b(t) AS (SELECT (:lo / :w) * :w UNION ALL SELECT t + :w FROM b"
    " WHERE t + :w < :hi)"
)
_HELD_SQL = (
    f"{_BUCKETS} SELECT t, v FROM (SELECT t,"
    " EXISTS (SELECT 1 FROM gpu_process_samples WHERE device_id = :id"
    " AND ts >= max(t, :lo) AND ts < min(t + :w, :hi)) AS e,"
    " (SELECT sum(gpu_mem) * 1.0 / count(DISTINCT ts) FROM gpu_process_samples"
    " WHERE device_id = :id AND ts >= max(t, :lo) AND ts < min(t + :w, :hi)) AS v FROM b)"
    " WHERE e"
)
_CPU_SQL = (
    f"{_BUCKETS} SELECT t, v FROM (SELECT t,"
    " EXISTS (SELECT 1 FROM process_samples WHERE proc_id IN (SELECT value FROM"
    " json_each(:procs)) AND ts >= max(t, :lo) AND ts < min(t + :w, :hi)) AS e,"
    " (SELECT sum(cpu_pct) * 1.0 / count(DISTINCT ts) FROM process_samples"
    " WHERE proc_id IN (SELECT value FROM json_each(:procs))"
    " AND ts >= max(t, :lo) AND ts < min(t + :w, :hi)) AS v FROM b) WHERE e"
)


# The same figures by one GROUP BY: cheaper while the window holds few samples per bucket
# (every bucket above costs two index probes, however few rows it holds).
_HELD_GROUPED_SQL = (
    "SELECT t, sum(m) * 1.0 / count(DISTINCT ts) FROM (SELECT (ts / :w) * :w AS t, ts,"
    " gpu_mem AS m FROM gpu_process_samples WHERE device_id = :id AND ts >= :lo AND ts < :hi)"
    " GROUP BY t ORDER BY t"
)
_CPU_GROUPED_SQL = (
    "SELECT t, sum(c) * 1.0 / count(DISTINCT ts) FROM (SELECT (ts / :w) * :w AS t, ts,"
    " cpu_pct AS c FROM process_samples WHERE ts >= :lo AND ts < :hi"
    " AND proc_id IN (SELECT value FROM json_each(:procs))) GROUP BY t ORDER BY t"
)
#: Process rows per bucket from which reading bucket by bucket beats grouping.
DENSE_ROWS_PER_BUCKET = 4


def device_windows(
    store: Store,
    windows: Iterable[WindowKey],
    *,
    metrics: Sequence[str] = ADVICE_METRICS,
    max_points: int = 2000,
) -> dict[WindowKey, DeviceWindow]:
    """Each window's series (as ``Store.query_series`` gives them, at most ``max_points``
    points) and process figures, in one call under the store's lock."""
    out: dict[WindowKey, DeviceWindow] = {}
    with store._using():
        conn, cutoffs = store._conn, store._cutoffs()
        for key in windows:
            if key in out:
                continue
            device_id, start, end = key
            series = query_metrics(
                conn, "device", device_id, metrics, start, end, max_points, cutoffs
            )
            lo, hi = math.floor(start * 1000), math.ceil(end * 1000)
            params: dict[str, object] = {
                "id": device_id,
                "lo": lo,
                "hi": hi,
                "w": max(1, (hi - lo) // max_points),
            }
            held: list[tuple[int, float | None]] = []
            cpu: list[tuple[int, float | None]] = []
            procs = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT proc_id FROM gpu_process_samples WHERE device_id = ?"
                    " AND ts >= ? AND ts < ?",
                    (device_id, lo, hi),
                )
            ]
            if procs:  # no process sampled (an exporter, an imported log): nothing to average
                params["procs"] = json.dumps(procs)
                limit = DENSE_ROWS_PER_BUCKET * max_points
                rows = conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM gpu_process_samples WHERE device_id = ?"
                    " AND ts >= ? AND ts < ? LIMIT ?)",
                    (device_id, lo, hi, limit + 1),
                ).fetchone()[0]
                dense = rows > limit
                held_sql, cpu_sql = (
                    (_HELD_SQL, _CPU_SQL) if dense else (_HELD_GROUPED_SQL, _CPU_GROUPED_SQL)
                )
                held = conn.execute(held_sql, params).fetchall()
                cpu = conn.execute(cpu_sql, params).fetchall()
            out[key] = DeviceWindow(series, _seconds(held), _seconds(cpu))
    return out


def _seconds(rows: list[tuple[int, float | None]]) -> tuple[tuple[float, float], ...]:
    """Bucket starts in seconds; a bucket whose samples all lack the figure (NVML reports no
    per-process memory under MIG or WDDM) is NaN, unknown, not a crash."""
    return tuple((t / 1000, math.nan if v is None else float(v)) for t, v in rows)


def advice_states(store: Store) -> list[AdviceState]:
    """Every dismissed or snoozed recommendation."""
    with store._using():
        rows = store._conn.execute("SELECT key, state, until FROM advice_state").fetchall()
    return [AdviceState(str(k), str(s), None if u is None else float(u)) for k, s, u in rows]


def set_advice_state(
    store: Store, key: str, rule: str, state: str, until: float | None, created: float
) -> None:
    """Dismiss or snooze ``key`` (replacing what was said about it before)."""
    with store._using("written"):
        store._conn.execute(
            "INSERT INTO advice_state (key, rule, state, until, created) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET rule = excluded.rule, state = excluded.state,"
            " until = excluded.until, created = excluded.created",
            (key, rule, state, until, created),
        )
        if store._conn.in_transaction:
            store._conn.commit()


def clear_advice_state(store: Store, key: str) -> None:
    """Show ``key`` again."""
    with store._using("written"):
        store._conn.execute("DELETE FROM advice_state WHERE key = ?", (key,))
        if store._conn.in_transaction:
            store._conn.commit()
