"""Ticks of GPUs held by processes of named owners, written through the real store writer.

For the tests of budgets per owner and of advice naming owners. Import it with
``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))``, then ``import owned_history``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import (
    DeviceSample,
    GpuProcess,
    HostSample,
    Interval,
    ProcessSample,
    Tick,
)
from costmeter.core.owner import Owner
from costmeter.store import RetentionPolicy, Writer
from costmeter.store.testing import device_infos, host_info

GIB = 1 << 30
HOST = "host-a"
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)


@dataclass(frozen=True, slots=True)
class Holder:
    """A process on GPU ``gpu``: busy (``util`` > 0) or holding memory and running nothing."""

    gpu: int
    pid: int
    owner: Owner
    util: float
    power_w: float


@dataclass(frozen=True, slots=True)
class Stretch:
    """Ticks every ``step`` seconds after ``start`` up to ``end`` (each standing for ``step``
    seconds); GPUs not named by a holder are free (nothing on them, 0 % busy)."""

    start: float
    end: float
    holders: tuple[Holder, ...]
    step: float = 10.0
    free_power_w: float = 55.0


def ticks(stretch: Stretch, devices: int = 2) -> list[Tick]:
    out = []
    held = {h.gpu: h for h in stretch.holders}
    ts = stretch.start + stretch.step
    while ts <= stretch.end + 1e-6:
        samples = []
        intervals = {}
        for i in range(devices):
            uuid = f"GPU-{HOST}-{i}"
            h = held.get(i)
            power = h.power_w if h else stretch.free_power_w
            samples.append(
                DeviceSample(
                    uuid=uuid,
                    index=i,
                    ts=ts,
                    gpu_util=h.util if h else 0.0,
                    mem_util=h.util / 2 if h else 0.0,
                    mem_used=20 * GIB if h else 0,
                    power_w=power,
                    temp_c=50.0,
                    processes=(GpuProcess(h.pid, 20 * GIB, h.util),) if h else (),
                )
            )
            intervals[uuid] = Interval(
                dt_s=stretch.step, energy_j=power * stretch.step, energy_measured=True
            )
        procs = tuple(
            ProcessSample(
                h.pid,
                stretch.start - 60.0,
                "python",
                "python train.py",
                h.owner.user or "?",
                cpu_percent=0.0,
                rss=GIB,
                cpu_time_s=0.0,
                owner=h.owner,
            )
            for h in stretch.holders
        )
        host = HostSample(
            ts=ts, cpu_percent=0.0, per_core=(0.0,) * 8, load1=0.0, load5=0.0, load15=0.0,
            mem_used=8 * GIB, mem_total=64 * GIB, swap_used=0, disk_read_bps=0,
            disk_write_bps=0, net_rx_bps=0, net_tx_bps=0, processes=procs,
        )  # fmt: skip
        out.append(
            Tick(
                ts=ts,
                host=HOST,
                host_sample=host,
                devices=tuple(samples),
                device_intervals=intervals,
                host_interval=Interval(dt_s=stretch.step, energy_j=0.0, energy_measured=False),
            )
        )
        ts += stretch.step
    return out


def write(db: Path, stretches: Sequence[Stretch], devices: int = 2) -> None:
    """Every stretch's ticks, in time order, through the real writer into ``db``."""
    first = min(s.start for s in stretches)
    w = Writer(db, clock=SimulatedClock(first), retention=KEEP_ALL, batch_ticks=200)
    w.start()
    w.register(host_info(HOST), device_infos(HOST, devices))
    for stretch in sorted(stretches, key=lambda s: s.start):
        for tick in ticks(stretch, devices):
            w.submit(tick, wait=True)
    assert w.flush(60)
    w.stop()
