"""Turning ticks into table rows, with the id caches the writer thread keeps."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, cast

from costmeter.core.model import (
    DeviceInfo,
    DeviceSample,
    GpuProcess,
    HostInfo,
    HostSample,
    Interval,
    ProcessSample,
    Tick,
)
from costmeter.core.owner import Owner
from costmeter.store.schema import OWNER_COLUMNS
from costmeter.store.share_rollup import ShareSums, tick_shares

if TYPE_CHECKING:
    from costmeter.store.bulk_rows import DeviceColumns, HostColumns

#: Rows are built in their stored form (integer units, Python's half-to-even ``round``): measured
#: about 0.9 us per row here against about 1.4 us for ``CAST(round(? * 1000) AS INTEGER)`` in the
#: statement, and the raw baseline of bench/bench_ingest.py then inserts the very same tuples.
DEVICE_INSERT = "INSERT OR REPLACE INTO device_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
DEVICE_VALUES = attrgetter(
    "ts", "gpu_util", "mem_util", "mem_used", "power_w", "temp_c", "sm_clock_mhz", "mem_clock_mhz"
)
HOST_INSERT = "INSERT OR REPLACE INTO host_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
GPU_PROC_INSERT = "INSERT OR REPLACE INTO gpu_process_samples VALUES (?,?,?,?,?)"
PROC_INSERT = "INSERT OR REPLACE INTO process_samples VALUES (?,?,?,?,?)"
_OWNER_NAMES = tuple(name for name, _ in OWNER_COLUMNS)
_OWNER_GETTER = attrgetter(*_OWNER_NAMES[:-1])
PROCESS_INSERT = (
    "INSERT OR IGNORE INTO processes (host_id, pid, create_time, name, cmdline, user,"
    f" {', '.join(_OWNER_NAMES)}) VALUES (?, ?, ?, ?, ?, ?{', ?' * len(_OWNER_NAMES)})"
)
#: Fills in the owner of a row that has none yet (``unreadable IS NULL`` marks "not recorded").
PROCESS_OWNER_UPDATE = (
    "UPDATE processes SET user = CASE WHEN coalesce(user, '') IN ('', '?') AND ? IS NOT NULL"
    " THEN ? ELSE user END, "
    + ", ".join(f"{name} = ?" for name in _OWNER_NAMES)
    + " WHERE id = ? AND unreadable IS NULL"
)
_NO_OWNER: tuple[object, ...] = (None,) * len(_OWNER_NAMES)


def owner_values(owner: Owner | None) -> tuple[object, ...]:
    """The owner columns of ``processes`` for ``owner`` (all NULL for None)."""
    if owner is None:
        return _NO_OWNER
    return (*_OWNER_GETTER(owner), ",".join(sorted(owner.unreadable)))


def _int(v: float | None) -> int | None:
    return None if v is None else round(v)


def ms(ts: float) -> int:
    return round(ts * 1000)


def pack_per_core(per_core: Sequence[float]) -> bytes:
    """One byte per core, in half-percent steps (0..200)."""
    try:
        packed = bytes(map(round, map((2.0).__mul__, per_core)))  # all in C: the common case
    except ValueError:  # below 0 or above 127.5 %
        packed = b""
    else:
        if not packed or max(packed) <= 200:
            return packed
    return bytes(min(200, max(0, round(p * 2))) for p in per_core)


def unpack_per_core(blob: bytes | None) -> tuple[float, ...]:
    return tuple(b / 2 for b in blob) if blob else ()


@dataclass
class Batch:
    """Rows for one transaction, plus what the rollups and device records need to know."""

    device_rows: list[tuple[object, ...]] = field(default_factory=list)
    host_rows: list[tuple[object, ...]] = field(default_factory=list)
    gpu_proc_rows: list[tuple[object, ...]] = field(default_factory=list)
    proc_rows: list[tuple[object, ...]] = field(default_factory=list)
    #: First and last sample time (s) per device / host: the rollup buckets to recompute.
    device_spans: dict[int, list[float]] = field(default_factory=dict)
    host_spans: dict[int, list[float]] = field(default_factory=dict)
    device_lost: dict[int, float] = field(default_factory=dict)
    host_seen: dict[int, float] = field(default_factory=dict)
    #: Per-process GPU shares by (device, minute, process), for ``gpu_share_1m``; the
    #: (device, ts ms) of the ticks with processes, and those the batch holds twice.
    share_sums: ShareSums = field(default_factory=dict)
    share_ticks: set[tuple[int, int]] = field(default_factory=set)
    share_dups: set[tuple[int, int]] = field(default_factory=set)
    #: Device rows that ``bulk_rows.add_ticks_bulk`` added, as arrays; they were all added
    #: before any of ``device_rows`` and are written first.
    device_columns: list[DeviceColumns] = field(default_factory=list)
    host_columns: list[HostColumns] = field(default_factory=list)

    @staticmethod
    def ms_spans(spans: dict[int, list[float]]) -> dict[int, list[int]]:
        return {k: [ms(a), ms(b)] for k, (a, b) in spans.items()}

    @property
    def row_count(self) -> int:
        return (
            sum(map(len, self.device_columns))
            + len(self.device_rows)
            + sum(map(len, self.host_columns))
            + len(self.host_rows)
            + len(self.gpu_proc_rows)
            + len(self.proc_rows)
        )


class Registry:
    """Maps hostnames, GPU UUIDs and processes to row ids, inserting rows on first sight.

    Only valid inside the transaction that filled it: drop it after a rollback.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.hosts: dict[str, tuple[int, int]] = {
            name: (hid, cpus or 1)
            for hid, name, cpus in conn.execute("SELECT id, hostname, cpu_count FROM hosts")
        }
        self.devices: dict[str, int] = dict(conn.execute("SELECT uuid, id FROM devices"))
        self.procs: dict[tuple[int, int, float], int] = {}
        self.latest_proc: dict[tuple[int, int], int] = {}
        #: Processes (ids) seen in this transaction whose row has no owner recorded yet.
        self.ownerless: set[int] = set()

    def cpu_counts(self) -> dict[int, int]:
        return {hid: cpus for hid, cpus in self.hosts.values()}

    def host_id(self, hostname: str, now: float) -> int:
        known = self.hosts.get(hostname)
        if known is not None:
            return known[0]
        cur = self.conn.execute(
            "INSERT INTO hosts (hostname, cpu_count, first_seen, last_seen) VALUES (?, 1, ?, ?)",
            (hostname, now, now),
        )
        hid = int(cur.lastrowid or 0)
        self.hosts[hostname] = (hid, 1)
        return hid

    def device_id(self, host_id: int, sample: DeviceSample) -> int:
        known = self.devices.get(sample.uuid)
        if known is not None:
            return known
        cur = self.conn.execute(
            "INSERT INTO devices (host_id, idx, uuid, name, unsupported, first_seen, last_seen)"
            " VALUES (?, ?, ?, ?, '[]', ?, ?)",
            (host_id, sample.index, sample.uuid, "", sample.ts, sample.ts),
        )
        did = int(cur.lastrowid or 0)
        self.devices[sample.uuid] = did
        return did

    def register(self, host: HostInfo, devices: Sequence[DeviceInfo], now: float) -> None:
        """Insert or update the host and its devices; devices it no longer lists count as lost."""
        hid = self.host_id(host.hostname, now)
        self.conn.execute(
            "UPDATE hosts SET cpu_count = ?, cpu_model = ?, memory_total = ?, physical_cores = ?,"
            " last_seen = ? WHERE id = ?",
            (host.cpu_count, host.cpu_model, host.memory_total, host.physical_cores, now, hid),
        )
        self.hosts[host.hostname] = (hid, max(1, host.cpu_count))
        listed = []
        for info in devices:
            did = self.device_id(hid, DeviceSample(uuid=info.uuid, index=info.index, ts=now))
            listed.append(did)
            cc = info.compute_capability
            self.conn.execute(
                "UPDATE devices SET host_id = ?, idx = ?, name = ?, memory_total = ?,"
                " power_limit_w = ?, architecture = ?, compute_capability = ?, unsupported = ?,"
                " last_seen = ?, lost_at = NULL WHERE id = ?",
                (
                    hid,
                    info.index,
                    info.name,
                    info.memory_total,
                    info.power_limit_w,
                    info.architecture,
                    f"{cc[0]}.{cc[1]}" if cc else None,
                    json.dumps(sorted(info.unsupported)),
                    now,
                    did,
                ),
            )
        marks = ",".join("?" * len(listed))
        self.conn.execute(
            f"UPDATE devices SET lost_at = ? WHERE host_id = ? AND lost_at IS NULL"
            f" AND id NOT IN ({marks})",
            (now, hid, *listed),
        )

    def proc_id(
        self,
        host_id: int,
        pid: int,
        create_time: float | None = None,
        name: str = "",
        cmdline: str = "",
        user: str = "",
        owner: Owner | None = None,
    ) -> int:
        """A process's id; a GPU process seen without its CPU-side sample reuses the last one.

        The owner is written with the row on first sight; a row first written without one
        (the owner was not read yet) gets it once, the first time a sample carries it.
        """
        if create_time is None:
            latest = self.latest_proc.get((host_id, pid))
            if latest is not None:
                return latest
            create_time = 0.0
        key = (host_id, pid, create_time)
        pid_id = self.procs.get(key)
        if pid_id is None:
            if owner is not None and owner.user and user in ("", "?"):
                user = owner.user
            self.conn.execute(
                PROCESS_INSERT,
                (host_id, pid, create_time, name, cmdline, user, *owner_values(owner)),
            )
            row = self.conn.execute(
                "SELECT id, unreadable IS NULL FROM processes"
                " WHERE host_id = ? AND pid = ? AND create_time = ?",
                key,
            ).fetchone()
            pid_id = int(row[0])
            self.procs[key] = pid_id
            if row[1]:
                self.ownerless.add(pid_id)
        if owner is not None and pid_id in self.ownerless:
            self.ownerless.discard(pid_id)
            self.conn.execute(
                PROCESS_OWNER_UPDATE, (owner.user, owner.user, *owner_values(owner), pid_id)
            )
        self.latest_proc[(host_id, pid)] = pid_id
        return pid_id


