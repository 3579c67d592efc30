"""A simulated host to go with simulated GPUs: CPU load follows the simulated processes.

Like the GPUs, every value is a pure function of (seed, whole second, the processes), except the
processes' CPU time, which integrates their CPU percent second by second.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from costmeter.core.clock import Clock
from costmeter.core.model import HostInfo, HostSample, ProcessSample
from costmeter.core.owner import Owner
from costmeter.sampling.simulated.device import SimDevice, SimProcess
from costmeter.sampling.simulated.fake_nvml import FakeNvml
from costmeter.sampling.simulated.noise import uniforms8

GIB = 1024**3


class SimulatedHostSampler:
    """Has the same ``info()`` / ``sample(tracked_pids)`` API as the psutil host sampler."""

    def __init__(
        self,
        fake: FakeNvml,
        *,
        clock: Clock | None = None,
        hostname: str = "sim-host",
        cpu_count: int = 32,
        memory_total: int = 256 * GIB,
    ) -> None:
        self._fake = fake
        self._clock = clock if clock is not None else fake.clock
        self._hostname = hostname
        self._cpus = cpu_count
        self._memory_total = memory_total
        self._placed: (
            tuple[tuple[tuple[SimProcess, ...], ...], list[tuple[SimDevice, SimProcess, Owner]]]
            | None
        ) = None

    @property
    def fake(self) -> FakeNvml:
        return self._fake

    @property
    def cpu_count(self) -> int:
        return self._cpus

    @property
    def memory_total(self) -> int:
        return self._memory_total

    def placement(self) -> list[tuple[SimDevice, SimProcess, Owner]]:
        """The host's processes in sample order: each simulated process by PID with the first
        GPU it runs on and its owner (for the column path, ``host_columns.py``)."""
        return self._placement()

    def info(self) -> HostInfo:
        return HostInfo(
            hostname=self._hostname,
            cpu_count=self._cpus,
            cpu_model="Simulated x86-64 CPU",
            memory_total=self._memory_total,
            physical_cores=max(1, self._cpus // 2),
        )

    def sample(self, tracked_pids: Collection[int] = ()) -> HostSample:
        """Host load now. Processes: every simulated GPU process (tracked PIDs that are not
        simulated do not exist on a simulated host, so they are left out); each is what
        ``FakeNvml.process_sample`` says of it (a test holds the two equal)."""
        t = self._clock.now()
        v = uniforms8(self._fake.seed, -1, -2, math.floor(t))
        procs: list[ProcessSample] = []
        disk_read = 0.0
        cpu_sum = 0.0
        rss = 0
        for dev, p, owner in self._placement():
            cpu, cpu_time = dev.cpu_now(p, t)
            cpu_sum += cpu
            rss += p.profile.rss
            procs.append(
                ProcessSample(
                    pid=p.pid,
                    create_time=p.create_time,
                    name=p.name,
                    cmdline=p.cmdline,
                    user=owner.user or p.user,
                    cpu_percent=cpu,
                    rss=p.profile.rss,
                    cpu_time_s=cpu_time,
                    owner=owner,
                )
            )
            if cpu > 10.0:
                disk_read += p.profile.disk_read_bps
        cpus = self._cpus
        base = cpus * (0.02 + 0.03 * v[0])
        busy = min(float(cpus), base + cpu_sum / 100.0)
        per_core = self._per_core(base, busy, int(v[1] * cpus))
        mem_used = min(self._memory_total, int(8 * GIB + 2 * GIB * v[2]) + rss)
        return HostSample(
            ts=t,
            cpu_percent=busy / cpus * 100.0,
            per_core=per_core,
            load1=busy * (0.97 + 0.06 * v[3]),
            load5=busy * 0.98,
            load15=busy * 0.95,
            mem_used=mem_used,
            mem_total=self._memory_total,
            swap_used=0,
            disk_read_bps=disk_read + 1e6 * v[4],
            disk_write_bps=5e5 + 4e6 * v[5],
            net_rx_bps=2e5 + 8e5 * v[6],
            net_tx_bps=1e5 + 4e5 * v[7],
            cpu_energy_uj=None,
            cpu_energy_range_uj=None,
            processes=tuple(procs),
        )

    def _placement(self) -> list[tuple[SimDevice, SimProcess, Owner]]:
        """Each simulated process by PID with the first GPU it runs on and its owner; rebuilt
        only when a device's process list changes (attach and detach replace the tuple)."""
        lists = tuple(d.processes for d in self._fake.devices)
        cached = self._placed
        if (
            cached is not None
            and len(cached[0]) == len(lists)
            and all(a is b for a, b in zip(cached[0], lists, strict=True))
        ):
            return cached[1]
        first: dict[int, tuple[SimDevice, SimProcess]] = {}
        for dev, procs in zip(self._fake.devices, lists, strict=True):
            for p in procs:
                first.setdefault(p.pid, (dev, p))
        rows = [(dev, p, self._fake.owner_of(p)) for dev, p in (first[k] for k in sorted(first))]
        self._placed = (lists, rows)
        return rows

    def _per_core(self, base: float, busy: float, start: int) -> tuple[float, ...]:
        """Spread ``base`` evenly and the processes' load core by core from ``start``."""
        cpus = self._cpus
        floor = base / cpus * 100.0
        cores = [floor] * cpus
        left = (busy - base) * 100.0
        i = 0
        while left > 1e-9 and i < cpus:
            k = (start + i) % cpus
            add = min(100.0 - cores[k], left)
            cores[k] += add
            left -= add
            i += 1
        return tuple(cores)
