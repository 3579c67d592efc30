"""Rows for a run of ticks built in bulk (numpy columns), and their fresh minute rollups.

``rows.add_tick`` builds one row per call in Python. For a run of ticks of the common shape
(hosts and GPUs already registered, no lost GPU, every value and interval known and finite)
this module reads each field once into a column, converts the columns in C and aggregates the
fresh minute rollups with ``reduceat`` instead of a Python loop per bucket; processes are
added by ``batch_processes.add_run_processes`` (in bulk while the registry stays still, else
tick by tick, as ``add_tick`` adds them). The stored values are the same integers
(numpy's ``rint`` rounds half to even, like ``round``) and the same minute rows as the SQL
re-aggregation (tests/unit/test_store_bulk_rows.py checks both on random ticks). Any other
run returns False and the caller uses ``add_tick``. numpy is optional: without it every run
takes that path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from costmeter.core.model import IDLE_UTIL_PERCENT, GpuProcess, HostSample, Interval, Tick
from costmeter.core.tick_batch import TickBatch
from costmeter.store.batch_processes import add_gpu_sample, add_run_processes
from costmeter.store.rollup import MINUTE_MS
from costmeter.store.rows import Batch, Registry, add_host_processes

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

_DEVICES = attrgetter("devices")
_HOST = attrgetter("host")
_HOST_SAMPLE = attrgetter("host_sample")
_HOST_INTERVAL = attrgetter("host_interval")
_INTERVALS = attrgetter("device_intervals")
_PROCESSES = attrgetter("processes")
_LOST = attrgetter("lost")
_UUID = attrgetter("uuid")
_TS = attrgetter("ts")
_FIRST = itemgetter(0)
#: DeviceSample fields in ``device_samples`` order, then the Interval fields.
_SAMPLE_FIELDS = tuple(
    attrgetter(name)
    for name in (
        "ts",
        "gpu_util",
        "mem_util",
        "mem_used",
        "power_w",
        "temp_c",
        "sm_clock_mhz",
        "mem_clock_mhz",
    )
)
_INTERVAL_FIELDS = (attrgetter("dt_s"), attrgetter("energy_j"))
_MEASURED = attrgetter("energy_measured")
_DT = attrgetter("dt_s")
_ENERGY = attrgetter("energy_j")
_PER_CORE = attrgetter("per_core")
#: HostSample fields stored rounded after multiplying by the factor, as stored after ts (by
#: ``TickBatch.host_values`` name: a batch's ts comes from ``TickBatch.ts``).
_HOST_SCALED_NAMES = (
    ("cpu_percent", 100),
    ("load1", 100),
    ("load5", 100),
    ("load15", 100),
    ("disk_read_bps", 1),
    ("disk_write_bps", 1),
    ("net_rx_bps", 1),
    ("net_tx_bps", 1),
)
#: The same of a ``HostSample``, ts first.
_HOST_SCALED = tuple((attrgetter(name), k) for name, k in (("ts", 1000), *_HOST_SCALED_NAMES))
#: HostSample fields stored as given (whole numbers of bytes).
_HOST_AS_GIVEN = (attrgetter("mem_used"), attrgetter("mem_total"), attrgetter("swap_used"))
#: ``TickBatch.device`` columns in ``device_samples`` order (after ts).
_STORED_DEVICE = (
    "gpu_util",
    "mem_util",
    "mem_used",
    "power_w",
    "temp_c",
    "sm_clock_mhz",
    "mem_clock_mhz",
)
_MEM_USED = attrgetter("mem_used")

#: Every value must be well inside the range where float64 holds integers exactly, so that
#: the conversions and the per-minute sums equal Python's integer arithmetic.
_EXACT = float(2**50)

_numpy: Any = None


def numpy_module() -> Any:
    """numpy, imported on first use (the CLI's start-up path stays standard library only);
    None when it is not installed."""
    global _numpy
    if _numpy is None:
        try:
            import numpy
        except ImportError:
            _numpy = False
        else:
            _numpy = numpy
    return _numpy or None


@dataclass(frozen=True, slots=True)
class DeviceColumns:
    """A bulk run's ``device_samples`` rows as one int64 array (rows x 12 columns)."""

    rows: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.rows)

    def iter_rows(self) -> Iterator[tuple[int, ...]]:
        """The rows as tuples, for ``executemany``: ``zip`` reuses its tuple once the
        statement let go of it, so no row object is kept (no work for the cyclic GC)."""
        return zip(*(col.tolist() for col in self.rows.T), strict=True)


