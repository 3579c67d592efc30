"""``/metrics``: the latest tick in the Prometheus text format, through prometheus_client.

A custom collector builds every family from the newest tick when scraped (nothing is kept in
prometheus_client's own state), so a scrape never sees half a tick. Names, units and labels are
documented in docs/AGENT.md; keep them stable (dashboards depend on them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from costmeter.core.model import DeviceInfo, DeviceSample, HostInfo, HostSample, Tick

GPU_LABELS = ("host", "gpu", "uuid", "model")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a scrape reports: the agent's state at one instant."""

    host: HostInfo
    devices: tuple[DeviceInfo, ...]
    tick: Tick | None
    version: str
    gpu_mode: str
    buffered: int
    oldest: float | None


# (name, help, attribute of DeviceSample, factor to the base unit)
_GPU_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("costmeter_gpu_utilization_percent", "GPU (SM) utilisation, percent.", "gpu_util", 1.0),
    (
        "costmeter_gpu_memory_utilization_percent",
        "GPU memory-controller utilisation, percent.",
        "mem_util",
        1.0,
    ),
    ("costmeter_gpu_memory_used_bytes", "GPU memory in use, bytes.", "mem_used", 1.0),
    ("costmeter_gpu_power_watts", "GPU power draw, watts.", "power_w", 1.0),
    ("costmeter_gpu_temperature_celsius", "GPU temperature, degrees Celsius.", "temp_c", 1.0),
    ("costmeter_gpu_sm_clock_hertz", "GPU SM clock, hertz.", "sm_clock_mhz", 1e6),
    ("costmeter_gpu_memory_clock_hertz", "GPU memory clock, hertz.", "mem_clock_mhz", 1e6),
)


class TickCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        host = snap.host.hostname
        info = GaugeMetricFamily(
            "costmeter_agent_info",
            "The agent: its Costmeter version and where its GPU readings come from (always 1).",
            labels=("host", "version", "gpu_mode"),
        )
        info.add_metric((host, snap.version, snap.gpu_mode), 1.0)
        yield info
        yield _gauge(
            "costmeter_agent_buffered_samples",
            "Samples held in the agent's local buffer for backfill.",
            host,
            snap.buffered,
        )
        if snap.oldest is not None:
            yield _gauge(
                "costmeter_agent_buffer_oldest_timestamp_seconds",
                "Time of the oldest buffered sample, seconds since the epoch.",
                host,
                snap.oldest,
            )
        yield _gauge(
            "costmeter_host_cpu_count", "Logical CPUs of the host.", host, snap.host.cpu_count
        )
        yield _gauge(
            "costmeter_host_memory_total_bytes",
            "Physical memory of the host, bytes.",
            host,
            snap.host.memory_total,
        )
        yield from _device_info(host, snap.devices)
        tick = snap.tick
        if tick is None:
            return
        yield _gauge(
            "costmeter_agent_last_sample_timestamp_seconds",
            "Time of the newest sample, seconds since the epoch.",
            host,
            tick.ts,
        )
        models = {d.uuid: d.name for d in snap.devices}
        yield from _gpu_families(host, tick.devices, models)
        if tick.host_sample is not None:
            yield from _host_families(host, tick.host_sample)


def _gauge(name: str, doc: str, host: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=("host",))
    family.add_metric((host,), float(value))
    return family


def _device_info(host: str, devices: Sequence[DeviceInfo]) -> Iterator[Metric]:
    total = GaugeMetricFamily(
        "costmeter_gpu_memory_total_bytes", "GPU memory size, bytes.", labels=GPU_LABELS
    )
    limit = GaugeMetricFamily(
        "costmeter_gpu_power_limit_watts", "GPU power limit, watts.", labels=GPU_LABELS
    )
    for d in devices:
        labels = (host, str(d.index), d.uuid, d.name)
        total.add_metric(labels, float(d.memory_total))
        if d.power_limit_w is not None:
            limit.add_metric(labels, d.power_limit_w)
    yield total
    yield limit


def _gpu_families(
    host: str, samples: Sequence[DeviceSample], models: dict[str, str]
) -> Iterator[Metric]:
    def labels(s: DeviceSample) -> tuple[str, str, str, str]:
        return (host, str(s.index), s.uuid, models.get(s.uuid, ""))

    for name, doc, attr, factor in _GPU_GAUGES:
        family = GaugeMetricFamily(name, doc, labels=GPU_LABELS)
        for s in samples:
            value = getattr(s, attr)
            if value is not None:
                family.add_metric(labels(s), float(value) * factor)
        yield family
    energy = CounterMetricFamily(
        "costmeter_gpu_energy_joules",
        "Energy used by the GPU since its driver loaded, joules (NVML's counter).",
        labels=GPU_LABELS,
    )
    lost = GaugeMetricFamily(
        "costmeter_gpu_lost", "1 when the GPU fell off the bus, else 0.", labels=GPU_LABELS
    )
    procs = GaugeMetricFamily(
        "costmeter_gpu_process_memory_used_bytes",
        "GPU memory held by one process, bytes.",
        labels=(*GPU_LABELS, "pid"),
    )
    for s in samples:
        if s.energy_mj is not None:
            energy.add_metric(labels(s), s.energy_mj / 1000.0)
        lost.add_metric(labels(s), 1.0 if s.lost else 0.0)
        for p in s.processes:
            if p.used_memory is not None:
                procs.add_metric((*labels(s), str(p.pid)), float(p.used_memory))
    yield energy
    yield lost
    yield procs


def _host_families(host: str, h: HostSample) -> Iterator[Metric]:
    yield _gauge(
        "costmeter_host_cpu_utilization_percent",
        "CPU utilisation of the whole host, percent.",
        host,
        h.cpu_percent,
    )
    yield _gauge(
        "costmeter_host_memory_used_bytes", "Physical memory in use, bytes.", host, h.mem_used
    )
    yield _gauge("costmeter_host_swap_used_bytes", "Swap in use, bytes.", host, h.swap_used)
    load = GaugeMetricFamily(
        "costmeter_host_load_average",
        "System load average over 1, 5 and 15 minutes.",
        labels=("host", "period"),
    )
    for period, value in (("1m", h.load1), ("5m", h.load5), ("15m", h.load15)):
        load.add_metric((host, period), value)
    yield load
    if h.cpu_energy_uj is not None:
        energy = CounterMetricFamily(
            "costmeter_host_cpu_energy_joules",
            "RAPL energy counter of each CPU package, joules (wraps at its range).",
            labels=("host", "package"),
        )
        for i, uj in enumerate(h.cpu_energy_uj):
            energy.add_metric((host, str(i)), uj / 1e6)
        yield energy


def make_registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TickCollector(snapshot))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
