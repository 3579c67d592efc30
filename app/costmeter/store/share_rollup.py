"""``gpu_share_1m``: each process's share of each GPU, summed per minute (issue 13).

Splitting every raw tick over its processes at query time costs seconds for a day of 8 GPUs
(two joins and a sort over every process row), so the writer keeps the sums per (device,
minute, process) as it goes, the way it keeps the device rollups: ``Store.attribution`` reads
whole minutes from here and only the partial minutes at a window's edges from the raw rows.

A process's share of one tick is the mean of its memory share and its SM share where each is
known for every process on the GPU and sums to more than zero (as ``cost.run_cost.gpu_share``
splits runs), else one over the number of processes. The tick counts as idle when its stored
``gpu_util`` is under ``IDLE_UTIL_PERCENT``. The same rule is written twice, in Python
(``tick_shares``, for ticks as the writer adds them) and in SQL (``SHARES_SQL``, for minutes
recomputed from raw rows and for the edges of a query), from the same stored integers, so
both give the same sums.

Fresh ticks (newer than the device's newest stored sample) are added to their minute's sums
(an upsert); a minute that gets a tick at or before that (a re-sent backfill, a duplicate)
is recomputed from its raw rows instead, as ``update_rollups`` does. Minutes before the raw
cut-off are left alone (their raw rows are partly deleted). Kept as long as minute rollups.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

from costmeter.core.model import IDLE_UTIL_PERCENT
from costmeter.store.rollup import MINUTE_MS

#: Sums per (device, minute start, process); the four values of a row of the table.
ShareSums = dict[tuple[int, int, int], list[float]]

CREATE_SQL = """CREATE TABLE gpu_share_1m (
    device_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    proc_id INTEGER NOT NULL,
    busy_ms REAL NOT NULL,
    idle_ms REAL NOT NULL,
    energy_mj REAL NOT NULL,
    idle_energy_mj REAL NOT NULL,
    PRIMARY KEY (device_id, ts, proc_id)
) WITHOUT ROWID"""

_IDLE = f"d.gpu_util < {IDLE_UTIL_PERCENT!r}"

#: Per-process sums over raw ticks in ``[:lo, :hi)`` (of the devices in ``{where}``), grouped
#: by ``{bucket}`` (an expression of ``g.ts``). Columns: device_id, proc_id, bucket, busy_ms,
#: idle_ms, energy_mj, idle_energy_mj.
SHARES_SQL = f"""
WITH tot AS (
    SELECT device_id, ts, count(*) AS n,
        CASE WHEN count(gpu_mem) = count(*) AND sum(gpu_mem) > 0
            THEN 1.0 * sum(gpu_mem) END AS mem,
        CASE WHEN count(sm_util) = count(*) AND sum(sm_util) > 0
            THEN 1.0 * sum(sm_util) END AS sm
    FROM gpu_process_samples
    WHERE {{where}} AND ts >= :lo AND ts < :hi
    GROUP BY device_id, ts
), s AS (
    SELECT g.device_id, g.proc_id, {{bucket}} AS bucket, d.dt_ms, d.energy_mj,
        coalesce({_IDLE}, 0) AS idle,
        CASE
            WHEN t.mem IS NOT NULL AND t.sm IS NOT NULL
                THEN (g.gpu_mem / t.mem + g.sm_util / t.sm) / 2
            WHEN t.mem IS NOT NULL THEN g.gpu_mem / t.mem
            WHEN t.sm IS NOT NULL THEN g.sm_util / t.sm
            ELSE 1.0 / t.n
        END AS share
    FROM tot t
    JOIN gpu_process_samples g ON g.device_id = t.device_id AND g.ts = t.ts
    JOIN device_samples d ON d.device_id = t.device_id AND d.ts = t.ts
)
SELECT device_id, proc_id, bucket,
    coalesce(sum(CASE WHEN NOT idle THEN share * dt_ms END), 0),
    coalesce(sum(CASE WHEN idle THEN share * dt_ms END), 0),
    coalesce(sum(share * energy_mj), 0),
    coalesce(sum(CASE WHEN idle THEN share * energy_mj END), 0)
