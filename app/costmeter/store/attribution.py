"""Who used what: every GPU tick split over the processes on it, CPU time per process, and
the ticks of GPUs that ran nothing, with the processes' owners and runs (issue 13).

Read-only. A window is read in pieces: whole minutes from ``gpu_share_1m`` (the per-process
shares the writer keeps, see ``store.share_rollup``) and ``device_rollup_1m``, the partial
minutes at its edges from the raw rows; all of it from raw rows when a bucket width is not a
whole number of minutes. GPU time is attributed as far back as the share minutes reach (they
are kept as long as the minute rollups, ``covered_from``); the partial minutes at the edges
of a window older than the raw rows have none, and are left to the chargeback's "gap" (under
a minute per device). CPU time comes from raw process samples only (``cpu_covered_from``).
Shares of a tick as ``store.share_rollup`` says; ``dt`` and energy
are the tick's own; a tick is idle when ``gpu_util < IDLE_UTIL_PERCENT`` (as the rollups say).

- free: device time with no process on it: per raw tick (the ticks with no process row), per
  whole minute the device's time less the processes' shares. It is split between the Costmeter
  runs placed on that GPU at the time (``runs.gpus``; ``1 / holders`` each, as a run's cost
  counts a placed empty GPU), or goes to nobody; within a whole minute the split is by how
  much of the minute each placement covers.
- CPU: core-seconds from the increase of each process's cumulative ``cpu_time_s`` (which the
  recorder always writes), read with a few primary-key steps per process: from the last sample
  before the window (looked for up to ``CPU_LOOKBACK_MS`` back) to the last in it, per bucket
  at each bucket boundary. A process created in the window counts its first sample's whole
  ``cpu_time_s``; one created before it with no sample just before counts from its first
  sample in the window.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from costmeter.core.owner import OWNER_FIELDS, SOURCES, Owner
from costmeter.store.retention import Cutoffs
from costmeter.store.rollup import MINUTE_MS
from costmeter.store.runs import CREATE_SLACK_S
from costmeter.store.schema import OWNER_COLUMNS
from costmeter.store.share_rollup import SHARES_SQL

#: How far before the window the previous sample of a process is looked for (CPU deltas).
CPU_LOOKBACK_MS = 300_000


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """One row of ``processes``, with what it belongs to."""

    proc_id: int
    host: str
    pid: int
    create_time: float
    name: str
    cmdline: str
    #: From the owner columns; ``user`` is None when stored as "?" or "".
    owner: Owner
    #: The Costmeter run: ``runs.handle_key == owner.run_key``, else a run on the same host
    #: whose ``pids`` hold this pid and whose lifetime holds its start.
    run_id: int | None


@dataclass(frozen=True, slots=True)
class GpuShare:
    """One process's share of one GPU, summed over the window (or bucket)."""

    uuid: str
    proc_id: int
    bucket: float | None
    #: Sum of share x dt over ticks where the GPU was not idle.
    busy_s: float
    #: Sum of share x dt over idle ticks (held, running nothing).
    held_idle_s: float
    #: Sum of share x the tick's energy, and the part of it on idle ticks.
    energy_j: float
    idle_energy_j: float


@dataclass(frozen=True, slots=True)
class GpuFree:
    """Ticks of a GPU with no process on it, summed (per run placed on it, if any)."""

    uuid: str
    bucket: float | None
    seconds: float
    energy_j: float
    #: A Costmeter run placed on this GPU then (held idle), else None.
    run_id: int | None


@dataclass(frozen=True, slots=True)
class CpuUse:
    """A process's CPU core-seconds in the window (or bucket)."""

    proc_id: int
    host: str
    bucket: float | None
    core_s: float


