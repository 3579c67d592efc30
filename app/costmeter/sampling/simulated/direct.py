"""Simulated GPUs read straight from their state: the fast path of ``costmeter simulate``.

``NvmlSampler`` over the fake pynvml spends most of a simulated week going call by call through
the pynvml API (ctypes structs, the fake's checks, the sampler's error handling). For bulk
history that is wasted: the values are the simulated devices' own. ``DirectSimSampler`` opens
and takes its first sample through the real sampler over the fake (so the devices' static facts,
what each model does not support and the messages saying so come from the real code), then
builds each ``DeviceSample`` from the devices' per-second state directly: the same values, of the
same types, in the same order. ``tests/unit/test_simulated_direct.py`` holds the two paths equal
tick by tick for several seeds, workload profiles, intervals and MIG layouts.

Only for a fake nobody meddles with: a GPU set to be lost, a fault other than a model's
permanent "not supported", or hidden process memory at the first tick sends every tick through
the sampler (``simulate`` injects none; faults injected later would not be seen). The
live ``--simulate`` (GUI, ``record``, agents) keeps the sampler, which is the point there: it
exercises the pynvml code a real driver meets.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pynvml

from costmeter.core.clock import Clock
from costmeter.core.model import DeviceInfo, DeviceSample, GpuProcess
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated.device import DevState, SimDevice
from costmeter.sampling.simulated.fake_nvml import FakeHandle, FakeNvml, mig_uuid

if TYPE_CHECKING:
    from costmeter.sampling.simulated.gpu_columns import GpuChunk

_floor = math.floor


class _Gpu:
    """What one physical GPU's sample reads, fixed after the first tick."""

    __slots__ = (
        "dev",
        "energy",
        "index",
        "last_seen_us",
        "mem",
        "mem_clock",
        "mig",
        "power",
        "proc_util",
        "procs",
        "sm_clock",
        "temp",
        "util",
        "uuid",
    )

    def __init__(self, dev: SimDevice, info: DeviceInfo, mig_on: bool, first: DeviceSample):
        off = info.unsupported
        self.dev = dev
        self.uuid = info.uuid
        self.index = info.index
        self.util = not mig_on and "gpu_util" not in off
        self.mem = "mem_used" not in off
        self.power = "power_w" not in off
        self.energy = "energy_mj" not in off
        self.temp = "temp_c" not in off
        self.sm_clock = "sm_clock_mhz" not in off
        self.mem_clock = "mem_clock_mhz" not in off
        self.procs = not mig_on and "processes" not in off
        self.proc_util = "process_util" not in off
        # The newest per-process sample the sampler has seen (NVML's ``lastSeenTimeStamp``):
        # every row of a second carries that second's stamp.
        seen = any(p.sm_util is not None for p in first.processes)
        self.last_seen_us = _floor(first.ts) * 1_000_000 if seen else 0
        #: (UUID, slot, whether its processes are read) of each MIG device, in slot order.
        self.mig: list[tuple[str, int, bool]] = []


