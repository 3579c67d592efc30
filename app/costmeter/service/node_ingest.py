"""Writing samples taken on other machines (``costmeter.sampling.node``) into the store.

A multi-node backend returns, from ``node_samples(handle, since_ts)``, the dicts that
``NodeSampler.sample`` made on the node. Here each node's host and GPUs are registered with the
writer, energy intervals are computed (one tracker per node, as the monitor keeps one for this
machine), and the ticks go through the same ``Writer.submit`` path as local ticks, so history,
reports and run costs see a node like any other host.

Several runs on one node return the same node's ticks: a tick is written once per node and
timestamp, and ticks older than the newest written for that node are skipped (they would make
the energy intervals go back in time).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from costmeter.core.model import DeviceInfo, HostInfo, Tick
from costmeter.cost.energy import EnergyTracker
from costmeter.sampling.node import FORMAT

log = logging.getLogger(__name__)


class TickSink(Protocol):
    """What ingestion writes to: :class:`costmeter.store.Writer` (the monitor's ``writer``)."""

    def register(self, host: HostInfo, devices: Sequence[DeviceInfo]) -> None: ...

    def submit(self, tick: Tick, *, wait: bool = False) -> None: ...


class NodeIngest:
    """Keeps, per node, what was registered, the newest tick written and an energy tracker.

    ``skip_hosts``: nodes whose ticks are dropped, such as this machine's own name when the
    local monitor already samples it (two writers of one host would count its energy twice).
    """

    def __init__(
        self,
        sink: TickSink,
        *,
        cpu_tdp_w: float,
        interval_s: float = 1.0,
        skip_hosts: Iterable[str] = (),
    ) -> None:
        self.sink = sink
        self.cpu_tdp_w = cpu_tdp_w
        self.skip_hosts = frozenset(skip_hosts)
        self._max_gap_s = max(5.0, 5 * interval_s)
        self._lock = threading.Lock()
        self._trackers: dict[str, EnergyTracker] = {}
        self._registered: dict[str, tuple[HostInfo, tuple[DeviceInfo, ...]]] = {}
        self._newest: dict[str, float] = {}
        #: Messages from the nodes' samplers (a metric not supported, no NVIDIA driver).
        self.messages: list[str] = []

    def ingest(self, batches: Iterable[Mapping[str, Any]]) -> int:
        """Register and write every new tick in ``batches``; returns how many were written."""
        readings = [b for b in batches if _valid(b)]
        readings.sort(key=lambda b: b["tick"].ts)
        written = 0
        with self._lock:
            for reading in readings:
                if self._write(reading):
                    written += 1
        return written

    def _write(self, reading: Mapping[str, Any]) -> bool:
        tick: Tick = reading["tick"]
        host_info: HostInfo = reading["host"]
        name = tick.host
        if name in self.skip_hosts or tick.ts <= self._newest.get(name, float("-inf")):
            return False
        self._newest[name] = tick.ts
        self.messages.extend(str(m) for m in reading.get("messages", ()))
        devices = tuple(reading.get("devices", ()))
        if self._registered.get(name) != (host_info, devices):
            self.sink.register(host_info, devices)
            self._registered[name] = (host_info, devices)
        tracker = self._trackers.get(name)
        if tracker is None:
            tracker = self._trackers[name] = EnergyTracker(max_gap_s=self._max_gap_s)
        host = tick.host_sample
        full = dataclasses.replace(
            tick,
            device_intervals={d.uuid: tracker.device_interval(d) for d in tick.devices},
            host_interval=(
                tracker.host_interval(host, cpu_count=host_info.cpu_count, tdp_w=self.cpu_tdp_w)
                if host is not None
                else None
            ),
        )
        self.sink.submit(full)
        return True


def _valid(reading: object) -> bool:
    ok = (
        isinstance(reading, Mapping)
        and reading.get("format") == FORMAT
        and isinstance(reading.get("tick"), Tick)
        and isinstance(reading.get("host"), HostInfo)
    )
    if not ok:
        log.warning("A node sample of an unknown shape was skipped: %.200r", reading)
    return ok


def ingest_node_samples(
    sink: TickSink,
    batches: Iterable[Mapping[str, Any]],
    *,
    state: NodeIngest | None = None,
    cpu_tdp_w: float = 65.0,
) -> NodeIngest:
    """Write ``batches`` through ``sink``; pass the returned state back in on the next call.

    One-shot use (no ``state``) is fine for a batch that covers a whole run; calls that follow
    a run as it goes must share the state, or each batch's first tick starts a new energy
    interval and repeated ticks are written twice.
    """
    ingest = state if state is not None else NodeIngest(sink, cpu_tdp_w=cpu_tdp_w)
    ingest.ingest(batches)
    return ingest