def _widen(spans: dict[int, list[float]], key: int, ts: float) -> None:
    span = spans.get(key)
    if span is None:
        spans[key] = [ts, ts]
    elif ts > span[1]:
        span[1] = ts
    elif ts < span[0]:
        span[0] = ts


def _x100(v: float | None) -> int | None:
    return None if v is None else round(v * 100)


def host_row(hid: int, hs: HostSample, iv: Interval | None) -> tuple[object, ...]:
    """A ``host_samples`` row: percentages and loads in hundredths, rates in whole B/s."""
    return (
        hid,
        round(hs.ts * 1000),
        round(iv.dt_s * 1000) if iv else 0,
        _x100(hs.cpu_percent),
        pack_per_core(hs.per_core),
        _x100(hs.load1),
        _x100(hs.load5),
        _x100(hs.load15),
        hs.mem_used,
        hs.mem_total,
        hs.swap_used,
        _int(hs.disk_read_bps),
        _int(hs.disk_write_bps),
        _int(hs.net_rx_bps),
        _int(hs.net_tx_bps),
        round(iv.energy_j * 1000) if iv and iv.energy_j is not None else None,
        1 if iv and iv.energy_measured else 0,
    )


def device_row(did: int, s: DeviceSample, iv: Interval | None) -> tuple[object, ...]:
    """A ``device_samples`` row in its stored units (ms, %, bytes, mW, mJ, C, MHz)."""
    ts, util, mutil, mem, power, temp, sm, mclk = DEVICE_VALUES(s)
    if iv is None:
        dt, energy, measured = 0, None, 0
    else:
        dt = round(iv.dt_s * 1000)
        e = iv.energy_j
        energy = None if e is None else round(e * 1000)
        measured = 1 if iv.energy_measured else 0
    return (
        did,
        round(ts * 1000),
        dt,
        None if util is None else round(util),
        None if mutil is None else round(mutil),
        mem,
        None if power is None else round(power * 1000),
        energy,
        measured,
        None if temp is None else round(temp),
        None if sm is None else round(sm),
        None if mclk is None else round(mclk),
    )