@dataclass(frozen=True, slots=True)
class Attribution:
    shares: tuple[GpuShare, ...]
    free: tuple[GpuFree, ...]
    cpu: tuple[CpuUse, ...]
    #: Every proc_id named above.
    processes: Mapping[int, ProcessRecord]
    #: Run id -> tags, for every run named above (in ``processes`` or ``free``).
    run_tags: Mapping[int, Mapping[str, str]]
    #: Where GPU attribution starts: the oldest raw sample or minute rollup of any device, not
    #: before the shares were first kept (None: no device samples at all).
    covered_from: float | None
    #: Where CPU attribution starts: the oldest raw host sample, not before the raw cut-off
    #: (None: no raw host samples at all).
    cpu_covered_from: float | None = None


_FREE_SQL = """
WITH placed(device_id, run_id, lo, hi) AS (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
        json_extract(value, '$[2]'), json_extract(value, '$[3]')
    FROM json_each(:placed)
), f AS (
    SELECT d.device_id, {bucket} AS bucket, d.ts, d.dt_ms, d.energy_mj
    FROM device_samples d
    WHERE d.{devices} AND d.ts >= :lo AND d.ts < :hi AND NOT EXISTS (
        SELECT 1 FROM gpu_process_samples g WHERE g.device_id = d.device_id AND g.ts = d.ts
    )
), h AS (
    SELECT f.*, p.run_id,
        (SELECT count(*) FROM placed q
            WHERE q.device_id = f.device_id AND f.ts > q.lo AND f.ts <= q.hi) AS holders
    FROM f LEFT JOIN placed p ON p.device_id = f.device_id AND f.ts > p.lo AND f.ts <= p.hi
)
SELECT device_id, bucket, run_id,
    coalesce(sum(1.0 * dt_ms / max(holders, 1)), 0),
    coalesce(sum(1.0 * energy_mj / max(holders, 1)), 0)
FROM h GROUP BY device_id, bucket, run_id
"""

_CPU_SQL = """
WITH w AS (
    SELECT p.id, p.create_time, (
        SELECT s.ts FROM process_samples s
        WHERE s.proc_id = p.id AND s.ts >= :lo AND s.ts < :hi ORDER BY s.ts LIMIT 1
    ) AS first_ts
    FROM processes p
)
SELECT w.id, w.create_time, w.first_ts,
    (SELECT s.cpu_time_s FROM process_samples s WHERE s.proc_id = w.id AND s.ts = w.first_ts),
    (SELECT s.cpu_time_s FROM process_samples s WHERE s.proc_id = w.id AND s.ts < :lo
        AND s.ts >= :lo - :lookback ORDER BY s.ts DESC LIMIT 1),
    (SELECT s.ts FROM process_samples s WHERE s.proc_id = w.id AND s.ts < :hi
        ORDER BY s.ts DESC LIMIT 1),
    (SELECT s.cpu_time_s FROM process_samples s WHERE s.proc_id = w.id AND s.ts < :hi
        ORDER BY s.ts DESC LIMIT 1)
FROM w WHERE w.first_ts IS NOT NULL
"""

#: ``cpu_time_s`` of the last sample before each (process, time) pair in ``:pairs``.
_CPU_AT_SQL = """
SELECT json_extract(j.value, '$[0]') AS proc, json_extract(j.value, '$[1]') AS t, (
    SELECT s.cpu_time_s FROM process_samples s
    WHERE s.proc_id = json_extract(j.value, '$[0]') AND s.ts < json_extract(j.value, '$[1]')
    ORDER BY s.ts DESC LIMIT 1)
FROM json_each(:pairs) j
"""