@dataclass(frozen=True, slots=True)
class HostColumns:
    """A bulk run's ``host_samples`` rows, one list per column."""

    columns: list[list[Any]]

    def __len__(self) -> int:
        return len(self.columns[0])

    def iter_rows(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns, strict=True)


def add_ticks_bulk(batch: Batch, reg: Registry, ticks: Sequence[Tick]) -> bool:
    """Append the rows of ``ticks`` to ``batch`` in bulk; False (batch untouched) when the
    run is not of the common shape or numpy is missing."""
    np = numpy_module()
    if np is None or not ticks or batch.device_rows or batch.host_rows:  # bulk rows go first
        return False
    hosts = reg.hosts
    host_samples = list(map(_HOST_SAMPLE, ticks))
    host_ivs = list(map(_HOST_INTERVAL, ticks))
    if not all(host_samples) or not all(host_ivs):  # a None among them
        return False
    per_tick = list(map(_DEVICES, ticks))
    flat = list(chain.from_iterable(per_tick))
    if any(map(_LOST, flat)):
        return False
    try:
        hids = list(map(_FIRST, map(hosts.__getitem__, map(_HOST, ticks))))
        uuids = list(map(_UUID, flat))
        dids = list(map(reg.devices.__getitem__, uuids))
    except KeyError:  # a new host or GPU: registered by the per-tick path
        return False
    counts = list(map(len, per_tick))
    ivs = list(
        map(dict.get, chain.from_iterable(map(repeat, map(_INTERVALS, ticks), counts)), uuids)
    )
    if not all(ivs):
        return False
    device = _device_array(np, dids, flat, ivs)
    if device is None:
        return False
    host = _host_columns(np, hids, host_samples, host_ivs)
    if host is None:
        return False
    if (
        any(map(_PROCESSES, flat))
        or any(map(_PROCESSES, host_samples))
        or any(map(_PROCESSES, ticks))
    ):
        gpu_procs = [tuple(map(_PROCESSES, samples)) for samples in per_tick]
        firsts = [0, *accumulate(counts)]
        if len(set(hids)) == 1 and not any(map(_PROCESSES, ticks)):
            host_procs = list(map(_PROCESSES, host_samples))
            t_ms = host.columns[1]
            add_run_processes(np, batch, reg, hids[0], t_ms, host_procs, gpu_procs, firsts, device)
        else:  # several hosts, or processes known by owner only: tick by tick
            _add_processes(batch, reg, hids, ticks, gpu_procs, firsts, device)
    ts = np.fromiter(map(_TS, flat), np.float64, len(flat))
    _add_columns(batch, dids, ts, device, host)
    spans = batch.host_spans
    seen = batch.host_seen
    for hid, hs, tick in zip(hids, host_samples, ticks, strict=True):
        ts = hs.ts
        span = spans.get(hid)
        if span is None:
            spans[hid] = [ts, ts]
        elif ts > span[1]:
            span[1] = ts
        elif ts < span[0]:
            span[0] = ts
        if tick.ts > seen.get(hid, 0.0):
            seen[hid] = tick.ts
    return True


