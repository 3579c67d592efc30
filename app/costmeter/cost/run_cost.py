"""What one run cost: its share of each GPU it held, its CPU time, and an estimate beforehand.

GPU: for every sampling interval of a GPU the run held, the run's share of that GPU times the
interval is priced like any device time (``price_device``: hourly price, plus its share of the
energy at the tariff unless the price includes electricity). The share is

- 1 (the whole GPU) when only the run's processes are on it;
- when other processes share it, the run's part of the memory held on the GPU, averaged with its
  part of the SM utilisation where NVML reports that (by process count if neither is known);
- while none of the run's processes is on the GPU (start-up, a CPU phase), a GPU placed for it
  is still reserved for it: 1 / (runs placed on that GPU) when the GPU is empty, 0 when others
  use it. A GPU the run was not placed on (it asked for none, and its processes showed up
  there anyway) costs it nothing while its processes are not on it.

CPU: the run's processes' CPU time (core-seconds) at the core-hour price, plus the part of the
host's CPU energy those core-seconds stand for (their share of all busy core-seconds over the
run; estimated from the TDP when the host's energy is unknown). So a CPU-only run costs more
than zero as soon as it has used any CPU time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from costmeter.core.model import DeviceUsage, HostUsage
from costmeter.cost.ledger import J_PER_KWH, DeviceCost, format_money, price_device
from costmeter.cost.pricing import Pricing


@dataclass(frozen=True, slots=True)
class GpuTick:
    """One sampling interval of a GPU the run held (or the part of it within the run)."""

    dt_s: float
    energy_j: float | None
    energy_measured: bool
    #: Processes of the run on the GPU at the sample, and the memory (bytes) and SM % they had.
    run_procs: int
    run_mem: int | None
    run_sm: float | None
    #: Every other process on the GPU at the sample.
    other_procs: int
    other_mem: int | None
    other_sm: float | None
    #: Costmeter runs placed on this GPU at the time, this one included; 0 when this run was
    #: not placed on it.
    holders: int = 1


def gpu_share(t: GpuTick) -> float:
    """The run's share (0..1) of a GPU over one interval; see the module's docstring."""
    if t.run_procs == 0:
        return 1.0 / t.holders if t.other_procs == 0 and t.holders > 0 else 0.0
    if t.other_procs == 0:
        return 1.0
    parts = []
    for mine, theirs in ((t.run_mem, t.other_mem), (t.run_sm, t.other_sm)):
        if mine is not None and theirs is not None and mine + theirs > 0:
            parts.append(mine / (mine + theirs))
    if parts:
        return sum(parts) / len(parts)
    return t.run_procs / (t.run_procs + t.other_procs)


@dataclass(frozen=True, slots=True)
class RunDeviceUse:
    host: str
    index: int
    uuid: str
    name: str
    ticks: tuple[GpuTick, ...]


@dataclass(frozen=True, slots=True)
class RunUsage:
    """What a run used; the store gathers it, ``price_run`` prices it."""

    duration_s: float
    devices: tuple[RunDeviceUse, ...]
    #: CPU time of the run's processes (user + system, all cores), in seconds.
    cpu_seconds: float
    cpu_count: int
    #: The whole host over the run's lifetime (for its CPU energy); None when not sampled.
    host: HostUsage | None = None


@dataclass(frozen=True, slots=True)
class RunCost:
    currency: str
    devices: tuple[DeviceCost, ...]
    #: GPU-seconds charged to the run (shares applied).
    gpu_seconds: float
    cpu_seconds: float
    cpu_cost: float
    cpu_energy_kwh: float
    #: Worked out from elapsed time x allocated GPUs x price: no sample covered the run
    #: (``costmeter.cost.run_estimate``); ``note`` says why and from what.
    estimated: bool = False
    #: Words on what the cost stands on (why estimated, or samples covering only part of it).
    note: str = ""

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0

    @property
    def gpu_cost(self) -> float:
        return math.fsum(d.cost for d in self.devices)

    @property
    def energy_kwh(self) -> float:
        return math.fsum(d.energy_kwh for d in self.devices) + self.cpu_energy_kwh

    @property
    def cost(self) -> float:
        return self.gpu_cost + self.cpu_cost


def device_usage(use: RunDeviceUse) -> DeviceUsage:
    """The run's share of one GPU as device usage, ready for the ledger's ``price_device``."""
    seconds = energy = measured = 0.0
    for t in use.ticks:
        share = gpu_share(t)
        seconds += share * t.dt_s
        if t.energy_j is not None:
            energy += share * t.energy_j
            if t.energy_measured:
                measured += share * t.energy_j
    return DeviceUsage(
        host=use.host,
        index=use.index,
        uuid=use.uuid,
        name=use.name,
        seconds=seconds,
        idle_seconds=0.0,
        avg_util=None,
        energy_j=energy,
        energy_measured_j=measured,
    )


def price_run(usage: RunUsage, pricing: Pricing) -> RunCost:
    devices = tuple(price_device(device_usage(d), pricing) for d in usage.devices)
    cpu_s = max(0.0, usage.cpu_seconds)
    host = usage.host
    if host is not None and host.busy_core_seconds > 0 and host.cpu_energy_j > 0:
        cpu_energy_j = min(1.0, cpu_s / host.busy_core_seconds) * host.cpu_energy_j
    else:  # the ledger's estimate: TDP x the share of the machine's cores kept busy
        cpu_energy_j = pricing.cpu_tdp_w * cpu_s / max(1, usage.cpu_count)
    cpu_energy_kwh = cpu_energy_j / J_PER_KWH
    cpu_cost = cpu_s / 3600.0 * pricing.cpu_core_hour + cpu_energy_kwh * pricing.tariff_per_kwh
    return RunCost(
        currency=pricing.currency,
        devices=devices,
        gpu_seconds=math.fsum(d.hours for d in devices) * 3600.0,
        cpu_seconds=cpu_s,
        cpu_cost=cpu_cost,
        cpu_energy_kwh=cpu_energy_kwh,
    )


def forecast_total(cost_so_far: float, fraction_done: float | None) -> float | None:
    """Cost at completion, assuming the rest costs what the part done did (None if unknown)."""
    if fraction_done is None or not 0 < fraction_done <= 1:
        return None
    return cost_so_far / fraction_done


def format_cost(value: float, currency: str) -> str:
    """Money with two significant digits however small (a short run costs fractions of a cent):
    ``$4.30``, ``$0.42``, ``$0.0031``, ``$0.000038``."""
    if value == 0 or not math.isfinite(value):
        return format_money(value, currency)
    digits = max(2, min(8, 1 - math.floor(math.log10(abs(value)))))
    return format_money(value, currency, digits=digits)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A cost expected before a run starts, from past runs of the same command."""

    amount: float | None
    runs: int
    currency: str

    def describe(self) -> str:
        """``about $0.42 (median of 3 past runs)``, or why there is no estimate."""
        if self.amount is None or self.runs == 0:
            return "no estimate yet (no finished past run of this command)"
        money = format_cost(self.amount, self.currency)
        if self.runs == 1:
            return f"about {money} (from 1 past run)"
        return f"about {money} (median of {self.runs} past runs)"


def estimate_cost(past_costs: Sequence[float], currency: str) -> Estimate:
    """The median of the past runs' costs (robust to one run that was cut short or stalled)."""
    costs = [c for c in past_costs if c is not None and math.isfinite(c) and c >= 0]
    if not costs:
        return Estimate(None, 0, currency)
    return Estimate(statistics.median(costs), len(costs), currency)