class DirectSimSampler(NvmlSampler):
    """An ``NvmlSampler`` over ``fake`` whose samples after the first skip the pynvml API."""

    def __init__(self, fake: FakeNvml, *, host: str | None = None, clock: Clock | None = None):
        super().__init__(fake, host=host, clock=clock if clock is not None else fake.clock)
        self._fake = fake
        self._gpus: list[_Gpu] | None = None
        #: Whether ticks after the first are read directly; decided at the first tick (False
        #: then: the fake has faults or lost GPUs, and every tick goes through the sampler).
        self.direct = False
        self._first = True

    def sample(self) -> tuple[DeviceSample, ...]:
        if self._gpus is None or self._state != "open":
            out = super().sample()
            if self._first:
                self._first = False
                self._gpus = self._plan(out) if _untouched(self._fake) else None
                self.direct = self._gpus is not None
            return out
        return self._sample_direct()

    def _plan(self, first: tuple[DeviceSample, ...]) -> list[_Gpu] | None:
        """Match the sampler's devices (GPUs, each followed by its MIG devices) to the fake's;
        None if they do not line up (a GPU could not be opened)."""
        handles = {h.device.uuid: h for h in self._fake.handles}
        mig_on = self.mig_gpus()
        firsts = {s.uuid: s for s in first}
        gpus: list[_Gpu] = []
        for info in self.devices:
            handle = handles.get(info.uuid)
            if handle is not None:
                sample = firsts.get(info.uuid)
                if sample is None:
                    return None
                gpus.append(_Gpu(handle.device, info, info.uuid in mig_on, sample))
                continue
            if not gpus:
                return None
            gpu = gpus[-1]
            slot = len(gpu.mig)
            if slot >= len(gpu.dev.mig) or info.uuid != mig_uuid(gpu.uuid, slot):
                return None
            gpu.mig.append((info.uuid, slot, "processes" not in info.unsupported))
        if len(gpus) != len(handles) or any(len(g.mig) != len(g.dev.mig) for g in gpus if g.mig):
            return None
        return gpus

    def _sample_direct(self) -> tuple[DeviceSample, ...]:
        ts = self._clock.now()
        sec = _floor(ts)
        stamp = sec * 1_000_000
        out: list[DeviceSample] = []
        append = out.append
        assert self._gpus is not None
        for g in self._gpus:
            dev = g.dev
            st = dev.state(sec)
            procs = _processes(g, st, stamp) if g.procs else ()
            append(
                DeviceSample(
                    g.uuid,
                    g.index,
                    ts,
                    st.gpu_util if g.util else None,
                    st.mem_util if g.util else None,
                    st.mem_used if g.mem else None,
                    st.power_mw / 1000.0 if g.power else None,
                    dev.energy_mj(ts) if g.energy else None,
                    st.temp_c if g.temp else None,
                    st.sm_clock_mhz if g.sm_clock else None,
                    st.mem_clock_mhz if g.mem_clock else None,
                    procs,
                )
            )
            for uuid, slot, with_procs in g.mig:
                mine: tuple[GpuProcess, ...] = ()
                if with_procs:
                    mine = tuple(
                        GpuProcess(r[0].pid, r[1], None) for r in st.procs if r[0].instance == slot
                    )
                append(
                    DeviceSample(uuid, g.index, ts, None, None, st.mig_used[slot], processes=mine)
                )
        return tuple(out)

    def plain(self) -> bool:
        """Whether every GPU is read directly with every metric and without MIG devices: the
        shape ``sample_values`` serves (``costmeter simulate``'s tick batches)."""
        return self._gpus is not None and all(
            not g.mig
            and g.util
            and g.mem
            and g.power
            and g.energy
            and g.temp
            and g.sm_clock
            and g.mem_clock
            for g in self._gpus
        )

    def sample_values(
        self, ts: float, values: list[tuple[float, ...]], procs: list[tuple[GpuProcess, ...]]
    ) -> None:
        """What ``sample()`` at clock time ``ts`` would return, of ``plain()`` GPUs, appended
        as columns: to ``values`` one ``(gpu_util, mem_util, mem_used, power_w, energy_mj,
        temp_c, sm_clock_mhz, mem_clock_mhz)`` per GPU, to ``procs`` its processes."""
        sec = _floor(ts)
        stamp = sec * 1_000_000
        assert self._gpus is not None
        for g in self._gpus:
            dev = g.dev
            st = dev.state(sec)
            values.append(
                (
                    st.gpu_util,
                    st.mem_util,
                    st.mem_used,
                    st.power_mw / 1000.0,
                    dev.energy_mj(ts),
                    st.temp_c,
                    st.sm_clock_mhz,
                    st.mem_clock_mhz,
                )
            )
            procs.append(_processes(g, st, stamp) if g.procs else ())

    def sample_columns(self, ts: Any, secs: Any, frac: Any) -> GpuChunk | None:
        """What ``sample_values`` would give at clock times ``ts`` (a float64 array, ascending;
        ``secs`` their whole seconds, ``frac`` ``ts - secs``), of ``plain()`` GPUs, simulated
        over the chunk as columns (``gpu_columns.py``); None where that cannot be done."""
        from costmeter.sampling.simulated.gpu_columns import gpu_chunk

        assert self._gpus is not None
        return gpu_chunk(self._gpus, ts, secs, frac)


def _processes(g: _Gpu, st: DevState, stamp: int) -> tuple[GpuProcess, ...]:
    """The processes NVML lists on a GPU without MIG, with their SM use where NVML has a
    sample newer than the last one seen."""
    rows = [r for r in st.procs if r[0].instance is None]
    if not rows:
        return ()
    if g.proc_util and stamp > g.last_seen_us:
        g.last_seen_us = stamp
        return tuple(GpuProcess(r[0].pid, r[1], r[2]) for r in rows)
    # NVML has no sample newer than the last one seen
    return tuple(GpuProcess(r[0].pid, r[1], None) for r in rows)


def _untouched(fake: FakeNvml) -> bool:
    """Whether the fake's devices answer as the direct path assumes: no GPU set to be lost, no
    hidden process memory, no fault but a model's permanent "not supported"."""
    permanent = [pynvml.NVML_ERROR_NOT_SUPPORTED, -1]
    handles: list[FakeHandle] = []
    for h in fake.handles:
        handles.append(h)
        handles.extend(h.mig_handles)
    for h in handles:
        if h.device.lost_at is not None or h.memory_hidden:
            return False
        if any(fault != permanent for fault in h.faults.values()):
            return False
    return True