def add_tick_batch(batch: Batch, reg: Registry, tb: TickBatch) -> bool:
    """Append the rows of a ``TickBatch`` to ``batch`` straight from its columns; False
    (batch untouched) where ``add_ticks_bulk`` would refuse its ticks, and then the caller
    adds ``tb.ticks()`` one by one. The rows are those of ``add_ticks_bulk`` on the same ticks."""
    np = numpy_module()
    n, k = len(tb), len(tb.devices)
    if np is None or not n or batch.device_rows or batch.host_rows:
        return False
    try:
        hid = reg.hosts[tb.host][0]
        dev_ids = [reg.devices[uuid] for uuid, _ in tb.devices]
    except KeyError:
        return False
    ts = np.asarray(tb.ts, np.float64)
    flat_ts = np.repeat(ts, k)
    values = tb.device
    if values["mem_used"].dtype.kind not in "iu":
        return False  # mem_used is stored as given: whole numbers of bytes only
    try:
        cols = [flat_ts]
        cols += [np.asarray(values[name], np.float64).reshape(n * k) for name in _STORED_DEVICE]
        dt = np.asarray(tb.dt_s, np.float64).reshape(n * k)
        energy = np.asarray(tb.energy_j, np.float64).reshape(n * k)
    except (TypeError, ValueError):
        return False
    dids = np.tile(np.asarray(dev_ids, np.int64), n)
    device = _device_rows(np, dids, cols, dt, energy, np.asarray(tb.energy_measured).reshape(-1))
    if device is None:
        return False
    host = _host_from_columns(np, tb, hid)
    if host is None:
        return False
    if tb.host_processes or tb.gpu_processes:
        firsts = range(0, n * k + 1, k) if k else [0] * (n + 1)
        add_run_processes(
            np,
            batch,
            reg,
            hid,
            host.columns[1],
            tb.host_processes,
            tb.gpu_processes,
            firsts,
            device,
        )
    _add_columns(batch, dids.tolist() if k else [], flat_ts, device, host)
    lo, hi = float(ts.min()), float(ts.max())
    span = batch.host_spans.get(hid)
    if span is None:
        batch.host_spans[hid] = [lo, hi]
    else:
        span[0], span[1] = min(span[0], lo), max(span[1], hi)
    if hi > batch.host_seen.get(hid, 0.0):
        batch.host_seen[hid] = hi
    return True


def _add_columns(
    batch: Batch, dids: list[int], ts: Any, device: NDArray[np.int64], host: HostColumns
) -> None:
    np = numpy_module()
    batch.device_columns.append(DeviceColumns(device))
    _widen_devices(np, batch.device_spans, dids, ts, device)
    batch.host_columns.append(host)


def _add_processes(
    batch: Batch,
    reg: Registry,
    hids: list[int],
    ticks: Sequence[Tick],
    per_tick: Sequence[Sequence[tuple[GpuProcess, ...]]],
    firsts: Sequence[int],
    device: Any,
) -> None:
    """Process rows and GPU shares, tick by tick in order (process ids are given out in the
    order ``add_tick`` gives them): ``per_tick[i]`` holds the processes on each GPU of tick
    ``i``, whose device rows start at ``firsts[i]``."""
    rows = device.tolist()
    for hid, tick, gpus, at in zip(hids, ticks, per_tick, firsts, strict=False):
        add_host_processes(batch, reg, hid, tick)
        for procs in gpus:
            if procs:
                add_gpu_sample(batch, reg, hid, procs, rows[at])
            at += 1


def _device_array(
    np: Any, dids: list[int], flat: list[Any], ivs: list[Any]
) -> NDArray[np.int64] | None:
    """The ``device_samples`` rows as an int64 array, or None when a value is missing, not a
    finite number, or too large to convert exactly."""
    n = len(flat)
    try:
        cols = [np.fromiter(map(get, flat), np.float64, n) for get in _SAMPLE_FIELDS]
        dt, energy = (np.fromiter(map(get, ivs), np.float64, n) for get in _INTERVAL_FIELDS)
    except (TypeError, ValueError):  # None among the values
        return None
    # mem_used is stored as given: only whole numbers of bytes go the bulk way.
    if set(map(type, map(_MEM_USED, flat))) != {int}:
        return None
    return _device_rows(np, dids, cols, dt, energy, np.fromiter(map(_MEASURED, ivs), np.bool_, n))


