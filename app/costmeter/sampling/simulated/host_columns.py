"""What ``SimulatedHostSampler.sample`` returns, for a chunk of ticks at once, as columns.

The processes' CPU use comes from the devices' seconds (``device_columns.py``), read at each
tick as ``SimDevice.cpu_now`` reads it; the host's own draws, sums and its spreading of load
over the cores are the sampler's arithmetic, element by element in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from costmeter.core.model import ProcessSample
from costmeter.sampling.simulated.columns_noise import uniform_rows
from costmeter.sampling.simulated.device_columns import DeviceSeconds
from costmeter.sampling.simulated.host import GIB, SimulatedHostSampler


def host_chunk(
    host: SimulatedHostSampler, spans: Sequence[DeviceSeconds], secs: Any, frac: Any
) -> tuple[dict[str, Any], tuple[tuple[ProcessSample, ...], ...]]:
    """``TickBatch.host_values`` and ``host_processes`` at the ticks of whole seconds ``secs``
    (``frac``: each tick's time past its second), from the devices over the chunk."""
    n = len(secs)
    by_dev = {id(span.dev): span for span in spans}
    v = uniform_rows(host.fake.seed, -1, -2, secs.tolist())
    cpu_sum = np.zeros(n)
    disk_read = np.zeros(n)
    rss = 0
    columns: list[list[ProcessSample]] = []
    for dev, p, owner in host.placement():
        span = by_dev[id(dev)]
        ps = next(ps for ps in span.procs if ps.proc is p)
        at = secs - span.lo
        cpu = ps.cpu[at]
        cpu_time = (ps.acc[at] + cpu * frac) / 100.0
        cpu_time = np.where(cpu_time > 0.0, cpu_time, 0.0)  # max(0.0, x)
        cpu_sum = cpu_sum + cpu
        rss += p.profile.rss
        disk_read = np.where(cpu > 10.0, disk_read + p.profile.disk_read_bps, disk_read)
        columns.append(
            list(
                map(
                    ProcessSample,
                    repeat(p.pid, n),
                    repeat(p.create_time),
                    repeat(p.name),
                    repeat(p.cmdline),
                    repeat(owner.user or p.user),
                    cpu.tolist(),
                    repeat(p.profile.rss),
                    cpu_time.tolist(),
                    repeat(owner),
                )
            )
        )
    cpus, total = host.cpu_count, host.memory_total
    base = cpus * (0.02 + 0.03 * v[:, 0])
    busy = np.minimum(float(cpus), base + cpu_sum / 100.0)
    mem_used = (8 * GIB + 2 * GIB * v[:, 2]).astype(np.int64) + rss
    values = {
        "cpu_percent": busy / cpus * 100.0,
        "per_core": per_core(cpus, base, busy, (v[:, 1] * cpus).astype(np.int64)),
        "load1": busy * (0.97 + 0.06 * v[:, 3]),
        "load5": busy * 0.98,
        "load15": busy * 0.95,
        "mem_used": np.where(mem_used < total, mem_used, total),
        "mem_total": np.full(n, total, np.int64),
        "swap_used": np.zeros(n, np.int64),
        "disk_read_bps": disk_read + 1e6 * v[:, 4],
        "disk_write_bps": 5e5 + 4e6 * v[:, 5],
        "net_rx_bps": 2e5 + 8e5 * v[:, 6],
        "net_tx_bps": 1e5 + 4e5 * v[:, 7],
    }
    processes = tuple(zip(*columns, strict=True)) if columns else ()
    return values, processes


def per_core(cpus: int, base: Any, busy: Any, start: Any) -> Any:
    """``SimulatedHostSampler._per_core`` of each row, ``(n, cpus)``: ``base`` spread evenly,
    the processes' load filling cores one by one from ``start``."""
    n = len(base)
    cores = np.repeat((base / cpus * 100.0)[:, None], cpus, axis=1)
    left = (busy - base) * 100.0
    rows = np.arange(n)
    for i in range(cpus):
        go = left > 1e-9
        if not go.any():
            break
        r = rows[go]
        k = (start[go] + i) % cpus
        add = np.minimum(100.0 - cores[r, k], left[go])
        cores[r, k] = cores[r, k] + add
        left[go] = left[go] - add
    return cores