def add_tick(batch: Batch, reg: Registry, tick: Tick) -> None:
    """Append one tick's rows to the batch (lost GPUs only mark the device)."""
    hid = reg.host_id(tick.host, tick.ts)
    hs = tick.host_sample
    if hs is not None:
        batch.host_rows.append(host_row(hid, hs, tick.host_interval))
        _widen(batch.host_spans, hid, hs.ts)
    add_host_processes(batch, reg, hid, tick)
    if tick.ts > batch.host_seen.get(hid, 0.0):
        batch.host_seen[hid] = tick.ts
    rows = batch.device_rows
    spans = batch.device_spans
    intervals = tick.device_intervals
    devices = reg.devices
    for s in tick.devices:
        did = devices.get(s.uuid)
        if did is None:
            did = reg.device_id(hid, s)
        if s.lost:
            batch.device_lost.setdefault(did, s.ts)
            continue
        rows.append(device_row(did, s, intervals.get(s.uuid)))
        ts = s.ts
        span = spans.get(did)
        if span is None:
            spans[did] = [ts, ts]
        elif ts > span[1]:
            span[1] = ts
        elif ts < span[0]:
            span[0] = ts
        if s.processes:
            add_gpu_processes(batch, reg, hid, did, s.processes, rows[-1])


def add_host_processes(batch: Batch, reg: Registry, hid: int, tick: Tick) -> None:
    """The tick's processes: CPU-side rows, and ids for those known by owner only."""
    hs = tick.host_sample
    if hs is not None and hs.processes:
        add_process_rows(batch, reg, hid, ms(hs.ts), hs.processes)
    for p in tick.processes:  # known by owner only (an exporter's pods): no CPU-side rows
        reg.proc_id(hid, p.pid, p.create_time, p.name, p.cmdline, p.user, p.owner)