def _device_rows(
    np: Any, dids: Any, cols: list[Any], dt: Any, energy: Any, measured: Any
) -> NDArray[np.int64] | None:
    """Stored ``device_samples`` rows from float64 columns (``cols``: ts, then the
    ``DeviceSample`` values in order), or None when one is not finite or too large."""
    ts, util, mutil, mem, power, temp, sm, mclk = cols
    scaled = (ts * 1000, dt * 1000, util, mutil, mem, power * 1000, energy * 1000, temp, sm, mclk)
    for col in scaled:
        if not np.all(np.abs(col) < _EXACT):  # also false for NaN and infinities
            return None
    out = np.empty((len(ts), 12), np.int64)
    out[:, 0] = dids
    for pos, col in zip((1, 2, 3, 4, 5, 6, 7, 9, 10, 11), scaled, strict=True):
        out[:, pos] = np.rint(col)
    out[:, 8] = measured
    return out


def _host_columns(
    np: Any, hids: list[int], samples: list[HostSample], ivs: list[Interval]
) -> HostColumns | None:
    """``host_samples`` columns (as ``rows.host_row`` makes them), or None when a value is
    missing, not a finite number, or too large to convert exactly."""
    n = len(samples)
    try:
        scaled = [np.fromiter(map(get, samples), np.float64, n) * k for get, k in _HOST_SCALED]
        scaled.insert(1, np.fromiter(map(_DT, ivs), np.float64, n) * 1000)
    except (TypeError, ValueError):
        return None
    as_given = [list(map(get, samples)) for get in _HOST_AS_GIVEN]
    if any(set(map(type, col)) != {int} for col in as_given):
        return None
    per_core = _pack_per_core(np, list(map(_PER_CORE, samples)))
    energy = list(map(_ENERGY, ivs))
    measured = list(map(_MEASURED, ivs))
    return _host_rows(np, hids, scaled, as_given, per_core, energy, measured)


def _host_from_columns(np: Any, tb: TickBatch, hid: int) -> HostColumns | None:
    """``_host_columns`` of a ``TickBatch``'s host columns."""
    v = tb.host_values
    n = len(tb)
    try:
        scaled = [np.asarray(tb.ts, np.float64) * 1000]
        scaled += [np.asarray(v[name], np.float64) * k for name, k in _HOST_SCALED_NAMES]
        scaled.insert(1, np.asarray(tb.host_dt_s, np.float64) * 1000)
    except (TypeError, ValueError):
        return None
    if any(v[name].dtype.kind not in "iu" for name in ("mem_used", "mem_total", "swap_used")):
        return None
    as_given = [v[name].tolist() for name in ("mem_used", "mem_total", "swap_used")]
    cores = np.asarray(v["per_core"], np.float64).reshape(n, -1)
    per_core = _pack_per_core_array(np, cores)
    energy = np.asarray(tb.host_energy_j, np.float64).tolist()
    measured = np.asarray(tb.host_energy_measured).tolist()
    return _host_rows(np, [hid] * n, scaled, as_given, per_core, energy, measured)


def _host_rows(
    np: Any,
    hids: list[int],
    scaled: list[Any],
    as_given: list[list[Any]],
    per_core: list[bytes] | None,
    energy: list[float | None],
    measured: list[Any],
) -> HostColumns | None:
    for col in scaled:
        if not np.all(np.abs(col) < _EXACT):
            return None
    if per_core is None:
        return None
    try:
        energy_mj = [None if e is None else round(e * 1000) for e in energy]
    except (TypeError, ValueError, OverflowError):
        return None
    ints = [np.rint(col).astype(np.int64).tolist() for col in scaled]
    ts, dt, cpu, load1, load5, load15, disk_r, disk_w, net_rx, net_tx = ints
    mem_used, mem_total, swap_used = as_given
    return HostColumns(
        [
            *(hids, ts, dt, cpu, per_core, load1, load5, load15),
            *(mem_used, mem_total, swap_used, disk_r, disk_w, net_rx, net_tx),
            *(energy_mj, [1 if m else 0 for m in measured]),
        ]
    )


