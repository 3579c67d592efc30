"""Per-device and per-host totals over a period, from whichever resolution still covers it.

The range is split at the retention cut-offs: raw rows from the raw cut-off on, 1-minute rollups
from the minute cut-off to the raw cut-off, 1-hour rollups before that. In the rollup parts a bucket
counts when its start lies in the range, so totals over bucket-aligned ranges are exact.

``coarse=True`` answers long ranges from the rollups also where raw rows still exist: whole hours
from the 1-hour table, whole minutes at the edges from the 1-minute table, raw rows only for the
seconds before the first and after the last whole minute. Rollup sums are the integer sums of the
raw rows they cover (written in the same transaction), so the totals are the same; a 30-day range
reads ~720 hour rows per device instead of ~2.6 million samples.
"""

from __future__ import annotations

import math
import sqlite3

from costmeter.core.model import DeviceUsage, HostUsage
from costmeter.store.retention import Cutoffs
from costmeter.store.rollup import HOUR_MS, MINUTE_MS, raw_sums, rollup_sums

#: A piece of a range: the table's resolution ("samples", "rollup_1m", "rollup_1h"), [lo, hi) ms.
Piece = tuple[str, int, int]


def _ceil(ms: int, width: int) -> int:
    return -(-ms // width) * width


def _split(src: str, lo: int, hi: int, inner: str, inner_width: int) -> list[Piece]:
    """[lo, hi) of ``src`` with its whole ``inner_width`` buckets read from ``inner`` instead."""
    a, b = _ceil(lo, inner_width), hi - hi % inner_width
    if a >= b:
        return [(src, lo, hi)]
    return [(src, lo, a), (inner, a, b), (src, b, hi)]


def pieces(s_ms: int, e_ms: int, cutoffs: Cutoffs, coarse: bool = False) -> list[Piece]:
    """Where each part of ``[s_ms, e_ms)`` is summed from (empty pieces dropped)."""
    parts: list[Piece] = [
        ("samples", max(s_ms, cutoffs.raw), e_ms),
        ("rollup_1m", max(s_ms, cutoffs.minute), min(e_ms, cutoffs.raw)),
        ("rollup_1h", s_ms, min(e_ms, cutoffs.minute)),
    ]
    if coarse:
        fine: list[Piece] = []
        for src, lo, hi in parts:
            if hi <= lo or src == "rollup_1h":
                fine.append((src, lo, hi))
                continue
            if src == "samples":
                for sub in _split(src, lo, hi, "rollup_1m", MINUTE_MS):
                    if sub[0] == "rollup_1m":
                        fine += _split(*sub, "rollup_1h", HOUR_MS)
                    else:
                        fine.append(sub)
            else:
                fine += _split(src, lo, hi, "rollup_1h", HOUR_MS)
        parts = fine
    return [p for p in parts if p[2] > p[1]]


def _totals(
    conn: sqlite3.Connection,
    kind: str,
    obj_id: int,
    s_ms: int,
    e_ms: int,
    cutoffs: Cutoffs,
    cpus: int = 0,
    coarse: bool = False,
) -> dict[str, float]:
    key = f"{kind}_id"
    totals = {col: 0.0 for col, _ in raw_sums(kind)}
    for src, lo, hi in pieces(s_ms, e_ms, cutoffs, coarse):
        sums = raw_sums(kind) if src == "samples" else rollup_sums(kind)
        exprs = ", ".join(expr for _, expr in sums)
        row = conn.execute(
            f"SELECT {exprs} FROM {kind}_{src} WHERE {key} = :id AND ts >= :lo AND ts < :hi",
            {"id": obj_id, "lo": lo, "hi": hi, "cpus": cpus},
        ).fetchone()
        for (col, _), value in zip(sums, row, strict=True):
            totals[col] += value or 0
    return totals


def _bounds(start: float, end: float) -> tuple[int, int]:
    return math.floor(start * 1000), math.ceil(end * 1000)


def device_usage(
    conn: sqlite3.Connection, start: float, end: float, cutoffs: Cutoffs, coarse: bool = False
) -> list[DeviceUsage]:
    """Every device with samples in ``[start, end)``, in host then index order."""
    s_ms, e_ms = _bounds(start, end)
    out = []
    devices = conn.execute(
        "SELECT d.id, h.hostname, d.idx, d.uuid, d.name, d.lost_at FROM devices d"
        " JOIN hosts h ON h.id = d.host_id ORDER BY h.hostname, d.idx"
    ).fetchall()
    for did, host, idx, uuid, name, lost_at in devices:
        t = _totals(conn, "device", did, s_ms, e_ms, cutoffs, coarse=coarse)
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
    conn: sqlite3.Connection, start: float, end: float, cutoffs: Cutoffs, coarse: bool = False
) -> list[HostUsage]:
    """Every host with samples in ``[start, end)``, by hostname."""
    s_ms, e_ms = _bounds(start, end)
    out = []
    hosts = conn.execute("SELECT id, hostname, cpu_count FROM hosts ORDER BY hostname").fetchall()
    for hid, hostname, cpu_count in hosts:
        cpus = cpu_count or 1
        t = _totals(conn, "host", hid, s_ms, e_ms, cutoffs, cpus, coarse)
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
