"""Synthetic ticks for the store's tests and benchmarks (no sampler needed)."""

from __future__ import annotations

import random
from collections.abc import Iterator

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

GIB = 1 << 30


def host_info(host: str = "host-a", cpu_count: int = 8) -> HostInfo:
    return HostInfo(hostname=host, cpu_count=cpu_count, cpu_model="Test CPU", memory_total=64 * GIB)


def device_infos(host: str = "host-a", n: int = 2) -> list[DeviceInfo]:
    return [
        DeviceInfo(
            host=host,
            index=i,
            uuid=f"GPU-{host}-{i}",
            name="NVIDIA A100-SXM4-80GB",
            memory_total=80 * GIB,
            power_limit_w=400.0,
            architecture="Ampere",
            compute_capability=(8, 0),
        )
        for i in range(n)
    ]


def make_tick(
    ts: float,
    *,
    host: str = "host-a",
    devices: int = 2,
    util: float | None = 50.0,
    power_w: float | None = 200.0,
    dt: float = 1.0,
    measured: bool = True,
    cpu_percent: float = 25.0,
    lost: frozenset[int] = frozenset(),
    with_processes: bool = False,
) -> Tick:
    """A tick where every GPU shows the same values; energy is ``power_w * dt``."""
    samples = []
    intervals = {}
    for i in range(devices):
        uuid = f"GPU-{host}-{i}"
        if i in lost:
            samples.append(DeviceSample(uuid=uuid, index=i, ts=ts, lost=True))
            continue
        procs = (GpuProcess(pid=1000 + i, used_memory=GIB, sm_util=util),) if with_processes else ()
        samples.append(
            DeviceSample(
                uuid=uuid,
                index=i,
                ts=ts,
                gpu_util=util,
                mem_util=20.0,
                mem_used=10 * GIB,
                power_w=power_w,
                temp_c=55.0,
                sm_clock_mhz=1410.0,
                mem_clock_mhz=1215.0,
                processes=procs,
            )
        )
        energy = None if power_w is None else power_w * dt
        intervals[uuid] = Interval(dt_s=dt, energy_j=energy, energy_measured=measured)
    procs_cpu = (
        tuple(
            ProcessSample(1000 + i, 1.0e9, "python", "python train.py", "alice", 99.0, GIB, ts)
            for i in range(devices)
        )
        if with_processes
        else ()
    )
    hs = HostSample(
        ts=ts,
        cpu_percent=cpu_percent,
        per_core=(cpu_percent,) * 8,
        load1=1.5,
        load5=1.2,
        load15=1.0,
        mem_used=16 * GIB,
        mem_total=64 * GIB,
        swap_used=0,
        disk_read_bps=1e6,
        disk_write_bps=2e6,
        net_rx_bps=3e5,
        net_tx_bps=1e5,
        processes=procs_cpu,
    )
    return Tick(
        ts=ts,
        host=host,
        host_sample=hs,
        devices=tuple(samples),
        device_intervals=intervals,
        host_interval=Interval(dt_s=dt, energy_j=cpu_percent * dt, energy_measured=False),
    )


def realistic_ticks(
    start: float, seconds: int, devices: int, *, host: str = "bench", seed: int = 0
) -> Iterator[Tick]:
    """1 Hz ticks with jobs that start and stop: busy phases, idle phases, noisy values."""
    rng = random.Random(seed)
    busy = [False] * devices
    phase_end = [0] * devices
    mem = [0] * devices
    uuids = [f"GPU-{host}-{i}" for i in range(devices)]
    for k in range(seconds):
        ts = start + k
        samples = []
        intervals = {}
        for i in range(devices):
            if k >= phase_end[i]:
                busy[i] = not busy[i] if k else rng.random() < 0.6
                phase_end[i] = k + rng.randint(120, 5400)
                mem[i] = rng.randint(20, 75) * GIB if busy[i] else rng.randint(0, 2) * GIB
            util = min(100, max(0, rng.gauss(88, 8))) if busy[i] else rng.choice((0, 0, 0, 1, 3))
            power = 62 + util * 3.1 + rng.gauss(0, 6)
            samples.append(
                DeviceSample(
                    uuid=uuids[i],
                    index=i,
                    ts=ts,
                    gpu_util=round(util),
                    mem_util=round(util * 0.45),
                    mem_used=mem[i] + rng.randint(0, 64) * (1 << 20),
                    power_w=round(power, 3),
                    temp_c=round(34 + util * 0.42 + rng.random()),
                    sm_clock_mhz=1410.0 if busy[i] else 210.0,
                    mem_clock_mhz=1593.0,
                )
            )
            intervals[uuids[i]] = Interval(dt_s=1.0, energy_j=power, energy_measured=True)
        cpu = min(100.0, max(0.0, rng.gauss(30, 10)))
        hs = HostSample(
            ts=ts,
            cpu_percent=round(cpu, 1),
            per_core=tuple(round(min(100.0, max(0.0, cpu + rng.gauss(0, 8))), 1) for _ in range(8)),
            load1=round(cpu / 12, 2),
            load5=round(cpu / 13, 2),
            load15=round(cpu / 14, 2),
            mem_used=rng.randint(30, 40) * GIB,
            mem_total=64 * GIB,
            swap_used=0,
            disk_read_bps=rng.randint(0, 5_000_000),
            disk_write_bps=rng.randint(0, 20_000_000),
            net_rx_bps=rng.randint(0, 1_000_000),
            net_tx_bps=rng.randint(0, 500_000),
        )
        yield Tick(
            ts=ts,
            host=host,
            host_sample=hs,
            devices=tuple(samples),
            device_intervals=intervals,
            host_interval=Interval(dt_s=1.0, energy_j=cpu * 0.9, energy_measured=False),
        )