def _pack_per_core(np: Any, per_core: list[tuple[float, ...]]) -> list[bytes] | None:
    """``rows.pack_per_core`` of each tuple, for tuples of one length (else None)."""
    lengths = set(map(len, per_core))
    if len(lengths) != 1:
        return None
    width = lengths.pop()
    if not width:
        return [b""] * len(per_core)
    return _pack_per_core_array(np, np.array(per_core, np.float64))


def _pack_per_core_array(np: Any, per_core: Any) -> list[bytes] | None:
    """``rows.pack_per_core`` of each row of an ``(n, cores)`` array (None if not finite)."""
    n, width = per_core.shape
    if not width:
        return [b""] * n
    values = per_core * 2
    if not np.all(np.isfinite(values)):
        return None
    packed = np.clip(np.rint(values), 0, 200).astype(np.uint8).tobytes()
    return [packed[i : i + width] for i in range(0, len(packed), width)]


def _widen_devices(
    np: Any, spans: dict[int, list[float]], dids: list[int], ts: Any, rows: Any
) -> None:
    """Each device's first and last sample time (s, as given: ``ts``, one per row) in the
    run, merged into ``spans``."""
    ids = rows[:, 0]
    for did in dict.fromkeys(dids):
        mine = ts[ids == did]
        lo, hi = float(mine.min()), float(mine.max())
        span = spans.get(did)
        if span is None:
            spans[did] = [lo, hi]
        else:
            span[0], span[1] = min(span[0], lo), max(span[1], hi)


@dataclass(frozen=True, slots=True)
class _Buckets:
    """Rows sorted by (id, ts) and cut into minute buckets; ``keep`` marks the fresh ones."""

    rows: Any
    starts: Any
    size: Any
    keep: Any


def _fresh_buckets(
    np: Any, rows: Any, last_stored: Mapping[int, int], raw_cutoff: int
) -> _Buckets | None:
    """The minute buckets of ``rows`` (columns 0 and 1: id, ts in ms) that only these rows
    fill: from ``raw_cutoff`` on, after the id's newest stored sample (``last_stored``), and
    without a timestamp twice (INSERT OR REPLACE kept only the last of those). None if none."""
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    ids, ts = rows[:, 0], rows[:, 1]
    minute = ts - ts % MINUTE_MS
    n = len(rows)
    first = np.ones(n, np.bool_)
    first[1:] = (ids[1:] != ids[:-1]) | (minute[1:] != minute[:-1])
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    repeated = np.zeros(len(starts), np.bool_)
    repeated[group[1:][(ids[1:] == ids[:-1]) & (ts[1:] == ts[:-1])]] = True
    newest = np.array([last_stored.get(i, -1) for i in ids[starts].tolist()], np.int64)
    start = minute[starts]
    keep = (start >= raw_cutoff) & (start > newest) & ~repeated
    if not keep.any():
        return None
    return _Buckets(rows, starts, np.diff(np.append(starts, n)), keep)


def _stats(np: Any, b: _Buckets, positions: Sequence[int]) -> list[Any]:
    """min, avg, max of each column at ``positions``, per bucket (no NULLs in bulk rows)."""
    out: list[Any] = []
    for pos in positions:
        col = b.rows[:, pos]
        out += (
            np.minimum.reduceat(col, b.starts),
            np.add.reduceat(col, b.starts).astype(np.float64) / b.size,
            np.maximum.reduceat(col, b.starts),
        )
    return out


