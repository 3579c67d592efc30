"""What ``DirectSimSampler.sample_values`` reads of each GPU, for a chunk of ticks at once.

The devices' seconds come from ``device_columns.py``; here they are picked at each tick's second
and turned into ``TickBatch`` device columns ``(n, k)`` and per-tick process tuples, with the
energy counter read at the tick's time (``SimDevice.energy_mj``: the counter at the start of the
second plus the truncated share of that second's power, never below the last value read) and
NVML's per-process samples (``direct._processes``: SM use only where a sample newer than the
last one seen exists). ``settle`` then leaves every device as the tick-by-tick reads would.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any, Protocol

import numpy as np

from costmeter.core.model import GpuProcess
from costmeter.core.tick_batch import DEVICE_FIELDS
from costmeter.sampling.simulated.device import SimDevice
from costmeter.sampling.simulated.device_columns import DeviceSeconds, device_seconds


class GpuPlan(Protocol):
    """What the direct sampler knows of one GPU (``direct._Gpu``)."""

    dev: SimDevice
    procs: bool
    proc_util: bool
    last_seen_us: int


class GpuChunk:
    """The GPUs over one chunk of ticks: columns, processes, and what to settle."""

    __slots__ = ("device", "last_energy", "processes", "spans")

    def __init__(
        self,
        device: dict[str, Any],
        processes: tuple[tuple[tuple[GpuProcess, ...], ...], ...],
        spans: list[DeviceSeconds],
        last_energy: list[int],
    ) -> None:
        #: ``TickBatch.device``: columns by ``DEVICE_FIELDS`` name, each ``(n, k)``.
        self.device = device
        #: ``TickBatch.gpu_processes`` (empty: no process in any tick).
        self.processes = processes
        self.spans = spans
        self.last_energy = last_energy

    def settle(self) -> None:
        """Leave each device's integrals where reading it tick by tick would have."""
        for span, last in zip(self.spans, self.last_energy, strict=True):
            span.dev.settle(
                span.hi,
                int(span.energy[-1]),
                last,
                [(ps.proc, float(ps.acc[-1])) for ps in span.procs],
            )


def gpu_chunk(gpus: Sequence[GpuPlan], ts: Any, secs: Any, frac: Any) -> GpuChunk | None:
    """The GPUs at clock times ``ts`` (float64, ascending; ``secs`` their whole seconds, ``frac``
    ``ts - secs``), or None where a GPU cannot be simulated in columns (nothing changed then).
    Updates each plan's ``last_seen_us``; the caller calls ``settle`` once the batch is made."""
    n, k = len(ts), len(gpus)
    hi = int(secs[-1])
    spans: list[DeviceSeconds] = []
    for g in gpus:
        lo = g.dev.integrals()[0]
        span = device_seconds(g.dev, lo, hi) if lo <= int(secs[0]) else None
        if span is None:
            return None
        spans.append(span)
    device = {name: np.empty((n, k), np.float64) for name in DEVICE_FIELDS}
    device["mem_used"] = np.empty((n, k), np.int64)
    device["energy_mj"] = np.empty((n, k), np.int64)
    per_gpu: list[list[tuple[GpuProcess, ...]]] = []
    last_energy: list[int] = []
    stamps = secs * 1_000_000
    for j, (g, span) in enumerate(zip(gpus, spans, strict=True)):
        at = secs - span.lo
        power = span.power_mw[at]
        device["gpu_util"][:, j] = span.gpu_util[at]
        device["mem_util"][:, j] = span.mem_util[at]
        device["mem_used"][:, j] = span.mem_used[at]
        device["power_w"][:, j] = power / 1000.0
        energy = span.energy[at] + (power * frac).astype(np.int64)
        start = np.array([g.dev.integrals()[2]], np.int64)
        energy = np.maximum.accumulate(np.concatenate((start, energy)))[1:]
        device["energy_mj"][:, j] = energy
        last_energy.append(int(energy[-1]))
        device["temp_c"][:, j] = span.temp_c[at]
        device["sm_clock_mhz"][:, j] = span.sm_clock[at]
        device["mem_clock_mhz"][:, j] = span.mem_clock[at]
        per_gpu.append(_processes(g, span, at, stamps) if g.procs else [()] * n)
    any_procs = any(any(col) for col in per_gpu)
    processes = tuple(zip(*per_gpu, strict=True)) if any_procs else ()
    return GpuChunk(device, processes, spans, last_energy)


def _processes(
    g: GpuPlan, span: DeviceSeconds, at: Any, stamps: Any
) -> list[tuple[GpuProcess, ...]]:
    """Each tick's processes on ``g``, as ``direct._processes`` lists them, updating
    ``g.last_seen_us`` as it would."""
    n = len(at)
    if not span.procs:
        return [()] * n
    listed = span.any_proc[at]
    if g.proc_util:
        # A tick has a newer sample where its stamp is above every stamp seen before it.
        seen = np.where(listed, stamps, -1)
        before = np.maximum.accumulate(np.concatenate(([g.last_seen_us], seen)))
        fresh = listed & (stamps > before[:-1])
        g.last_seen_us = int(before[-1])
    else:
        fresh = np.zeros(n, np.bool_)
    columns: list[list[GpuProcess | None]] = []
    every = True
    for ps in span.procs:
        active = ps.active[at]
        sm: list[int | None] = ps.sm[at].tolist()
        if not fresh.all():
            sm = [s if f else None for s, f in zip(sm, fresh.tolist(), strict=True)]
        objs: list[GpuProcess | None] = list(
            map(GpuProcess, repeat(ps.proc.pid, n), ps.used[at].tolist(), sm)
        )
        if not active.all():
            every = False
            objs = [o if a else None for o, a in zip(objs, active.tolist(), strict=True)]
        columns.append(objs)
    if every:
        return list(zip(*columns, strict=True))
    return [tuple(o for o in row if o is not None) for row in zip(*columns, strict=True)]
