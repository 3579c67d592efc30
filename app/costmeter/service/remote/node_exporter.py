"""node_exporter's CPU, memory, load, disk, network and RAPL series -> a host record and sample.

CPU percent, disk and network rates come from counters, so they need two scrapes: the first
scrape of a target gives the host record and no sample. A counter that went backwards (the
exporter restarted) starts over without a sample for that interval.

Disk and network traffic count each byte once: only whole physical disks (not device-mapper
``dm-*`` volumes, ``md*`` arrays or partitions, which repeat the traffic of the disks under
them) and only interfaces that are not virtual plumbing for containers (``veth*``,
``docker*``, ``br-*``, ``cni*``, ``flannel*``, ``cali*``...; their traffic also crosses a
physical interface). Measured CPU energy comes from ``node_rapl_package_joules_total``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from costmeter.core.model import HostInfo, HostSample
from costmeter.service.remote.prom import Samples, first_value

PREFIXES = (
    "node_cpu_seconds_total",
    "node_cpu_info",
    "node_load",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_Buffers_bytes",
    "node_memory_Cached_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_uname_info",
    "node_rapl_package_joules_total",
)
IDLE_MODES = frozenset({"idle", "iowait"})
#: Block devices whose traffic is not disk traffic, or is the traffic of the disks under them
#: counted again (device mapper, software RAID, bcache, DRBD, zram).
SKIP_DISKS = ("ram", "loop", "fd", "sr", "dm-", "md", "bcache", "drbd", "zram", "nbd")
#: Partitions: sda1, vdb2, xvda1, hda3; nvme0n1p1, mmcblk0p2, loop0p1.
PARTITION = re.compile(r"^(?:[shv]d[a-z]+|xvd[a-z]+)\d+$|^.+\dp\d+$")
#: Interfaces whose traffic is also seen on a physical interface (or never leaves the host).
#: Tunnels (tun, wg, vxlan, geneve) carry traffic that crosses a physical interface again.
SKIP_NETS = (
    *("lo", "veth", "docker", "br-", "cni", "flannel", "cali", "virbr", "lxc", "cilium"),
    *("kube-", "tun", "wg", "vxlan", "weave", "genev", "podman", "tap", "vnet", "ovs-"),
)
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
            disk_read=_sum(samples, "node_disk_read_bytes_total", is_disk),
            disk_write=_sum(samples, "node_disk_written_bytes_total", is_disk),
            net_rx=_sum(samples, "node_network_receive_bytes_total", is_physical_net),
            net_tx=_sum(samples, "node_network_transmit_bytes_total", is_physical_net),
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
        rapl = _rapl_uj(samples)
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
            mem_used=memory_used(samples, total_mem),
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
            cpu_energy_uj=rapl,
        )
        return NodeReading(info, sample, hostname)


def _cpu_order(label: str) -> tuple[int, str]:
    return (int(label), "") if label.isascii() and label.isdigit() else (1 << 30, label)


def _nonneg(value: float | None) -> float | None:
    return value if value is not None and 0 <= value < 1e19 else None


def is_disk(device: str) -> bool:
    """A whole disk: not a partition, volume, array or pseudo-device over other disks."""
    return bool(device) and not device.startswith(SKIP_DISKS) and not PARTITION.match(device)


def is_physical_net(device: str) -> bool:
    return bool(device) and not device.startswith(SKIP_NETS)


def memory_used(samples: Samples, total: int) -> int:
    """Total minus MemAvailable; kernels before 3.14 (and some containers) have no
    MemAvailable, then total - free - buffers - cached, as ``free`` computed it."""
    available = _nonneg(first_value(samples, "node_memory_MemAvailable_bytes"))
    if available is None:
        free = _nonneg(first_value(samples, "node_memory_MemFree_bytes"))
        if free is None:
            return 0
        buffers = _nonneg(first_value(samples, "node_memory_Buffers_bytes")) or 0.0
        cached = _nonneg(first_value(samples, "node_memory_Cached_bytes")) or 0.0
        available = free + buffers + cached
    return max(0, total - int(available)) if total else 0


def _rapl_uj(samples: Samples) -> tuple[int, ...] | None:
    """RAPL package counters in microjoules, by package index; None without RAPL."""
    packages: dict[str, int] = {}
    for s in samples.get("node_rapl_package_joules_total", ()):
        index = s.labels.get("index", "")[:8]
        if 0 <= s.value < 1e13 and index not in packages and len(packages) < 64:
            packages[index] = int(s.value * 1e6)
    if not packages:
        return None
    return tuple(packages[k] for k in sorted(packages, key=_cpu_order))


def _sum(samples: Samples, name: str, counted: Callable[[str], bool]) -> float:
    total = 0.0
    for s in samples.get(name, ()):
        if s.value >= 0 and counted(s.labels.get("device", "")):
            total += s.value
    return total


def _rate(now: float, before: float, dt: float) -> float:
    return max(0.0, (now - before) / dt) if dt > 0 else 0.0