def add_process_rows(
    batch: Batch, reg: Registry, hid: int, t: int, processes: Sequence[ProcessSample]
) -> None:
    """CPU-side rows of one host sample's processes (taken at ``t`` ms). A process already
    known, with no owner to add, is looked up here (what ``proc_id`` would do for it)."""
    known, ownerless, latest, rows = reg.procs, reg.ownerless, reg.latest_proc, batch.proc_rows
    for p in processes:
        pid = known.get((hid, p.pid, p.create_time))
        if pid is None or (p.owner is not None and pid in ownerless):
            pid = reg.proc_id(hid, p.pid, p.create_time, p.name, p.cmdline, p.user, p.owner)
        else:
            latest[(hid, p.pid)] = pid
        rows.append((pid, t, p.cpu_percent, p.rss, p.cpu_time_s))


def add_gpu_processes(
    batch: Batch,
    reg: Registry,
    hid: int,
    did: int,
    processes: Sequence[GpuProcess],
    dev: Sequence[object],
) -> None:
    """The processes on one GPU sample (stored as ``dev``): their rows and shares."""
    t = cast(int, dev[1])
    procs: dict[int, tuple[int, int | None, int | None]] = {}
    for gp in processes:
        proc = reg.proc_id(hid, gp.pid)
        sm = _int(gp.sm_util)
        batch.gpu_proc_rows.append((did, t, proc, gp.used_memory, sm))
        procs[proc] = (proc, gp.used_memory, sm)  # the row kept is the last one
    if (did, t) in batch.share_ticks:
        batch.share_dups.add((did, t))
    batch.share_ticks.add((did, t))
    tick_shares(
        batch.share_sums,
        did,
        t,
        cast(int, dev[2]),
        cast("int | None", dev[3]),
        cast("int | None", dev[7]),
        tuple(procs.values()),
    )


def write_batch(conn: sqlite3.Connection, batch: Batch) -> None:
    """Insert the rows and update device/host records (inside the caller's transaction)."""
    for columns in batch.device_columns:
        conn.executemany(DEVICE_INSERT, columns.iter_rows())
    conn.executemany(DEVICE_INSERT, batch.device_rows)
    for host in batch.host_columns:
        conn.executemany(HOST_INSERT, host.iter_rows())
    if batch.host_rows:
        conn.executemany(HOST_INSERT, batch.host_rows)
    if batch.gpu_proc_rows:
        conn.executemany(GPU_PROC_INSERT, batch.gpu_proc_rows)
    if batch.proc_rows:
        conn.executemany(PROC_INSERT, batch.proc_rows)
    conn.executemany(
        "UPDATE devices SET last_seen = max(coalesce(last_seen, 0), ?1),"
        " lost_at = CASE WHEN lost_at < ?1 THEN NULL ELSE lost_at END WHERE id = ?2",
        [(span[1], did) for did, span in batch.device_spans.items()],
    )
    conn.executemany(
        "UPDATE devices SET lost_at = ?1 WHERE id = ?2 AND lost_at IS NULL"
        " AND coalesce(last_seen, 0) <= ?1",
        [(ts, did) for did, ts in batch.device_lost.items()],
    )
    conn.executemany(
        "UPDATE hosts SET last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?",
        [(ts, hid) for hid, ts in batch.host_seen.items()],
    )
