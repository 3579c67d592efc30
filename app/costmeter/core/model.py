"""Frozen value types that flow from samplers through the store to cost and advice.

Units are part of the field names (``_w``, ``_mj``, ``_mhz``, bytes where unnamed). A value of
``None`` means "not available" (the metric is unsupported on that device, or could not be read
this tick); samplers record the reason once in ``DeviceInfo.unsupported``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from costmeter.core.owner import Owner

#: A GPU (or the host's CPUs) counts as idle while its utilisation is under this many percent.
IDLE_UTIL_PERCENT = 5.0

#: Per-tick device metrics, in the order the store keeps them. ``energy_mj`` is the device's
#: cumulative energy counter; the store keeps per-interval deltas instead (see ``Interval``).
DEVICE_METRICS: tuple[str, ...] = (
    "gpu_util",
    "mem_util",
    "mem_used",
    "power_w",
    "energy_mj",
    "temp_c",
    "sm_clock_mhz",
    "mem_clock_mhz",
)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What does not change while a GPU is attached."""

    host: str
    index: int
    uuid: str
    name: str
    memory_total: int
    power_limit_w: float | None = None
    architecture: str | None = None
    compute_capability: tuple[int, int] | None = None
    #: Metric names (from ``DEVICE_METRICS`` or "processes", "process_util") that raised
    #: NotSupported on this device and are no longer asked for.
    unsupported: frozenset[str] = frozenset()
    #: Bytes the driver reserves for itself (NVML memory info v2 ``reserved``, R510+): part of
    #: every ``mem_used``, never freeable by a process. None where unknown.
    memory_reserved: int | None = None


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory on one GPU."""

    pid: int
    used_memory: int | None
    sm_util: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceSample:
    """One GPU at one instant."""

    uuid: str
    index: int
    ts: float
    gpu_util: float | None = None
    mem_util: float | None = None
    mem_used: int | None = None
    power_w: float | None = None
    energy_mj: int | None = None
    temp_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    processes: tuple[GpuProcess, ...] = ()
    #: True once the GPU fell off the bus (``NVMLError_GpuIsLost``); all values are then None.
    lost: bool = False


@dataclass(frozen=True, slots=True)
class HostInfo:
    hostname: str
    cpu_count: int
    cpu_model: str
    memory_total: int
    physical_cores: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """CPU-side view of one process that holds a GPU or belongs to a run."""

    pid: int
    create_time: float
    name: str
    cmdline: str
    user: str
    cpu_percent: float
    rss: int
    cpu_time_s: float
    #: Who it belongs to, read once when first seen; None where nobody looked (old agents,
    #: imported logs).
    owner: Owner | None = None


@dataclass(frozen=True, slots=True)
class HostSample:
    ts: float
    cpu_percent: float
    per_core: tuple[float, ...]
    load1: float
    load5: float
    load15: float
    mem_used: int
    mem_total: int
    swap_used: int
    disk_read_bps: float
    disk_write_bps: float
    net_rx_bps: float
    net_tx_bps: float
    #: RAPL package energy counters in microjoules, one per package; None without RAPL.
    cpu_energy_uj: tuple[int, ...] | None = None
    #: Where each of those counters wraps (``max_energy_range_uj``), in the same order.
    cpu_energy_range_uj: tuple[int, ...] | None = None
    processes: tuple[ProcessSample, ...] = ()


@dataclass(frozen=True, slots=True)
class Interval:
    """What one sample stands for: the time since the previous one and the energy used in it.

    ``dt_s`` is 0 for the first sample after a gap (nothing is known about the time before it).
    ``energy_j`` is measured when it comes from a hardware counter (NVML total energy, RAPL),
    estimated when integrated from power or derived from utilisation.
    """

    dt_s: float
    energy_j: float | None
    energy_measured: bool


@dataclass(frozen=True, slots=True)
class Tick:
    """Everything one sampling tick produced on one host."""

    ts: float
    host: str
    host_sample: HostSample | None
    devices: tuple[DeviceSample, ...] = ()
    device_intervals: dict[str, Interval] = field(default_factory=dict)
    host_interval: Interval | None = None
    #: Processes known only by their owner, with no CPU-side sample (an exporter's Kubernetes
    #: workloads, ``costmeter.service.remote.pods``): stored with their owners, no CPU rows.
    processes: tuple[ProcessSample, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceUsage:
    """One GPU's use over a period, as the store aggregates it and cost prices it."""

    host: str
    index: int
    uuid: str
    name: str
    seconds: float
    idle_seconds: float
    #: Time-weighted mean utilisation in percent over the seconds with a known utilisation.
    avg_util: float | None
    energy_j: float
    #: The part of ``energy_j`` that came from the hardware counter.
    energy_measured_j: float
    #: Energy used during the idle seconds (part of ``energy_j``).
    idle_energy_j: float = 0.0
    lost: bool = False

    @property
    def energy_source(self) -> str:
        """``measured`` only when every joule came from a counter, ``none`` without energy."""
        return _energy_source(self.energy_j, self.energy_measured_j)


@dataclass(frozen=True, slots=True)
class HostUsage:
    """One host's CPUs over a period."""

    host: str
    cpu_count: int
    seconds: float
    #: Sum over the period of (CPU percent / 100 x cores x seconds): core-seconds actually used.
    busy_core_seconds: float
    cpu_energy_j: float
    cpu_energy_measured_j: float

    @property
    def energy_source(self) -> str:
        return _energy_source(self.cpu_energy_j, self.cpu_energy_measured_j)


def _energy_source(total_j: float, measured_j: float) -> str:
    if total_j <= 0:
        return "none"
    return "measured" if measured_j >= total_j * 0.9999 else "estimated"
