"""What the machine costs per hour right now, from the latest sample.

The same definitions as the ledger, applied to one instant: every attached GPU costs its hourly
price, plus its power at the tariff unless the price includes electricity; the host costs its
cores at the core-hour price plus its CPU power at the tariff. A GPU under the idle threshold
counts its whole rate as idle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from costmeter.core.model import DeviceInfo, DeviceSample, HostInfo, HostSample
from costmeter.cost.pricing import Pricing

#: Utilisation (percent) under which a GPU counts as idle, as in the ledger and the store.
IDLE_UTIL_PERCENT = 5.0


@dataclass(frozen=True, slots=True)
class GpuState:
    """What a GPU is doing now, in the words the Overview uses."""

    uuid: str
    state: (
        str  # "busy", "idle", "idle-allocated" (a process holds memory but it does no work), "lost"
    )


@dataclass(frozen=True, slots=True)
class RateNow:
    currency: str
    #: Money per hour at this instant, everything included.
    per_hour: float
    #: The part of ``per_hour`` paid for GPUs that are idle and for unused CPU cores.
    idle_per_hour: float
    gpu_per_hour: float
    host_per_hour: float
    #: Electrical power drawn by the GPUs and the CPU, in watts (what is known of it).
    power_w: float


def gpu_state(sample: DeviceSample) -> str:
    if sample.lost:
        return "lost"
    util = sample.gpu_util
    if util is not None and util >= IDLE_UTIL_PERCENT:
        return "busy"
    return "idle-allocated" if sample.processes else "idle"


def gpu_states(samples: Iterable[DeviceSample]) -> dict[str, int]:
    """How many GPUs are in each state (every state present, zero or not)."""
    counts = {"busy": 0, "idle": 0, "idle-allocated": 0, "lost": 0}
    for s in samples:
        counts[gpu_state(s)] += 1
    return counts


def rate_now(
    devices: Mapping[str, DeviceInfo],
    samples: Iterable[DeviceSample],
    host_info: HostInfo | None,
    host_sample: HostSample | None,
    pricing: Pricing,
    *,
    cpu_power_w: float | None = None,
) -> RateNow:
    """Money per hour from one tick. ``cpu_power_w``: measured CPU power (RAPL) when known;
    otherwise it is estimated from the TDP and utilisation, as the ledger does."""
    gpu = idle = power = 0.0
    tariff_per_wh = pricing.tariff_per_kwh / 1000.0
    for s in samples:
        info = devices.get(s.uuid)
        if info is None or s.lost:
            continue
        match = pricing.gpu_price(info.name)
        rate = match.hourly
        watts = s.power_w or 0.0
        power += watts
        if not (match.row is not None and match.row.includes_energy):
            rate += watts * tariff_per_wh
        gpu += rate
        if gpu_state(s) != "busy":
            idle += rate
    host = 0.0
    if host_info is not None and host_sample is not None:
        busy = max(0.0, min(100.0, host_sample.cpu_percent)) / 100.0
        cores = host_info.cpu_count * pricing.cpu_core_hour
        watts = cpu_power_w if cpu_power_w is not None else pricing.cpu_tdp_w * busy
        power += watts
        host = cores + watts * tariff_per_wh
        idle += cores * (1.0 - busy)
    return RateNow(pricing.currency, gpu + host, idle, gpu, host, power)