FROM s GROUP BY device_id, proc_id, bucket
"""

_MINUTE = f"(g.ts / {MINUTE_MS}) * {MINUTE_MS}"
_INSERT = (
    "INSERT OR REPLACE INTO gpu_share_1m (device_id, proc_id, ts, busy_ms, idle_ms, energy_mj,"
    " idle_energy_mj) "
)
_RECOMPUTE_SQL = _INSERT + SHARES_SQL.format(where="device_id = :id", bucket=_MINUTE)
_REBUILD_SQL = _INSERT + SHARES_SQL.format(
    where="device_id IN (SELECT id FROM devices)", bucket=_MINUTE
)
_UPSERT_SQL = (
    "INSERT INTO gpu_share_1m VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
    " busy_ms = busy_ms + excluded.busy_ms, idle_ms = idle_ms + excluded.idle_ms,"
    " energy_mj = energy_mj + excluded.energy_mj,"
    " idle_energy_mj = idle_energy_mj + excluded.idle_energy_mj"
)


def tick_shares(
    sums: ShareSums,
    did: int,
    ts: int,
    dt: int,
    util: int | None,
    energy: int | None,
    procs: Sequence[tuple[int, int | None, int | None]],
) -> None:
    """Add one tick's shares to ``sums``, from its stored values (ms, %, mJ) and its
    processes as (proc_id, gpu_mem, sm_util) in their stored form."""
    if not dt or not procs:
        return
    idle = util is not None and util < IDLE_UTIL_PERCENT
    if len(procs) == 1:  # the whole tick, whichever rule applies (x / x is exactly 1.0)
        _add_share(sums, (did, ts - ts % MINUTE_MS, procs[0][0]), 1.0, dt, energy, idle)
        return
    mem_total = sm_total = 0
    if all(p[1] is not None for p in procs):
        mem_total = sum(p[1] or 0 for p in procs)
    if all(p[2] is not None for p in procs):
        sm_total = sum(p[2] or 0 for p in procs)
    minute = ts - ts % MINUTE_MS
    for proc_id, mem, sm in procs:
        if mem_total > 0 and sm_total > 0:
            share = ((mem or 0) / mem_total + (sm or 0) / sm_total) / 2
        elif mem_total > 0:
            share = (mem or 0) / mem_total
        elif sm_total > 0:
            share = (sm or 0) / sm_total
        else:
            share = 1.0 / len(procs)
        _add_share(sums, (did, minute, proc_id), share, dt, energy, idle)


def _add_share(
    sums: ShareSums,
    key: tuple[int, int, int],
    share: float,
    dt: int,
    energy: int | None,
    idle: bool,
) -> None:
    row = sums.get(key)
    if row is None:
        row = sums[key] = [0.0, 0.0, 0.0, 0.0]
    part = share * dt
    e = 0.0 if energy is None else share * energy
    if idle:
        row[1] += part
        row[3] += e
    else:
        row[0] += part
    row[2] += e


def write_share_minutes(
    conn: sqlite3.Connection,
    sums: ShareSums,
    stale: Iterable[tuple[int, int]],
    raw_cutoff: int = 0,
) -> None:
    """Add ``sums`` to the table, except for the ``stale`` (device, minute) pairs, which are
    recomputed from their raw rows (after the batch's rows were written)."""
    redo = {(did, m) for did, m in stale if m >= raw_cutoff}
    conn.executemany(
        _UPSERT_SQL,
        [
            (did, m, proc, *values)
            for (did, m, proc), values in sums.items()
            if m >= raw_cutoff and (did, m) not in redo
        ],
    )
    for did, m in sorted(redo):
        recompute_minute(conn, did, m)


def recompute_minute(conn: sqlite3.Connection, did: int, minute: int) -> None:
    conn.execute("DELETE FROM gpu_share_1m WHERE device_id = ? AND ts = ?", (did, minute))
    conn.execute(_RECOMPUTE_SQL, {"id": did, "lo": minute, "hi": minute + MINUTE_MS})


def stale_minutes(
    spans: Mapping[int, Sequence[int]],
    last_stored: Mapping[int, int],
    duplicates: Iterable[tuple[int, int]],
) -> set[tuple[int, int]]:
    """The (device, minute) pairs a batch touched that may hold rows stored before it: every
    minute of the batch's span (ms) up to the device's newest stored sample when the batch
    reaches back to it, and the minutes of ticks the batch holds twice."""
    out = {(did, ts - ts % MINUTE_MS) for did, ts in duplicates}
    for did, (first, last) in spans.items():
        newest = last_stored.get(did, -1)
        if first <= newest:
            top = min(last, newest)
            out.update((did, m) for m in range(first - first % MINUTE_MS, top + 1, MINUTE_MS))
    return out


def rebuild_shares(conn: sqlite3.Connection, raw_cutoff: int = 0) -> None:
    """Recompute every minute that raw rows are left for (a migration, a bulk load)."""
    conn.execute("DELETE FROM gpu_share_1m WHERE ts >= ?", (raw_cutoff,))
    conn.execute(_REBUILD_SQL, {"lo": raw_cutoff, "hi": 2**62})