def _kept_rows(b: _Buckets, out: list[Any]) -> tuple[list[tuple[Any, ...]], set[tuple[int, int]]]:
    kept = [c[b.keep].tolist() for c in out]
    return list(zip(*kept, strict=True)), set(zip(kept[0], kept[1], strict=True))


#: ``device_samples`` positions of DEVICE_ROLLUP_METRICS and ``host_samples`` positions of
#: HOST_ROLLUP_METRICS (tests/unit/test_store_bulk_rows.py checks them against the schema).
DEVICE_METRIC_POSITIONS = (3, 4, 5, 6, 9, 10, 11)
HOST_METRIC_POSITIONS = (3, 8, 5, 10, 11, 12, 13, 14)


def fresh_minutes_bulk(
    columns: Sequence[DeviceColumns], last_stored: Mapping[int, int], raw_cutoff: int = 0
) -> tuple[list[tuple[object, ...]], set[tuple[int, int]]]:
    """The ``device_rollup_1m`` rows of the buckets that only these rows fill, and their
    (device, minute start) pairs: the rule and the values of ``write_fresh_device_minutes``,
    for a batch whose device rows all came in bulk."""
    np = numpy_module()
    b = _fresh_buckets(np, np.concatenate([c.rows for c in columns]), last_stored, raw_cutoff)
    if b is None:
        return [], set()
    add, starts, rows = np.add.reduceat, b.starts, b.rows
    dt, util, energy, measured = rows[:, 2], rows[:, 3], rows[:, 7], rows[:, 8]
    idle = util < IDLE_UTIL_PERCENT
    dt_ms = add(dt, starts)
    out = [
        rows[starts, 0],
        rows[starts, 1] - rows[starts, 1] % MINUTE_MS,
        b.size,
        dt_ms,
        add(dt * idle, starts),
        add(util * dt, starts),
        dt_ms,
        add(energy, starts),
        add(energy * measured, starts),
        add(energy * idle, starts),
        *_stats(np, b, DEVICE_METRIC_POSITIONS),
    ]
    return _kept_rows(b, out)


def fresh_host_minutes_bulk(
    columns: Sequence[HostColumns],
    last_stored: Mapping[int, int],
    cpu_counts: Mapping[int, int],
    raw_cutoff: int = 0,
) -> tuple[list[tuple[object, ...]], set[tuple[int, int]]]:
    """The ``host_rollup_1m`` rows of the buckets that only these rows fill, as
    ``rollup.HOST_SUMS`` and the stats compute them in SQL, and their (host, minute start)
    pairs; none when a row has no CPU energy (SQL then sums what is there)."""
    np = numpy_module()
    wanted = (0, 1, 2, 15, 16, *HOST_METRIC_POSITIONS)
    rows = np.zeros((sum(map(len, columns)), 17), np.int64)
    at = 0
    for c in columns:
        n = len(c)
        for pos in wanted:
            if pos == 15 and None in c.columns[15]:
                return [], set()
            rows[at : at + n, pos] = c.columns[pos]
        at += n
    b = _fresh_buckets(np, rows, last_stored, raw_cutoff)
    if b is None:
        return [], set()
    add, starts, rows = np.add.reduceat, b.starts, b.rows
    energy = rows[:, 15]
    hids = rows[starts, 0]
    busy = add(rows[:, 3] * rows[:, 2], starts).tolist()
    cpus = [cpu_counts.get(h, 1) for h in hids.tolist()]
    out = [
        hids,
        rows[starts, 1] - rows[starts, 1] % MINUTE_MS,
        b.size,
        add(rows[:, 2], starts),
        # SQL: sum(cpu_pct_x100 * dt_ms) * :cpus / 10000.0, integers until the division.
        np.array([s * c / 10000.0 for s, c in zip(busy, cpus, strict=True)], np.float64),
        add(energy, starts),
        add(energy * rows[:, 16], starts),
        *_stats(np, b, HOST_METRIC_POSITIONS),
    ]
    return _kept_rows(b, out)
