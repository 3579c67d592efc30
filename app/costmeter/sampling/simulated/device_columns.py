"""Simulated GPUs over a chunk of ticks at once, as numpy columns: ``costmeter simulate``'s
fast path (``service/simulated_batches.py``).

``SimDevice`` works second by second: draw the second's uniforms, run each process's profile,
sum, round, integrate. Every step after the draws is element-wise arithmetic, so here each
device's whole span of seconds is computed as columns, with the same IEEE operations in the same
order (a branch becomes ``np.where``; Python's ``round`` on a float ``np.rint``, both half to
even; ``int()`` of a positive float the cast to int64, a truncation), and the integrals as
sequential cumulative sums (the energy counter in int64, exactly; each process's CPU
percent-seconds in float64, added in the same order as ``SimDevice._advance`` adds them).
tests/unit/test_simulated_columns.py holds each step equal to the scalar code, and
tests/unit/test_simulated_batches.py the databases written either way.

Only GPUs without MIG whose processes all have a column profile (``profile_columns.py``);
``device_seconds`` answers None for any other, and the caller goes second by second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from costmeter.sampling.simulated.columns_noise import uniform_rows
from costmeter.sampling.simulated.device import SimDevice, SimProcess
from costmeter.sampling.simulated.models import MIB
from costmeter.sampling.simulated.profile_columns import load_columns
from costmeter.sampling.simulated.profiles import PHASE_WINDOW_S


class ProcSeconds:
    """One process on one device over the span: each array has one element a second."""

    __slots__ = ("acc", "active", "cpu", "proc", "sm", "used")

    def __init__(self, proc: SimProcess, active: Any, used: Any, sm: Any, cpu: Any, acc: Any):
        self.proc = proc
        #: Whether the process runs (has a row in ``DevState.procs``) that second.
        self.active = active
        #: GPU memory held (int64), SM utilisation rounded (int64): its ``ProcRow``.
        self.used = used
        self.sm = sm
        #: CPU % of one core, 0.0 where it does not run (what ``cpu_now`` reports).
        self.cpu = cpu
        #: CPU percent-seconds integrated up to the start of each second (``cpu_acc``).
        self.acc = acc


class DeviceSeconds:
    """One device over the seconds ``lo``..``hi``: ``DevState`` and the integrals, by column."""

    __slots__ = (
        "any_proc",
        "dev",
        "energy",
        "gpu_util",
        "hi",
        "lo",
        "mem_clock",
        "mem_used",
        "mem_util",
        "power_mw",
        "procs",
        "sm_clock",
        "temp_c",
    )

    def __init__(self, dev: SimDevice, lo: int, hi: int) -> None:
        self.dev = dev
        self.lo = lo
        self.hi = hi
        self.procs: list[ProcSeconds] = []
        self.any_proc: Any = None
        self.gpu_util: Any = None
        self.mem_util: Any = None
        self.mem_used: Any = None
        self.power_mw: Any = None
        self.temp_c: Any = None
        self.sm_clock: Any = None
        self.mem_clock: Any = None
        #: The energy counter (mJ, int64) at the start of each second.
        self.energy: Any = None


def device_seconds(dev: SimDevice, lo: int, hi: int) -> DeviceSeconds | None:
    """``dev`` from the start of second ``lo`` (where its integrals stand) to the end of ``hi``;
    None where the device is not one this module simulates (MIG, a profile without columns)."""
    if dev.mig or hi < lo:
        return None
    procs = dev.processes
    fns = [load_columns(p.profile.load) for p in procs]
    if any(fn is None or p.instance is not None for fn, p in zip(fns, procs, strict=True)):
        return None
    i_sec, energy0, _ = dev.integrals()
    if i_sec != lo:
        return None
    m = dev.model
    seed, index, total = dev.seed, dev.index, m.memory_total
    secs = np.arange(lo, hi + 1, dtype=np.int64)
    n = len(secs)
    v = uniform_rows(seed, index, -1, range(lo, hi + 1))
    out = DeviceSeconds(dev, lo, hi)
    gpu = np.zeros(n)
    mem = np.zeros(n)
    held = np.zeros(n, np.int64)
    rows = np.zeros(n, np.bool_)  # whether an earlier process has a row that second
    for p, fn in zip(procs, fns, strict=True):
        assert fn is not None
        active = secs >= p.start_sec
        # The first process with a row draws from the device's key (v[3:6]), later ones their own.
        u = v[:, 3:6]
        own = active & rows
        if own.any():
            u = u.copy()
            u[own] = uniform_rows(seed, index, p.pid, secs[own].tolist(), 4)[:, :3]
        busy = _busy(p, seed, index, secs) if p.profile.phased else np.zeros(n, np.bool_)
        pg, pm, frac, cpu = fn(u[:, 0], u[:, 1], u[:, 2], secs - p.start_sec, busy)
        used = (frac * total).astype(np.int64) // MIB * MIB
        held = np.where(active, held + used, held)
        gpu = np.where(active, gpu + pg * 1.0, gpu)
        mem = np.where(active, mem + pm * 1.0, mem)
        cpu = np.where(active, cpu, 0.0)
        acc = np.cumsum(np.concatenate(([p.cpu_acc], cpu)))[:n]
        out.procs.append(ProcSeconds(p, active, used, np.rint(pg).astype(np.int64), cpu, acc))
        rows |= active
    gpu = np.where(gpu < 100.0, gpu, 100.0)
    mem = np.where(mem < 100.0, mem, 100.0)
    # device.load_fraction
    f = 0.8 * gpu + 0.2 * mem
    f = np.where((mem >= 50.0) & (mem > f), mem, f) / 100.0
    temp = m.idle_temp_c + (m.load_temp_c - m.idle_temp_c) * f + (v[:, 1] - 0.5) * 2.0
    sm = (m.max_sm_mhz * (1.0 - 0.06 * f) - 30.0 * v[:, 2]).astype(np.int64) // 15 * 15
    used_all = dev.model.memory_reserved + held
    # SimDevice._power_mw
    span = m.power_limit_w - m.idle_w
    watts = m.idle_w + span * f + (v[:, 0] - 0.5) * (1.0 + 0.03 * span * f)
    low = 0.9 * m.idle_w
    watts = np.where(
        watts > m.power_limit_w, float(m.power_limit_w), np.where(watts < low, low, watts)
    )
    power = (watts * 1000.0).astype(np.int64)
    out.any_proc = rows
    out.gpu_util = np.rint(gpu)
    out.mem_util = np.rint(mem)
    out.mem_used = np.where(used_all < total, used_all, total)
    out.power_mw = power
    out.temp_c = np.rint(temp)
    out.sm_clock = np.where(gpu < 1.0, m.idle_sm_mhz, sm)
    out.mem_clock = np.where(rows, m.max_mem_mhz, m.idle_mem_mhz)
    out.energy = np.cumsum(np.concatenate((np.array([energy0], np.int64), power)))[:n]
    return out


def _busy(p: SimProcess, seed: int, index: int, secs: Any) -> Any:
    """``SimDevice._busy`` of each second: its phase window drawn busy (a draw per window)."""
    window = secs // PHASE_WINDOW_S
    first = int(window[0])
    count = int(window[-1]) - first + 1
    draws = uniform_rows(seed, index, p.pid, [-1 - w for w in range(first, first + count)], 4)
    return (draws[:, 0] < 0.5)[window - first]
