"""dcgm-exporter and node_exporter series read from a query API -> Costmeter readings.

A query_range answer is turned back into what one scrape of a host would have given at each
step (``prom.Samples``), and those go through the scrape path's own mappers
(``dcgm.DcgmMapper``, ``node_exporter.NodeExporterMapper``, ``pods.attach``): the same metric
names, units, DCGM blank markers, label spellings (``Hostname``/``hostname``,
``UUID``/``uuid``/``gpu_uuid``, ``modelName``/``model_name``), MIG instances and pod labels.

Hosts. A GPU series belongs to the host its labels name, in the scrape path's order: a
Kubernetes node label (``node``, ``node_name``...), then ``Hostname``/``hostname``, then its
``instance`` without the port. A node_exporter target (``instance``) belongs to the host of the
dcgm-exporter scraped at the same address (same ``instance`` without port), else to its
``node_uname_info`` ``nodename``, else to its ``instance`` without the port (an address where
the dcgm-exporters name several hosts joins none of them). GPUs are told apart
by UUID; a series with no UUID label is not read from a source.

Counters. ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ) is made monotonic per GPU before it is
mapped: a value below the previous one is a reset and the count goes on from zero (the
increase over that step is the new value), as Prometheus' ``increase()`` reads it. The energy
of a step is then the counter's increase (``cost.energy``); without the counter, power is
integrated. ``node_cpu_seconds_total`` is queried summed per CPU (busy and idle modes apart):
utilisation per step comes from its increase; a reset gives that step no figure. Gauges (memory,
load, power, utilisation, temperatures, clocks) are the value at each step.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from costmeter.core.model import HostInfo, Tick
from costmeter.sampling import node
from costmeter.service.remote import dcgm, node_exporter, pods
from costmeter.service.remote.prom import PromSample, Samples
from costmeter.service.remote.prom_api import RangeSeries

Reading = dict[str, object]

#: Every DCGM field the scrape mapper reads; the energy counter also as OpenMetrics names it.
DCGM_NAMES = (*sorted(dcgm.BOUNDS), dcgm.ENERGY + "_total")
#: The node_exporter gauges and counters read as they are (CPU seconds are summed per CPU).
NODE_NAMES = (
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_Buffers_bytes",
    "node_memory_Cached_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_load1",
    "node_load5",
    "node_load15",
    "node_rapl_package_joules_total",
)
DISK_NAMES = ("node_disk_read_bytes_total", "node_disk_written_bytes_total")
NET_NAMES = ("node_network_receive_bytes_total", "node_network_transmit_bytes_total")
#: Series that show a GPU exists (discovery): any field read, as on the scrape path.
GPU_MARKERS = DCGM_NAMES
#: Series that show a node_exporter target exists (discovery), and its host name.
NODE_MARKERS = ("node_memory_MemTotal_bytes", "node_uname_info")
_IDLE = "|".join(sorted(node_exporter.IDLE_MODES))

# Query kinds: how a result series is put back into a scrape's shape.
DCGM, NODE, CPU_BUSY, CPU_IDLE, CPU_INFO = "dcgm", "node", "cpu_busy", "cpu_idle", "cpu_info"


def selector(*matchers: str | None) -> str:
    """``{a, b, ...}`` from matchers and selectors (``{cluster="a"}`` braces are dropped)."""
    parts = []
    for m in matchers:
        if m:
            inner = m.strip()
            if inner.startswith("{") and inner.endswith("}"):
                inner = inner[1:-1]
            if inner.strip():
                parts.append(inner.strip())
    return "{" + ", ".join(parts) + "}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def any_of(label: str, values: Iterable[str]) -> str:
    """A matcher for exactly these label values (an anchored RE2 alternation)."""
    return f"{label}=~" + _quote("|".join(re.escape(v) for v in sorted(set(values))))


def names(values: Sequence[str]) -> str:
    return any_of("__name__", values)


def instance_host(instance: str | None) -> str | None:
    """``instance`` without its port: ``gpu1:9100`` -> ``gpu1``, ``[::1]:9100`` -> ``::1``."""
    if not instance:
        return None
    text = instance.rpartition("@")[2]
    if text.startswith("["):
        return text[1:].partition("]")[0] or None
    head, sep, port = text.rpartition(":")
    return (head if sep and port.isdigit() else text)[:255] or None


def gpu_host(labels: Mapping[str, str]) -> str:
    """The host a DCGM series belongs to (the module doc's order)."""
    found = dcgm.label(labels, dcgm.NODE_LABELS) or dcgm.label(labels, dcgm.HOST_LABELS)
    return (found or instance_host(labels.get("instance")) or "unknown")[:255]


@dataclass
class HostTargets:
    """What one host has in the source: its GPUs (by UUID label) and node_exporter targets."""

    name: str
    #: UUID label name ("UUID", "uuid", "gpu_uuid") -> the GPU UUIDs of this host.
    gpus: dict[str, set[str]] = field(default_factory=dict)
    instances: set[str] = field(default_factory=set)

    @property
    def gpu_count(self) -> int:
        return sum(len(v) for v in self.gpus.values())


def targets(
    gpu_series: Iterable[Mapping[str, str]], node_series: Iterable[Mapping[str, str]]
) -> dict[str, HostTargets]:
    """Hosts by name, from the label sets of GPU_MARKERS and NODE_MARKERS series."""
    hosts: dict[str, HostTargets] = {}
    alias: dict[str, str] = {}  # dcgm-exporter's address -> its host ("" when several)
    for labels in gpu_series:
        uuid_label = next((n for n in dcgm.UUID_LABELS if labels.get(n)), None)
        if uuid_label is None:
            continue
        name = gpu_host(labels)
        host = hosts.setdefault(name, HostTargets(name))
        host.gpus.setdefault(uuid_label, set()).add(labels[uuid_label][:200])
        address = instance_host(labels.get("instance"))
        if address:
            alias[address] = name if alias.get(address, name) == name else ""
    nodenames: dict[str, str] = {}
    node_instances: set[str] = set()
    for labels in node_series:
        instance = labels.get("instance")
        if not instance:
            continue
        node_instances.add(instance)
        if labels.get("__name__") == "node_uname_info" and labels.get("nodename"):
            nodenames.setdefault(instance, labels["nodename"][:255])
    for instance in sorted(node_instances):
        address = instance_host(instance) or instance
        name = alias.get(address) or nodenames.get(instance) or address
        hosts.setdefault(name, HostTargets(name)).instances.add(instance)
    return hosts


def batches(hosts: Iterable[HostTargets], *, max_gpus: int, max_hosts: int) -> list[list[str]]:
    """Host names in groups of at most ``max_hosts`` hosts and (but for a single larger host)
    ``max_gpus`` GPUs: one group's series are read together."""
    out: list[list[str]] = []
    current: list[str] = []
    gpus = 0
    for host in sorted(hosts, key=lambda h: h.name):
        n = host.gpu_count
        if current and (len(current) >= max_hosts or gpus + n > max_gpus):
            out.append(current)
            current, gpus = [], 0
        current.append(host.name)
        gpus += n
    if current:
        out.append(current)
    return out


def queries(batch: Sequence[HostTargets], match: str | None) -> list[tuple[str, str]]:
    """(kind, PromQL) for one batch of hosts; ``match`` is merged into every selector."""
    out: list[tuple[str, str]] = []
    by_label: dict[str, set[str]] = {}
    instances: set[str] = set()
    for host in batch:
        for label, uuids in host.gpus.items():
            by_label.setdefault(label, set()).update(uuids)
        instances.update(host.instances)
    for label in sorted(by_label):
        out.append((DCGM, selector(names(DCGM_NAMES), any_of(label, by_label[label]), match)))
    if instances:
        where = any_of("instance", instances)
        skip_nets = "|".join(re.escape(p) + ".*" for p in node_exporter.SKIP_NETS)
        out += [
            (NODE, selector(names(NODE_NAMES), where, match)),
            (NODE, selector(names(DISK_NAMES), where, match)),
            (NODE, selector(names(NET_NAMES), where, f"device!~{_quote(skip_nets)}", match)),
            (
                CPU_BUSY,
                "sum by (instance, cpu) (node_cpu_seconds_total"
                + selector(where, f'mode!~"{_IDLE}"', match)
                + ")",
            ),
            (
                CPU_IDLE,
                "sum by (instance, cpu) (node_cpu_seconds_total"
                + selector(where, f'mode=~"{_IDLE}"', match)
                + ")",
            ),
            (
                CPU_INFO,
                "max by (instance, model_name) (node_cpu_info" + selector(where, match) + ")",
            ),
        ]
    return out


class StepSamples:
    """Samples of a batch by host, then step time: what a scrape of the host would have said."""

    def __init__(self, hosts: Mapping[str, HostTargets]) -> None:
        self._instance_host = {i: h.name for h in hosts.values() for i in h.instances}
        self.by_host: dict[str, dict[float, Samples]] = {}

    def add(self, kind: str, series: Iterable[RangeSeries]) -> None:
        for s in series:
            labels = dict(s.labels)
            if kind == DCGM:
                host = gpu_host(labels)
                name = labels.pop("__name__", "")
            else:
                found = self._instance_host.get(labels.get("instance", ""))
                if found is None:
                    continue
                host = found
                name = labels.pop("__name__", "")
                if kind in (CPU_BUSY, CPU_IDLE):
                    name = "node_cpu_seconds_total"
                    labels["mode"] = "user" if kind == CPU_BUSY else "idle"
                elif kind == CPU_INFO:
                    name = "node_cpu_info"
            if not name:
                continue
            steps = self.by_host.setdefault(host, {})
            for ts, value in s.points:
                steps.setdefault(ts, {}).setdefault(name, []).append(PromSample(labels, value))


@dataclass
class Mapped:
    readings: list[Reading]
    #: (device uuid, ts, XID code) first seen in these readings.
    xids: list[tuple[str, float, int]]
    #: (metric, reason) -> values dropped (DCGM blanks, impossible values).
    dropped: dict[tuple[str, str], int]


class HostMapper:
    """One host's mapping state across queries: the scrape mappers and the energy counters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._dcgm = dcgm.DcgmMapper()
        self._node = node_exporter.NodeExporterMapper()
        #: GPU uuid -> (last raw counter value, offset added since the resets seen).
        self._energy: dict[str, tuple[float, float]] = {}
        self._info: HostInfo | None = None

    def map(self, steps: Mapping[float, Samples]) -> Mapped:
        out = Mapped([], [], {})
        for ts in sorted(steps):
            samples = steps[ts]
            self._monotonic_energy(samples)
            gpus = self._dcgm.map(samples, host=self.name, ts=ts)
            host = self._node.map(samples, host=self.name, ts=ts)
            for key, n in gpus.dropped.items():
                out.dropped[key] = out.dropped.get(key, 0) + n
            if not gpus.devices and host.info is None:
                continue
            if host.info is not None:
                self._info = host.info
            info = self._info or HostInfo(
                hostname=self.name, cpu_count=1, cpu_model="", memory_total=0
            )
            gpu_samples, workloads = pods.attach(gpus.samples, gpus.pods)
            tick = Tick(
                ts=ts,
                host=self.name,
                host_sample=host.sample,
                devices=gpu_samples,
                processes=workloads,
            )
            out.readings.append(
                {"format": node.FORMAT, "host": info, "devices": gpus.devices, "tick": tick}
            )
            out.xids += [(uuid, ts, code) for uuid, code in gpus.xids]
        return out

    def _monotonic_energy(self, samples: Samples) -> None:
        """Each GPU's energy counter with resets counted from zero (module doc)."""
        for raw_name in (dcgm.ENERGY, dcgm.ENERGY + "_total"):
            series = samples.get(raw_name)
            if not series:
                continue
            fixed = []
            for s in series:
                uuid = dcgm.label(s.labels, dcgm.UUID_LABELS)
                if uuid is None or dcgm.check(dcgm.ENERGY, s.value) is not None:
                    fixed.append(s)  # the mapper drops or skips it, and counts why
                    continue
                last, offset = self._energy.get(uuid, (s.value, 0.0))
                if s.value < last:
                    offset += last
                self._energy[uuid] = (s.value, offset)
                fixed.append(dataclasses.replace(s, value=s.value + offset) if offset else s)
            samples[raw_name] = fixed
