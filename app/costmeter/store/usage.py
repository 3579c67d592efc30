"""Per-device and per-host totals over a period, from whichever resolution still covers it.

The range is split at the retention cut-offs: raw rows from the raw cut-off on, 1-minute rollups
from the minute cut-off to the raw cut-off, 1-hour rollups before that. In the rollup parts a bucket
counts when its start lies in the range, so totals over bucket-aligned ranges are exact.
"""

from __future__ import annotations

import math
import sqlite3

from costmeter.core.model import DeviceUsage, HostUsage
from costmeter.store.retention import Cutoffs
from costmeter.store.rollup import raw_sums, rollup_sums


def _totals(
    conn: sqlite3.Connection,
    kind: str,
    obj_id: int,
    s_ms: int,
    e_ms: int,
    cutoffs: Cutoffs,
    cpus: int = 0,
) -> dict[str, float]:
    key = f"{kind}_id"
    parts = (
        (f"{kind}_samples", raw_sums(kind), max(s_ms, cutoffs.raw), e_ms),
        (f"{kind}_rollup_1m", rollup_sums(kind), max(s_ms, cutoffs.minute), min(e_ms, cutoffs.raw)),
        (f"{kind}_rollup_1h", rollup_sums(kind), s_ms, min(e_ms, cutoffs.minute)),
    )
    totals = {col: 0.0 for col, _ in raw_sums(kind)}
    for table, sums, lo, hi in parts:
        if hi <= lo:
            continue
        exprs = ", ".join(expr for _, expr in sums)
        row = conn.execute(
            f"SELECT {exprs} FROM {table} WHERE {key} = :id AND ts >= :lo AND ts < :hi",
            {"id": obj_id, "lo": lo, "hi": hi, "cpus": cpus},
        ).fetchone()
        for (col, _), value in zip(sums, row, strict=True):
            totals[col] += value or 0
    return totals


def _bounds(start: float, end: float) -> tuple[int, int]:
    return math.floor(start * 1000), math.ceil(end * 1000)


def device_usage(
    conn: sqlite3.Connection, start: float, end: float, cutoffs: Cutoffs
) -> list[DeviceUsage]:
    """Every device with samples in ``[start, end)``, in host then index order."""
    s_ms, e_ms = _bounds(start, end)
    out = []
    devices = conn.execute(
        "SELECT d.id, h.hostname, d.idx, d.uuid, d.name, d.lost_at FROM devices d"
        " JOIN hosts h ON h.id = d.host_id ORDER BY h.hostname, d.idx"
    ).fetchall()
    for did, host, idx, uuid, name, lost_at in devices:
        t = _totals(conn, "device", did, s_ms, e_ms, cutoffs)
        if not t["n"]:
            continue
        known = t["util_known_ms"]
        out.append(
            DeviceUsage(
                host=host,
                index=idx,
                uuid=uuid,
                name=name or "",
                seconds=t["dt_ms"] / 1000,
                idle_seconds=t["idle_ms"] / 1000,
                avg_util=t["util_ms"] / known if known else None,
                energy_j=t["energy_mj"] / 1000,
                energy_measured_j=t["energy_measured_mj"] / 1000,
                idle_energy_j=t["idle_energy_mj"] / 1000,
                lost=lost_at is not None and lost_at < end,
            )
        )
    return out


def host_usage(
    conn: sqlite3.Connection, start: float, end: float, cutoffs: Cutoffs
) -> list[HostUsage]:
    """Every host with samples in ``[start, end)``, by hostname."""
    s_ms, e_ms = _bounds(start, end)
    out = []
    hosts = conn.execute("SELECT id, hostname, cpu_count FROM hosts ORDER BY hostname").fetchall()
    for hid, hostname, cpu_count in hosts:
        cpus = cpu_count or 1
        t = _totals(conn, "host", hid, s_ms, e_ms, cutoffs, cpus)
        if not t["n"]:
            continue
        out.append(
            HostUsage(
                host=hostname,
                cpu_count=cpus,
                seconds=t["dt_ms"] / 1000,
                busy_core_seconds=t["busy_core_ms"] / 1000,
                cpu_energy_j=t["cpu_energy_mj"] / 1000,
                cpu_energy_measured_j=t["cpu_energy_measured_mj"] / 1000,
            )
        )
    return out