_DEVICES = "device_id IN (SELECT id FROM devices)"
#: The GPUs whose free time is read when ``attribution`` is asked for some only (``free_of``).
_FREE_DEVICES = "device_id IN (SELECT value FROM json_each(:free_ids))"
_SHARES_MINUTES_SQL = f"""
SELECT device_id, proc_id, {{bucket}} AS bucket, sum(busy_ms), sum(idle_ms), sum(energy_mj),
    sum(idle_energy_mj)
FROM gpu_share_1m WHERE {_DEVICES} AND ts >= :lo AND ts < :hi
GROUP BY device_id, proc_id, bucket
"""
_FREE_MINUTES_FROM = """
FROM device_rollup_1m r LEFT JOIN (
    SELECT device_id, ts, sum(busy_ms + idle_ms) AS ms, sum(energy_mj) AS e FROM gpu_share_1m
    WHERE {devices} AND ts >= :lo AND ts < :hi GROUP BY device_id, ts
) s ON s.device_id = r.device_id AND s.ts = r.ts
WHERE r.{devices} AND r.ts >= :lo AND r.ts < :hi
"""
#: Minute by minute, for the GPUs a run was placed on (their minutes are split in Python).
_FREE_MINUTES_SQL = f"""
SELECT r.device_id, r.ts, r.dt_ms, r.energy_mj, coalesce(s.ms, 0), coalesce(s.e, 0)
{_FREE_MINUTES_FROM} AND r.device_id IN (SELECT value FROM json_each(:placed))
"""
#: Summed in SQL for every other GPU: a month of 137 GPUs is 6 million minutes.
_FREE_MINUTES_SUM_SQL = f"""
SELECT device_id, bucket, sum(ms), sum(mj) FROM (
    SELECT r.device_id, {{bucket}} AS bucket, r.dt_ms - coalesce(s.ms, 0) AS ms,
        max(0, coalesce(r.energy_mj, 0) - coalesce(s.e, 0)) AS mj
    {_FREE_MINUTES_FROM} AND r.device_id NOT IN (SELECT value FROM json_each(:placed))
        AND r.dt_ms - coalesce(s.ms, 0) > 1e-6 * max(r.dt_ms, 1)
) GROUP BY device_id, bucket
"""

_OWNER_COLS = ", ".join(f"p.{name}" for name, _ in OWNER_COLUMNS)
_PROCESSES_SQL = f"""
SELECT p.id, h.hostname, p.pid, p.create_time, p.name, p.cmdline, p.user, {_OWNER_COLS}
FROM processes p JOIN hosts h ON h.id = p.host_id
WHERE p.id IN (SELECT value FROM json_each(:ids))
"""


def _bucket_expr(bucket_ms: int | None, column: str) -> str:
    if bucket_ms is None:
        return "NULL"
    return f"({column} / {bucket_ms}) * {bucket_ms}"


def _bucket(value: int | None) -> float | None:
    return None if value is None else value / 1000


def _bounds(start: float, end: float) -> tuple[int, int]:
    # The same window as ``store.usage``: samples with ts in [floor(start), ceil(end)) ms.
    return math.floor(start * 1000), math.ceil(end * 1000)


