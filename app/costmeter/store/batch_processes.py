"""Process rows and GPU shares of a run of ticks, built in bulk where the registry stays still.

Tick by tick (``add_tick_processes``), a tick of 8 GPUs and 7 processes costs ~30 us of
Python: a dictionary look-up, a tuple and a share per process. While a run's processes stay
the same (the common case: jobs run for hours), nothing in the ``Registry`` changes from one
tick to the next: every CPU-side process is known with the id last seen for its pid, none
waits for its owner, and every GPU holds one process last seen with its pid. Such a stretch
is done here with ``map`` over whole columns and numpy grouping; the first tick that would
change the registry (a new process, an owner to record, a pid now of another process, a
GPU-only process, a GPU with several processes) goes tick by tick, which gives out the ids,
and the stretch resumes after it. The rows, their order, the ids and the share sums are
those of the tick-by-tick path: one process's share of its GPU is the whole tick (x / x is
exactly 1.0), so its per-minute sums are sums of integers, the same in any order below
2**53 (larger ones, and sums that already hold a fraction, are added one tick at a time).
tests/unit/test_store_batch_processes.py holds the two paths equal on random runs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from itertools import accumulate, chain, compress, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from costmeter.core.model import IDLE_UTIL_PERCENT, GpuProcess, ProcessSample
from costmeter.store.rollup import MINUTE_MS
from costmeter.store.rows import Batch, Registry, add_gpu_processes, add_process_rows
from costmeter.store.share_rollup import ShareSums

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

_PID = attrgetter("pid")
_PID_CREATE_TIME = attrgetter("pid", "create_time")
_OWNER = attrgetter("owner")
_CPU_VALUES = (attrgetter("cpu_percent"), attrgetter("rss"), attrgetter("cpu_time_s"))
_USED_MEMORY = attrgetter("used_memory")
_SM_UTIL = attrgetter("sm_util")
_FIRST = itemgetter(0)
#: Integer sums whose terms add up (in absolute value) below this are exact in float64 in
#: any order (2**53 is the bound; the rest is room for the rounding of the check itself).
_EXACT_SUM = float(2**52)
#: Ticks of one run done tick by tick before the rest of it is too: a run whose registry
#: changes at every tick gains nothing from the bulk path.
MAX_SLOW_TICKS = 16

HostProcesses = Sequence[Sequence[ProcessSample]]
GpuProcesses = Sequence[Sequence[Sequence[GpuProcess]]]


def add_run_processes(
    np: Any,
    batch: Batch,
    reg: Registry,
    hid: int,
    t_ms: Sequence[int],
    host_procs: HostProcesses,
    gpu_procs: GpuProcesses,
    firsts: Sequence[int],
    device: NDArray[np.int64],
) -> None:
    """The process rows and shares of ``n`` ticks of host ``hid``, as ``add_tick_processes``
    adds them tick after tick. ``t_ms``: each tick's host sample time (ms);
    ``host_procs[i]`` its CPU-side processes and ``gpu_procs[i][j]`` those on its ``j``-th GPU
    (either may be empty: none in any tick); the device rows of tick ``i`` are
    ``device[firsts[i]:firsts[i + 1]]``."""
    n = len(t_ms)
    start = slow = 0
    while start < n:
        stop = _bulk_stretch(
            np, batch, reg, hid, t_ms, host_procs, gpu_procs, firsts, device, start
        )
        if stop >= n:
            return
        add_tick_processes(batch, reg, hid, stop, t_ms, host_procs, gpu_procs, firsts, device)
        start, slow = stop + 1, slow + 1
        if slow == MAX_SLOW_TICKS:
            for i in range(start, n):
                add_tick_processes(batch, reg, hid, i, t_ms, host_procs, gpu_procs, firsts, device)
            return


def add_tick_processes(
    batch: Batch,
    reg: Registry,
    hid: int,
    i: int,
    t_ms: Sequence[int],
    host_procs: HostProcesses,
    gpu_procs: GpuProcesses,
    firsts: Sequence[int],
    device: NDArray[np.int64],
) -> None:
    """Tick ``i``'s process rows and shares, one process at a time (``rows.add_tick``'s way)."""
    if host_procs and host_procs[i]:
        add_process_rows(batch, reg, hid, t_ms[i], host_procs[i])
    if gpu_procs:
        at = firsts[i]
        for procs in gpu_procs[i]:
            if procs:
                add_gpu_sample(batch, reg, hid, procs, device[at].tolist())
            at += 1


def add_gpu_sample(
    batch: Batch, reg: Registry, hid: int, procs: Sequence[GpuProcess], row: list[int]
) -> None:
    """The processes on one GPU sample stored as ``row``: ``rows.add_gpu_processes``, with a
    GPU that holds one process already known on its host done inline (its share of the tick
    is all of it, so its minute sums grow by the tick's own integers)."""
    proc = reg.latest_proc.get((hid, procs[0].pid)) if len(procs) == 1 else None
    if proc is None:
        add_gpu_processes(batch, reg, hid, row[0], procs, row)
        return
    did, t, dt, util, energy = row[0], row[1], row[2], row[3], row[7]
    gp = procs[0]
    sm = gp.sm_util
    batch.gpu_proc_rows.append((did, t, proc, gp.used_memory, None if sm is None else round(sm)))
    if (did, t) in batch.share_ticks:
        batch.share_dups.add((did, t))
    batch.share_ticks.add((did, t))
    if dt:
        _add_whole_tick(batch.share_sums, (did, t - t % MINUTE_MS, proc), dt, util, energy)


def _add_whole_tick(sums: ShareSums, key: tuple[int, int, int], dt: int, util: int, e: int) -> None:
    row = sums.get(key)
    if row is None:
        row = sums[key] = [0.0, 0.0, 0.0, 0.0]
    if util < IDLE_UTIL_PERCENT:
        row[1] += 1.0 * dt
        row[3] += 1.0 * e
    else:
        row[0] += 1.0 * dt
    row[2] += 1.0 * e


def _index(values: list[Any], value: Any) -> int:
    try:
        return values.index(value)
    except ValueError:
        return len(values)


def _bulk_stretch(
    np: Any,
    batch: Batch,
    reg: Registry,
    hid: int,
    t_ms: Sequence[int],
    host_procs: HostProcesses,
    gpu_procs: GpuProcesses,
    firsts: Sequence[int],
    device: NDArray[np.int64],
    start: int,
) -> int:
    """Add ticks ``start``... in bulk up to the first that would change the registry; return
    that tick (``len(t_ms)`` when none would)."""
    n = len(t_ms)
    stop = n
    ids: list[int | None] = []
    flat: list[ProcessSample] = []
    ends: list[int] = []
    # The id each pid of the host was last seen with (``latest_proc``), and the processes
    # known with those ids: any other (unknown, or a pid whose last id would change) is
    # the per-tick path's to do.
    last = {pid: pid_id for (h, pid), pid_id in reg.latest_proc.items() if h == hid}
    if host_procs:
        steady = {
            (pid, create_time): pid_id
            for (h, pid, create_time), pid_id in reg.procs.items()
            if h == hid and last.get(pid) == pid_id
        }
        ticks = host_procs[start:]
        flat = list(chain.from_iterable(ticks))
        ids = list(map(steady.get, map(_PID_CREATE_TIME, flat)))
        bad = _index(ids, None)
        ownerless = reg.ownerless
        if ownerless and not ownerless.isdisjoint(ids):  # an owner to record, maybe
            for at, (pid, owner) in enumerate(zip(ids[:bad], map(_OWNER, flat), strict=False)):
                if owner is not None and pid in ownerless:
                    bad = at
                    break
        ends = list(accumulate(map(len, ticks)))
        if bad < len(flat):
            stop = start + bisect_right(ends, bad)
    procs: list[int | None] = []
    gps: list[GpuProcess] = []
    positions: list[int] = []
    base = firsts[start]
    if gpu_procs and stop > start:
        entries = list(chain.from_iterable(gpu_procs[start:stop]))
        lens = list(map(len, entries))
        limit = len(entries)
        if max(lens, default=0) > 1:  # shares to split: tick by tick
            limit = next(at for at, size in enumerate(lens) if size > 1)
        positions = list(compress(range(len(entries)), lens))
        gps = list(map(_FIRST, compress(entries, lens)))
        procs = list(map(last.get, map(_PID, gps)))
        unknown = _index(procs, None)  # a GPU-only process: given an id tick by tick
        if unknown < len(procs):
            limit = min(limit, positions[unknown])
        if limit < len(entries):
            stop = bisect_right(firsts, base + limit) - 1
    if stop == start:
        return stop
    if flat:
        e = ends[stop - start - 1]
        times = chain.from_iterable(map(repeat, t_ms[start:stop], map(len, host_procs[start:stop])))
        cpu = (map(get, flat[:e]) for get in _CPU_VALUES)
        batch.proc_rows.extend(zip(ids[:e], times, *cpu, strict=True))
    taken = bisect_left(positions, firsts[stop] - base)
    if taken:
        rows = device[base + np.array(positions[:taken], np.int64)]
        _add_gpu_rows(np, batch, rows, procs[:taken], gps[:taken])
    return stop


def _add_gpu_rows(
    np: Any, batch: Batch, rows: NDArray[np.int64], procs: list[Any], gps: list[GpuProcess]
) -> None:
    """``add_gpu_sample`` of GPU samples (``rows``) that each hold one known process."""
    dids, ts = rows[:, 0].tolist(), rows[:, 1].tolist()
    sm = list(map(_SM_UTIL, gps))
    sm = [None if v is None else round(v) for v in sm] if None in sm else list(map(round, sm))
    memory = map(_USED_MEMORY, gps)
    batch.gpu_proc_rows.extend(zip(dids, ts, procs, memory, sm, strict=True))
    pairs = list(zip(dids, ts, strict=True))
    seen = batch.share_ticks
    if seen.isdisjoint(pairs):
        size = len(seen)
        seen.update(pairs)
        if len(seen) - size < len(pairs):  # a tick time twice in the run
            batch.share_dups.update(pair for pair, n in Counter(pairs).items() if n > 1)
    else:  # tick times already seen: kept apart, as add_gpu_sample keeps them
        for pair in pairs:
            if pair in seen:
                batch.share_dups.add(pair)
            seen.add(pair)
    _add_whole_ticks(np, batch.share_sums, rows, np.array(procs, np.int64))


def _add_whole_ticks(np: Any, sums: ShareSums, rows: Any, procs: Any) -> None:
    """``_add_whole_tick`` of each row (device row, and its one process) with a ``dt``."""
    keep = rows[:, 2] != 0
    if not keep.any():
        return
    rows, procs = rows[keep], procs[keep]
    dids, minutes = rows[:, 0], rows[:, 1] - rows[:, 1] % MINUTE_MS
    order = np.lexsort((procs, minutes, dids))  # stable: each group in tick order
    dids, minutes, procs = dids[order], minutes[order], procs[order]
    dt, util, energy = rows[order, 2], rows[order, 3], rows[order, 7]
    cut = np.ones(len(order), np.bool_)
    cut[1:] = (dids[1:] != dids[:-1]) | (minutes[1:] != minutes[:-1]) | (procs[1:] != procs[:-1])
    starts = np.flatnonzero(cut)
    idle = util < IDLE_UTIL_PERCENT
    add = np.add.reduceat
    size = add(np.abs(dt).astype(np.float64) + np.abs(energy), starts)
    values = zip(
        *(
            add(col, starts).tolist()
            for col in (np.where(idle, 0, dt), dt * idle, energy, energy * idle)
        ),
        strict=True,
    )
    groups = list(
        zip(
            dids[starts].tolist(),
            minutes[starts].tolist(),
            procs[starts].tolist(),
            size.tolist(),
            values,
            strict=True,
        )
    )
    # Keys are added to ``sums`` in the order the ticks first give them, as tick by tick.
    ends = [*starts[1:].tolist(), len(order)]
    for g in np.argsort(order[starts], kind="stable").tolist():
        did, minute, proc, bound, (busy, idle_ms, e, idle_e) = groups[g]
        key = (did, minute, proc)
        row = sums.get(key)
        if row is None and bound < _EXACT_SUM:
            sums[key] = [float(busy), float(idle_ms), float(e), float(idle_e)]
        elif (
            row is not None
            and all(v.is_integer() for v in row)
            and max(map(abs, row)) + bound < _EXACT_SUM
        ):
            row[0] += busy
            row[1] += idle_ms
            row[2] += e
            row[3] += idle_e
        else:  # a fraction already there, or sums too large: one tick at a time
            at, end = int(starts[g]), ends[g]
            for d, u, en in zip(
                dt[at:end].tolist(), util[at:end].tolist(), energy[at:end].tolist(), strict=True
            ):
                _add_whole_tick(sums, key, d, u, en)
