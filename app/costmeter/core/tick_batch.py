"""Many ticks of one host at once, as columns: what bulk producers hand the store writer.

A ``TickBatch`` is ``n`` ticks of the common shape: one host, the same ``k`` GPUs in the same
order in every tick, no lost GPU, every value and interval known and finite, and every device
sampled at the tick's own time. Its columns are arrays (numpy, made by the producer: the core
stays standard library only), device columns shaped ``(n, k)`` and host columns ``(n,)``. The
writer turns them into stored rows without reading a million attributes from ``Tick`` objects
(``store/bulk_rows.py``); ``ticks()`` gives the same ticks as objects, and the rows written
either way are identical (tests/unit/test_store_tick_batch.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from costmeter.core.model import (
    DeviceSample,
    GpuProcess,
    HostSample,
    Interval,
    ProcessSample,
    Tick,
)

#: Device columns, each ``(n, k)``, in ``DeviceSample`` order (``mem_used`` and ``energy_mj``
#: hold whole numbers; ``energy_mj``, the counter, is not stored and may be left out).
DEVICE_FIELDS = (
    "gpu_util",
    "mem_util",
    "mem_used",
    "power_w",
    "energy_mj",
    "temp_c",
    "sm_clock_mhz",
    "mem_clock_mhz",
)
#: Host columns, each ``(n,)``, in ``HostSample`` order (``per_core`` is ``(n, cores)``).
HOST_FIELDS = (
    "cpu_percent",
    "per_core",
    "load1",
    "load5",
    "load15",
    "mem_used",
    "mem_total",
    "swap_used",
    "disk_read_bps",
    "disk_write_bps",
    "net_rx_bps",
    "net_tx_bps",
)


@dataclass(frozen=True, slots=True, eq=False)
class TickBatch:
    """``n`` consecutive ticks of one host, as columns (see the module's docstring)."""

    host: str
    #: (uuid, index) of each GPU, in column order.
    devices: tuple[tuple[str, int], ...]
    #: (n,) tick times in seconds: the host's and every device's sample time.
    ts: Any
    #: Device values by ``DEVICE_FIELDS`` name, each ``(n, k)``.
    device: dict[str, Any]
    #: (n, k) energy intervals of each device: seconds, joules, whether counted by the GPU.
    dt_s: Any
    energy_j: Any
    energy_measured: Any
    #: Host values by ``HOST_FIELDS`` name, each ``(n,)`` (``per_core``: ``(n, cores)``).
    host_values: dict[str, Any]
    #: (n,) the host's CPU energy intervals.
    host_dt_s: Any
    host_energy_j: Any
    host_energy_measured: Any
    #: Per tick, the host's processes (empty: none in any tick).
    host_processes: tuple[tuple[ProcessSample, ...], ...] = ()
    #: Per tick and GPU (column order), the processes on it (empty: none in any tick).
    gpu_processes: tuple[tuple[tuple[GpuProcess, ...], ...], ...] = ()

    def __len__(self) -> int:
        return len(self.ts)

    def ticks(self) -> Iterator[Tick]:
        """The same ticks as ``Tick`` objects (the per-tick path, and tests)."""
        return map(self.tick, range(len(self)))

    def tick(self, i: int) -> Tick:
        """Tick ``i`` as a ``Tick`` object."""
        t = float(self.ts[i])
        k = len(self.devices)
        dev: dict[str, Any] = {
            name: self.device[name][i].tolist() if name in self.device else [None] * k
            for name in DEVICE_FIELDS
        }
        gpu_procs = self.gpu_processes[i] if self.gpu_processes else ((),) * k
        samples = tuple(
            DeviceSample(
                uuid,
                index,
                t,
                **{name: dev[name][j] for name in DEVICE_FIELDS},
                processes=gpu_procs[j],
            )
            for j, (uuid, index) in enumerate(self.devices)
        )
        dt, energy = self.dt_s[i].tolist(), self.energy_j[i].tolist()
        measured = self.energy_measured[i].tolist()
        values = {name: self.host_values[name][i].tolist() for name in HOST_FIELDS}
        values["per_core"] = tuple(values["per_core"])
        return Tick(
            ts=t,
            host=self.host,
            host_sample=HostSample(
                t, **values, processes=self.host_processes[i] if self.host_processes else ()
            ),
            devices=samples,
            device_intervals={
                s.uuid: Interval(dt[j], energy[j], bool(measured[j])) for j, s in enumerate(samples)
            },
            host_interval=Interval(
                float(self.host_dt_s[i]),
                float(self.host_energy_j[i]),
                bool(self.host_energy_measured[i]),
            ),
        )