def _pieces(lo: int, hi: int, bucket_ms: int | None) -> list[tuple[bool, int, int]]:
    """(from whole minutes?, lo, hi) parts of ``[lo, hi)``, empty ones dropped."""
    a, b = -(-lo // MINUTE_MS) * MINUTE_MS, hi - hi % MINUTE_MS
    if a >= b or (bucket_ms is not None and bucket_ms % MINUTE_MS):
        parts = [(False, lo, hi)]
    else:
        parts = [(False, lo, a), (True, a, b), (False, b, hi)]
    return [p for p in parts if p[2] > p[1]]


def attribution(
    conn: sqlite3.Connection,
    start: float,
    end: float,
    cutoffs: Cutoffs,
    *,
    bucket_s: float | None = None,
    free_of: Callable[[frozenset[str]], Collection[str]] | None = None,
) -> Attribution:
    """Everything the chargeback needs for ``[start, end)``; see the module's docstring.

    ``free_of``: when given, free time is read only for the GPUs (UUIDs) it names, given the
    GPUs some process held in the window, and for every GPU a run was placed on; the rest of
    ``free`` is left out (reading every GPU-minute is most of the cost over a long window).
    """
    if bucket_s is not None and not (math.isfinite(bucket_s) and bucket_s > 0):
        raise ValueError("The bucket width must be a positive number of seconds.")
    bucket_ms = None if bucket_s is None else max(1, round(bucket_s * 1000))
    lo, hi = _bounds(start, end)
    meta = dict(conn.execute("SELECT key, value FROM store_meta").fetchall())
    # As far back as the share minutes reach (not only where raw rows are kept): the partial
    # minutes at the edges of an older window have no raw rows and are lost to the "gap".
    share_from = max(int(meta.get("share_from_ms", 0)), cutoffs.minute)
    devices = {
        did: (uuid, hid, idx)
        for did, uuid, hid, idx in conn.execute("SELECT id, uuid, host_id, idx FROM devices")
    }
    hosts = dict(conn.execute("SELECT id, hostname FROM hosts").fetchall())
    runs = _runs(conn, start, end)
    placed = _placements(runs, devices, hosts, end)

    shares: dict[tuple[int, int, int | None], list[float]] = {}
    free: dict[tuple[int, int | None, int | None], list[float]] = {}
    pieces = _pieces(max(lo, share_from), hi, bucket_ms)
    for minutes, a, b in pieces:
        if minutes:
            sql = _SHARES_MINUTES_SQL.format(bucket=_bucket_expr(bucket_ms, "ts"))
        else:
            sql = SHARES_SQL.format(where=_DEVICES, bucket=_bucket_expr(bucket_ms, "g.ts"))
        for did, proc_id, bucket, *values in conn.execute(sql, {"lo": a, "hi": b}):
            _add(shares, (did, proc_id, bucket), values)
    where, ids = _DEVICES, {}
    if free_of is not None:
        wanted = _free_wanted(free_of, devices, shares, placed)
        where, ids = _FREE_DEVICES, {"free_ids": json.dumps(wanted)}
        if not wanted:
            pieces = []
    for minutes, a, b in pieces:
        params = {"lo": a, "hi": b, **ids}
        if minutes:
            _free_minutes(conn, free, placed, params, bucket_ms, where, cutoffs.raw)
        else:
            sql = _FREE_SQL.format(bucket=_bucket_expr(bucket_ms, "d.ts"), devices=where)
            for did, bucket, run_id, ms, mj in conn.execute(
                sql, {**params, "placed": json.dumps(placed)}
            ):
                _add(free, (did, bucket, run_id), (ms, mj))

    cpu_rows = _cpu(conn, lo, hi, bucket_ms)
    named = {k[1] for k, v in shares.items() if any(v)} | {r[0] for r in cpu_rows}
    processes = _processes(conn, sorted(named), runs)
    share_out = tuple(
        GpuShare(
            devices[did][0],
            proc,
            _bucket(bucket),
            v[0] / 1000,
            v[1] / 1000,
            v[2] / 1000,
            v[3] / 1000,
        )
        for (did, proc, bucket), v in sorted(shares.items(), key=_order)
        if any(v) and did in devices and proc in processes
    )
    free_out = tuple(
        GpuFree(devices[did][0], _bucket(bucket), v[0] / 1000, v[1] / 1000, run_id)
        for (did, bucket, run_id), v in sorted(free.items(), key=_order)
        if v[0] > 0 and did in devices
    )
    cpu = tuple(
        CpuUse(proc_id, processes[proc_id].host, _bucket(b), core_s)
        for proc_id, b, core_s in cpu_rows
        if proc_id in processes
    )
    runs_named = {p.run_id for p in processes.values()} | {f.run_id for f in free_out}
    return Attribution(
        shares=share_out,
        free=free_out,
        cpu=cpu,
        processes=processes,
        run_tags={r.id: r.tags for r in runs.values() if r.id in runs_named},
        covered_from=_covered_from(conn, devices, share_from),
        cpu_covered_from=_oldest(conn, "host_samples", "host_id", hosts, cutoffs.raw),
    )


def _free_wanted(
    free_of: Callable[[frozenset[str]], Collection[str]],
    devices: Mapping[int, tuple[str, int, int]],
    shares: Mapping[tuple[int, int, int | None], Sequence[float]],
    placed: Sequence[tuple[int, int, int, int]],
) -> list[int]:
    """Device ids whose free time to read: those ``free_of`` names, given the GPUs some process
    held, and every GPU a run was placed on (its free time names the run)."""
    by_uuid = {uuid: did for did, (uuid, _host, _idx) in devices.items()}
    held = frozenset(devices[k[0]][0] for k, v in shares.items() if any(v) and k[0] in devices)
    wanted = {by_uuid[u] for u in free_of(held) if u in by_uuid} | {p[0] for p in placed}
    return sorted(wanted)


def _order(item: tuple[tuple[Any, ...], Any]) -> tuple[Any, ...]:
    return tuple(-1 if k is None else k for k in item[0])


def _add(into: dict[Any, list[float]], key: Any, values: Sequence[float]) -> None:
    row = into.get(key)
    if row is None:
        into[key] = [float(v or 0.0) for v in values]
    else:
        for i, v in enumerate(values):
            row[i] += v or 0.0


def _free_minutes(
    conn: sqlite3.Connection,
    free: dict[tuple[int, int | None, int | None], list[float]],
    placed: Sequence[tuple[int, int, int, int]],
    params: Mapping[str, Any],
    bucket_ms: int | None,
    where: str,
    raw_from: int,
) -> None:
    """Free time of whole minutes: the device's time less its processes' shares, split by
    how much of the minute each run placed on the GPU covers. A minute a placement starts or
    ends in is read tick by tick instead where its raw rows are kept (from ``raw_from``), so
    each free tick goes to the runs that held the GPU at that tick, as a run's own cost counts
    it (``store.runs``): split by coverage, a run that ended at second 1 of a minute with free
    ticks later in it was charged part of them, and one that started with a free tick got
    only part of that tick."""
    by_device: dict[int, list[tuple[int, int, int]]] = {}
    for did, run_id, a, b in placed:
        by_device.setdefault(did, []).append((run_id, a, b))
    params = {**params, "placed": json.dumps(sorted(by_device))}
    sql = _FREE_MINUTES_SUM_SQL.format(bucket=_bucket_expr(bucket_ms, "r.ts"), devices=where)
    for did, bucket, ms, mj in conn.execute(sql, params):
        _add(free, (did, bucket, None), (ms, mj))
    sql = _FREE_MINUTES_SQL.format(devices=where)
    for did, m, dt_ms, energy_mj, used_ms, used_mj in conn.execute(sql, params):
        ms = dt_ms - used_ms
        if ms <= 1e-6 * max(dt_ms, 1):  # float error of shares that sum to the whole minute
            continue
        mj = max(0.0, (energy_mj or 0) - used_mj)
        bucket = None if bucket_ms is None else (m // bucket_ms) * bucket_ms
        runs = by_device.get(did)
        if not runs:
            _add(free, (did, bucket, None), (ms, mj))
            continue
        if m >= raw_from and any(m < x < m + MINUTE_MS for _, a, b in runs for x in (a, b)):
            _free_ticks(conn, free, placed, did, m, bucket_ms)
            continue
        for holder, part in _split_minute(m, runs):
            _add(free, (did, bucket, holder), (ms * part, mj * part))


def _free_ticks(
    conn: sqlite3.Connection,
    free: dict[tuple[int, int | None, int | None], list[float]],
    placed: Sequence[tuple[int, int, int, int]],
    did: int,
    m: int,
    bucket_ms: int | None,
) -> None:
    """Free time of device ``did`` in the minute from ``m``, tick by tick from its raw rows."""
    sql = _FREE_SQL.format(bucket=_bucket_expr(bucket_ms, "d.ts"), devices=_FREE_DEVICES)
    params = {
        "lo": m,
        "hi": m + MINUTE_MS,
        "free_ids": json.dumps([did]),
        "placed": json.dumps([p for p in placed if p[0] == did]),
    }
    for did_, bucket, run_id, ms, mj in conn.execute(sql, params):
        _add(free, (did_, bucket, run_id), (ms, mj))


def _split_minute(m: int, runs: Sequence[tuple[int, int, int]]) -> list[tuple[int | None, float]]:
    """Parts of the minute ``[m, m + 1 min)`` by holder: each stretch covered by k placements
    ``(a, b]`` goes 1/k to each; an uncovered one to None."""
    end = m + MINUTE_MS
    edges = sorted({m, end, *(x for _, a, b in runs for x in (a, b) if m < x < end)})
    out: dict[int | None, float] = {}
    for x, y in itertools.pairwise(edges):
        holders = [r for r, a, b in runs if a < y and b > x]
        part = (y - x) / MINUTE_MS
        if not holders:
            out[None] = out.get(None, 0.0) + part
        for r in holders:
            out[r] = out.get(r, 0.0) + part / len(holders)
    return list(out.items())


def _cpu(
    conn: sqlite3.Connection, lo: int, hi: int, bucket_ms: int | None
) -> list[tuple[int, int | None, float]]:
    """(proc_id, bucket, core-seconds) of every process with samples in ``[lo, hi)``."""
    procs = conn.execute(_CPU_SQL, {"lo": lo, "hi": hi, "lookback": CPU_LOOKBACK_MS}).fetchall()
    at: dict[tuple[int, int], float | None] = {}
    if bucket_ms is not None:
        pairs = [
            (proc_id, t)
            for proc_id, _c, first_ts, _f, _b, last_ts, _l in procs
            for t in range((first_ts // bucket_ms + 1) * bucket_ms, last_ts + 1, bucket_ms)
        ]
        if pairs:
            at = {(p, t): v for p, t, v in conn.execute(_CPU_AT_SQL, {"pairs": json.dumps(pairs)})}
    out = []
    for proc_id, create_time, first_ts, first_cpu, before, last_ts, last_cpu in procs:
        if before is not None:
            value = before
        elif create_time * 1000 >= lo:
            value = 0.0
        else:
            value = first_cpu or 0.0
        bucket = None if bucket_ms is None else (first_ts // bucket_ms) * bucket_ms
        if bucket_ms is not None:
            for t in range((first_ts // bucket_ms + 1) * bucket_ms, last_ts + 1, bucket_ms):
                now = at.get((proc_id, t))
                if now is not None:
                    out.append((proc_id, bucket, max(0.0, now - value)))
                    value = now
                bucket = t
        out.append((proc_id, bucket, max(0.0, (last_cpu or value) - value)))
    return out


@dataclass(frozen=True, slots=True)
class _Run:
    id: int
    handle_key: str | None
    host: str | None
    started: float | None
    ended: float | None
    gpus: tuple[int, ...]
    pids: frozenset[int]
    tags: Mapping[str, str]


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _tags(text: str | None) -> dict[str, str]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _runs(conn: sqlite3.Connection, start: float, end: float) -> dict[int, _Run]:
    """Runs that lived during the window, and every run with a handle (found by run_key)."""
    rows = conn.execute(
        "SELECT id, handle_key, coalesce(node, host), started, ended, gpus, pids, tags FROM runs"
        " WHERE handle_key IS NOT NULL"
        " OR (started IS NOT NULL AND started < ? AND coalesce(ended, ?) > ?)",
        (end, end, start),
    ).fetchall()
    out = {}
    for rid, key, host, started, ended, gpus, pids, tags in rows:
        out[rid] = _Run(
            id=rid,
            handle_key=key,
            host=host,
            started=started,
            ended=ended,
            gpus=tuple(g for g in _json_list(gpus) if isinstance(g, int)),
            pids=frozenset(p for p in _json_list(pids) if isinstance(p, int)),
            tags=_tags(tags),
        )
    return out


def _placements(
    runs: Mapping[int, _Run],
    devices: Mapping[int, tuple[str, int, int]],
    hosts: Mapping[int, str],
    end: float,
) -> list[tuple[int, int, int, int]]:
    """(device id, run id, from ms, to ms] for each GPU a run was placed on while it lived."""
    by_place: dict[tuple[str, int], list[int]] = {}
    for did, (_uuid, hid, idx) in devices.items():
        by_place.setdefault((hosts.get(hid, ""), idx), []).append(did)
    out = []
    for run in runs.values():
        if run.started is None or run.host is None:
            continue
        lo = round(run.started * 1000)
        hi = round((run.ended if run.ended is not None else end) * 1000)
        for idx in run.gpus:
            for did in by_place.get((run.host, idx), ()):
                out.append((did, run.id, lo, hi))
    return out


def _owner(row: Sequence[Any]) -> Owner:
    """An owner from ``processes.user`` and the owner columns (in ``OWNER_COLUMNS`` order)."""
    user, *values = row
    columns = dict(zip((name for name, _ in OWNER_COLUMNS), values, strict=True))
    unreadable = columns.pop("unreadable")
    fields: dict[str, Any] = {name: columns.get(name) for name in OWNER_FIELDS}
    fields["user"] = None if user in (None, "", "?") else user
    sources = frozenset(s for s in (unreadable or "").split(",") if s in SOURCES)
    return Owner(**fields, unreadable=sources)


def _processes(
    conn: sqlite3.Connection, proc_ids: Sequence[int], runs: Mapping[int, _Run]
) -> dict[int, ProcessRecord]:
    if not proc_ids:
        return {}
    by_key = {r.handle_key: r.id for r in runs.values() if r.handle_key}
    out = {}
    for row in conn.execute(_PROCESSES_SQL, {"ids": json.dumps(list(proc_ids))}):
        proc_id, host, pid, create_time, name, cmdline = row[:6]
        owner = _owner(row[6:])
        run_id = by_key.get(owner.run_key) if owner.run_key else None
        if run_id is None:
            run_id = _run_by_pid(runs.values(), host, pid, create_time)
        out[proc_id] = ProcessRecord(
            proc_id=proc_id,
            host=host,
            pid=pid,
            create_time=create_time,
            name=name or "",
            cmdline=cmdline or "",
            owner=owner,
            run_id=run_id,
        )
    return out


def _run_by_pid(runs: Iterable[_Run], host: str, pid: int, create_time: float) -> int | None:
    """The run whose ``pids`` hold ``pid`` on ``host`` and whose lifetime holds the process's
    start (as ``store.runs`` finds a run's processes); the newest such run."""
    found: tuple[float, int] | None = None
    for run in runs:
        if pid not in run.pids or run.host != host or run.started is None:
            continue
        if create_time:
            lo = run.started - CREATE_SLACK_S
            hi = (run.ended if run.ended is not None else math.inf) + CREATE_SLACK_S
            if not lo <= create_time <= hi:
                continue
        if found is None or (run.started, run.id) > found:
            found = (run.started, run.id)
    return None if found is None else found[1]


def _covered_from(
    conn: sqlite3.Connection, devices: Iterable[int], share_from: int
) -> float | None:
    """Per device, its oldest raw sample, or its oldest minute rollup's start when the raw
    samples begin after that minute (pruned); the oldest of the devices, but not before the
    per-process shares start (``share_from_ms``, the minute cut-off)."""
    found = []
    for did in devices:
        raw = _oldest(conn, "device_samples", "device_id", (did,), 0)
        minute = _oldest(conn, "device_rollup_1m", "device_id", (did,), 0)
        if raw is None or (minute is not None and minute + MINUTE_MS / 1000 <= raw):
            raw = minute
        if raw is not None:
            found.append(raw)
    return max(min(found), share_from / 1000) if found else None


def _oldest(
    conn: sqlite3.Connection, table: str, column: str, ids: Iterable[int], floor_ms: int
) -> float | None:
    """The oldest ``ts`` in ``table`` (one primary-key step per id), not before ``floor_ms``;
    seconds, or None when the table has no row for these ids."""
    oldest = [
        row[0]
        for i in ids
        if (
            row := conn.execute(f"SELECT min(ts) FROM {table} WHERE {column} = ?", (i,)).fetchone()
        )[0]
        is not None
    ]
    if not oldest:
        return None
    return max(min(oldest), floor_ms) / 1000
