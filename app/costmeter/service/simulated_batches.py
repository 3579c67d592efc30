"""``costmeter simulate``'s ticks made a chunk at a time, as ``TickBatch``es for the writer.

After the first tick (through ``Monitor.tick``: the real sampler over the fake, registering
the devices), each chunk of ticks is read from the simulated GPUs and host second by second,
but its columns go to the writer as arrays: no ``DeviceSample``, ``Interval`` or ``Tick``
objects, and the writer builds rows without reading them back attribute by attribute. The
GPUs' energy intervals are computed over the chunk as ``EnergyTracker.device_interval`` would
(counter deltas; a gap or a step back in time starts afresh); the host's come from the
tracker itself. tests/unit/test_simulated_batches.py holds the database written this way
equal to the one written tick by tick through the NVML sampler.

Only for GPUs the direct path reads with every metric and without MIG devices
(``DirectSimSampler.plain``); any other fleet is simulated tick by tick as before.

Where every process runs a profile with a column version, a chunk is not even read second by
second: the devices and the host are simulated over the whole chunk as numpy columns
(``sampling/simulated/gpu_columns.py``, ``host_columns.py``), the same values bit for bit;
the host's CPU energy intervals are then ``EnergyTracker.host_interval``'s estimate over the
columns (the simulated host has no RAPL counter). Otherwise ``make`` goes tick by tick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import GpuProcess, HostSample, Tick
from costmeter.core.tick_batch import DEVICE_FIELDS, HOST_FIELDS, TickBatch
from costmeter.cost.energy import EnergyTracker

if TYPE_CHECKING:
    from costmeter.sampling.simulated import SimulatedHostSampler
    from costmeter.sampling.simulated.direct import DirectSimSampler

#: Ticks per batch: big enough that a batch's fixed costs vanish, small enough that the
#: writer works while the next one is made (600 ticks of 8 GPUs: ~2 MB of columns).
CHUNK_TICKS = 600


class SimulatedBatches:
    """Makes the ticks after ``first`` as ``TickBatch``es (see the module's docstring)."""

    def __init__(
        self,
        gpu: DirectSimSampler,
        host: SimulatedHostSampler,
        clock: SimulatedClock,
        energy: EnergyTracker,
        first: Tick,
        *,
        cpu_count: int,
        tdp_w: float,
        tracked_pids: Callable[[], set[int]],
    ) -> None:
        import numpy

        self._np = numpy
        self._gpu = gpu
        self._host = host
        self._clock = clock
        self._energy = energy
        self._cpus = cpu_count
        self._tdp = tdp_w
        self._tracked = tracked_pids
        self._hostname = first.host
        self._devices = tuple((s.uuid, s.index) for s in first.devices)
        # The previous sample's time and energy counter of each GPU (as the tracker keeps it).
        self._prev_ts = numpy.array([s.ts for s in first.devices], numpy.float64)
        self._prev_energy = numpy.array([s.energy_mj for s in first.devices], numpy.int64)
        assert first.host_sample is not None  # see ``after``
        self._prev_host_ts = first.host_sample.ts

    @classmethod
    def after(
        cls,
        gpu: Any,
        host: Any,
        clock: Any,
        energy: EnergyTracker,
        first: Tick | None,
        *,
        cpu_count: int,
        tdp_w: float,
        tracked_pids: Callable[[], set[int]],
    ) -> SimulatedBatches | None:
        """Batches following ``first``, or None where they do not apply (numpy missing, GPUs
        the direct path does not read plainly, a first tick of another shape)."""
        from costmeter.sampling.simulated import SimulatedHostSampler
        from costmeter.sampling.simulated.direct import DirectSimSampler

        if not isinstance(gpu, DirectSimSampler) or not isinstance(host, SimulatedHostSampler):
            return None
        if not isinstance(clock, SimulatedClock) or first is None or not first.devices:
            return None
        if first.host_sample is None:
            return None
        if (
            not gpu.direct
            or not gpu.plain()
            or [d.uuid for d in gpu.devices] != [s.uuid for s in first.devices]
        ):
            return None
        if any(s.energy_mj is None or s.lost for s in first.devices):
            return None
        try:
            import numpy  # noqa: F401
        except ImportError:
            return None
        return cls(
            gpu,
            host,
            clock,
            energy,
            first,
            cpu_count=cpu_count,
            tdp_w=tdp_w,
            tracked_pids=tracked_pids,
        )

    def make(self, times: Sequence[float]) -> TickBatch:
        """The ticks at clock times ``times`` (ascending), leaving the clock at the last."""
        batch = self._make_in_columns(times)
        if batch is None:
            batch = self._make_by_tick(times)
        self._prev_host_ts = float(batch.ts[-1])
        return batch

    def _make_in_columns(self, times: Sequence[float]) -> TickBatch | None:
        """The ticks simulated over the chunk as columns, or None where they cannot be (a
        process whose profile has no column version): nothing has changed then."""
        from costmeter.sampling.simulated.host_columns import host_chunk

        np = self._np
        ts = np.array(times, np.float64)
        if len(ts) == 0 or (len(ts) > 1 and not (np.diff(ts) > 0).all()):
            return None
        secs = np.floor(ts).astype(np.int64)
        frac = ts - secs
        gpus = self._gpu.sample_columns(ts, secs, frac)
        if gpus is None:
            return None
        host_values, host_procs = host_chunk(self._host, gpus.spans, secs, frac)
        gpus.settle()
        self._clock.sleep_until(times[-1])
        dt_s, energy_j, measured = self._intervals(ts, gpus.device["energy_mj"])
        host_dt, host_energy = self._host_intervals(ts, host_values["cpu_percent"])
        batch = TickBatch(
            host=self._hostname,
            devices=self._devices,
            ts=ts,
            device=gpus.device,
            dt_s=dt_s,
            energy_j=energy_j,
            energy_measured=measured,
            host_values=host_values,
            host_dt_s=host_dt,
            host_energy_j=host_energy,
            host_energy_measured=np.zeros(len(ts), np.bool_),
            host_processes=host_procs,
            gpu_processes=gpus.processes,
        )
        # The tracker sees the last host sample, as after tick-by-tick sampling.
        last = batch.tick(len(batch) - 1).host_sample
        assert last is not None
        self._energy.host_interval(last, cpu_count=self._cpus, tdp_w=self._tdp)
        return batch

    def _host_intervals(self, ts: Any, cpu_percent: Any) -> tuple[Any, Any]:
        """``EnergyTracker.host_interval`` of each host sample without RAPL counters: the
        estimate ``tdp_w x utilisation x dt``, or ``(0, 0 J)`` after a gap or a step back."""
        np = self._np
        prev = np.empty_like(ts)
        prev[0] = self._prev_host_ts
        prev[1:] = ts[:-1]
        dt = ts - prev
        fresh = (dt <= 0) | (dt > self._energy.max_gap_s)
        percent = cpu_percent
        if self._cpus > 1:
            percent = np.where(percent > 100.0, percent / self._cpus, percent)
        share = np.minimum(np.maximum(percent, 0.0), 100.0) / 100.0
        energy = self._tdp * share * dt
        return np.where(fresh, 0.0, dt), np.where(fresh, 0.0, energy)

    def _make_by_tick(self, times: Sequence[float]) -> TickBatch:
        """The ticks read second by second from the devices' state (see the module)."""
        np = self._np
        n, k = len(times), len(self._devices)
        values: list[tuple[float, ...]] = []
        procs: list[tuple[GpuProcess, ...]] = []
        hosts: list[HostSample] = []
        host_dt: list[float] = []
        host_energy: list[float | None] = []
        host_measured: list[bool] = []
        sleep, sample_values = self._clock.sleep_until, self._gpu.sample_values
        host_sample, host_interval = self._host.sample, self._energy.host_interval
        cpus, tdp, tracked = self._cpus, self._tdp, self._tracked
        for t in times:
            sleep(t)
            at = len(procs)
            sample_values(t, values, procs)
            pids = {p.pid for gpu in procs[at:] for p in gpu} | tracked()
            hs = host_sample(frozenset(pids))
            iv = host_interval(hs, cpu_count=cpus, tdp_w=tdp)
            hosts.append(hs)
            host_dt.append(iv.dt_s)
            host_energy.append(iv.energy_j)
            host_measured.append(iv.energy_measured)
        table = np.array(values, np.float64).reshape(n, k, len(DEVICE_FIELDS))
        device = {name: table[:, :, i] for i, name in enumerate(DEVICE_FIELDS)}
        for name in ("mem_used", "energy_mj"):  # whole numbers, well below 2**53
            device[name] = device[name].astype(np.int64)
        ts = np.array(times, np.float64)
        dt_s, energy_j, measured = self._intervals(ts, device["energy_mj"])
        host_values = {name: np.array([getattr(hs, name) for hs in hosts]) for name in HOST_FIELDS}
        for name in ("mem_used", "mem_total", "swap_used"):
            host_values[name] = host_values[name].astype(np.int64)
        gpu_procs = tuple(tuple(procs[i * k : (i + 1) * k]) for i in range(n))
        host_procs = tuple(hs.processes for hs in hosts)
        return TickBatch(
            host=self._hostname,
            devices=self._devices,
            ts=ts,
            device=device,
            dt_s=dt_s,
            energy_j=energy_j,
            energy_measured=measured,
            host_values=host_values,
            host_dt_s=np.array(host_dt, np.float64),
            host_energy_j=np.array(host_energy, np.float64),
            host_energy_measured=np.array(host_measured, np.bool_),
            host_processes=host_procs if any(host_procs) else (),
            gpu_processes=gpu_procs if any(procs) else (),
        )

    def _intervals(self, ts: Any, energy_mj: Any) -> tuple[Any, Any, Any]:
        """``EnergyTracker.device_interval`` of each GPU sample: measured counter deltas over
        ``dt`` seconds, or ``(0, 0 J, measured)`` after a gap or a step back in time."""
        np = self._np
        n, k = energy_mj.shape
        prev_ts = np.empty((n, k), np.float64)
        prev_ts[0] = self._prev_ts
        prev_ts[1:] = ts[:-1, None]
        prev_e = np.empty((n, k), np.int64)
        prev_e[0] = self._prev_energy
        prev_e[1:] = energy_mj[:-1]
        dt = ts[:, None] - prev_ts
        fresh = (dt <= 0) | (dt > self._energy.max_gap_s)
        delta = energy_mj - prev_e
        if (delta[~fresh] < 0).any():  # a counter that went back: not the simulated GPUs'
            raise RuntimeError("A simulated energy counter went backwards.")
        dt_s = np.where(fresh, 0.0, dt)
        energy_j = np.where(fresh, 0.0, delta / 1000.0)
        self._prev_ts = np.full(k, ts[-1])
        self._prev_energy = energy_mj[-1].copy()
        return dt_s, energy_j, np.ones((n, k), np.bool_)
