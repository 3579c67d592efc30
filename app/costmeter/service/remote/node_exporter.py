"""node_exporter's CPU, memory, load, disk and network series -> a host record and sample.

CPU percent, disk and network rates come from counters, so they need two scrapes: the first
scrape of a target gives the host record and no sample. A counter that went backwards (the
exporter restarted) starts over without a sample for that interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from costmeter.core.model import HostInfo, HostSample
from costmeter.service.remote.prom import Samples, first_value

PREFIXES = (
    "node_cpu_seconds_total",
    "node_cpu_info",
    "node_load",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_uname_info",
)
IDLE_MODES = frozenset({"idle", "iowait"})
#: Block devices whose traffic is not disk traffic (or is counted again by another device).
SKIP_DISKS = ("ram", "loop", "fd", "sr")
SKIP_NETS = ("lo",)
MAX_CPUS = 16384


def wanted(name: str) -> bool:
    return name.startswith(PREFIXES)


@dataclass(frozen=True, slots=True)
class _Counters:
    ts: float
    cpu: dict[str, tuple[float, float]]  # cpu label -> (busy seconds, total seconds)
    disk_read: float
    disk_write: float
    net_rx: float
    net_tx: float


@dataclass(frozen=True, slots=True)
class NodeReading:
    info: HostInfo | None
    sample: HostSample | None
    #: ``nodename`` of node_uname_info, if served.
    hostname: str | None


class NodeExporterMapper:
    """Keeps the previous scrape's counters of one target."""

    def __init__(self) -> None:
        self._prev: _Counters | None = None

    def map(self, samples: Samples, *, host: str, ts: float) -> NodeReading:
        hostname = None
        for s in samples.get("node_uname_info", ()):
            if s.labels.get("nodename"):
                hostname = s.labels["nodename"][:255]
                break
        cpu: dict[str, list[float]] = {}
        for s in samples.get("node_cpu_seconds_total", ()):
            label = s.labels.get("cpu")
            if label is None or s.value < 0:
                continue
            if label not in cpu and len(cpu) >= MAX_CPUS:
                continue
            pair = cpu.setdefault(label[:16], [0.0, 0.0])
            pair[1] += s.value
            if s.labels.get("mode") not in IDLE_MODES:
                pair[0] += s.value
        mem_total = _nonneg(first_value(samples, "node_memory_MemTotal_bytes"))
        if not cpu and mem_total is None:
            return NodeReading(None, None, hostname)
        model = ""
        for s in samples.get("node_cpu_info", ()):
            model = s.labels.get("model_name", "")[:200]
            if model:
                break
        info = HostInfo(
            hostname=host,
            cpu_count=max(1, len(cpu)),
            cpu_model=model,
            memory_total=int(mem_total or 0),
        )
        now = _Counters(
            ts=ts,
            cpu={k: (v[0], v[1]) for k, v in cpu.items()},
            disk_read=_sum(samples, "node_disk_read_bytes_total", "device", SKIP_DISKS),
            disk_write=_sum(samples, "node_disk_written_bytes_total", "device", SKIP_DISKS),
            net_rx=_sum(samples, "node_network_receive_bytes_total", "device", SKIP_NETS),
            net_tx=_sum(samples, "node_network_transmit_bytes_total", "device", SKIP_NETS),
        )
        prev, self._prev = self._prev, now
        if prev is None or ts <= prev.ts:
            return NodeReading(info, None, hostname)
        dt = ts - prev.ts
        per_core = []
        busy_sum = total_sum = 0.0
        for label in sorted(now.cpu, key=_cpu_order):
            busy, total = now.cpu[label]
            before = prev.cpu.get(label)
            if before is None:
                continue
            d_busy, d_total = busy - before[0], total - before[1]
            if d_total <= 0 or d_busy < 0:
                per_core.append(0.0)
                continue
            per_core.append(min(100.0, 100.0 * d_busy / d_total))
            busy_sum += d_busy
            total_sum += d_total
        available = _nonneg(first_value(samples, "node_memory_MemAvailable_bytes"))
        swap_total = _nonneg(first_value(samples, "node_memory_SwapTotal_bytes"))
        swap_free = _nonneg(first_value(samples, "node_memory_SwapFree_bytes"))
        total_mem = int(mem_total or 0)
        sample = HostSample(
            ts=ts,
            cpu_percent=min(100.0, 100.0 * busy_sum / total_sum) if total_sum > 0 else 0.0,
            per_core=tuple(per_core),
            load1=_nonneg(first_value(samples, "node_load1")) or 0.0,
            load5=_nonneg(first_value(samples, "node_load5")) or 0.0,
            load15=_nonneg(first_value(samples, "node_load15")) or 0.0,
            mem_used=max(0, total_mem - int(available)) if available is not None else 0,
            mem_total=total_mem,
            swap_used=(
                max(0, int(swap_total) - int(swap_free))
                if swap_total is not None and swap_free is not None
                else 0
            ),
            disk_read_bps=_rate(now.disk_read, prev.disk_read, dt),
            disk_write_bps=_rate(now.disk_write, prev.disk_write, dt),
            net_rx_bps=_rate(now.net_rx, prev.net_rx, dt),
            net_tx_bps=_rate(now.net_tx, prev.net_tx, dt),
        )
        return NodeReading(info, sample, hostname)


def _cpu_order(label: str) -> tuple[int, str]:
    return (int(label), "") if label.isdigit() else (1 << 30, label)


def _nonneg(value: float | None) -> float | None:
    return value if value is not None and 0 <= value < 1e19 else None


def _sum(samples: Samples, name: str, label: str, skip: tuple[str, ...]) -> float:
    total = 0.0
    for s in samples.get(name, ()):
        if s.value >= 0 and not s.labels.get(label, "").startswith(skip):
            total += s.value
    return total


def _rate(now: float, before: float, dt: float) -> float:
    return max(0.0, (now - before) / dt) if dt > 0 else 0.0
