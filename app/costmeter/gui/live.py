"""The last minutes of live samples, in fixed-size ring buffers the plots read without copying much.

Filled on the GUI thread from the bridge's tick signal; Qt-free so tests can fill it directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from costmeter.core import DeviceInfo, HostInfo, Tick
from costmeter.store import Store

DEVICE_LIVE_METRICS = ("gpu_util", "mem_used", "power_w", "temp_c")
HOST_LIVE_METRICS = ("cpu_percent", "mem_used")


class Ring:
    """Timestamps and values of one series; ``view()`` returns them oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ts = np.full(capacity, np.nan)
        self._v = np.full(capacity, np.nan)
        self._n = 0  # total appended

    def append(self, ts: float, value: float | None) -> None:
        i = self._n % self.capacity
        self._ts[i] = ts
        self._v[i] = np.nan if value is None else value
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        if self._n <= self.capacity:
            return self._ts[: self._n], self._v[: self._n]
        i = self._n % self.capacity
        return np.concatenate((self._ts[i:], self._ts[:i])), np.concatenate(
            (self._v[i:], self._v[:i])
        )

    def prepend(self, ts: Sequence[float], values: Sequence[float]) -> None:
        """Put older points (from the store) before what the ring holds; newer ones are ignored."""
        old_ts, old_v = self.view()
        first = old_ts[0] if len(old_ts) else math.inf
        older = [(t, v) for t, v in zip(ts, values, strict=True) if t < first]
        if not older:
            return
        merged_ts = np.concatenate((np.array([t for t, _ in older]), old_ts))[-self.capacity :]
        merged_v = np.concatenate((np.array([v for _, v in older]), old_v))[-self.capacity :]
        self._ts[:] = np.nan
        self._v[:] = np.nan
        n = len(merged_ts)
        self._ts[:n] = merged_ts
        self._v[:n] = merged_v
        self._n = n

    def last(self) -> float | None:
        if self._n == 0:
            return None
        v = float(self._v[(self._n - 1) % self.capacity])
        return None if np.isnan(v) else v


class LiveState:
    """Latest tick, device and host records, and ring buffers of the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 600.0, interval_s: float = 1.0) -> None:
        self.window_s = window_s
        self.capacity = max(16, int(window_s / max(interval_s, 0.05)) + 1)
        self.devices: dict[str, DeviceInfo] = {}
        self.host_info: HostInfo | None = None
        self.latest: Tick | None = None
        self.ticks = 0
        self.device_rings: dict[tuple[str, str], Ring] = {}
        #: When each lost GPU was first seen lost (the tick's time): a lost sample carries the
        #: time of every later tick too, and pages that were hidden then still need the first.
        self.lost_at: dict[str, float] = {}
        self.host_rings: dict[str, Ring] = {m: Ring(self.capacity) for m in HOST_LIVE_METRICS}

    def set_devices(self, host_info: HostInfo | None, devices: Iterable[DeviceInfo]) -> None:
        self.host_info = host_info
        for info in devices:
            self.devices[info.uuid] = info  # keep lost devices: they stay on screen, marked

    def push(self, tick: Tick) -> None:
        self.latest = tick
        self.ticks += 1
        for d in tick.devices:
            if d.lost:
                self.lost_at.setdefault(d.uuid, d.ts)
            for metric in DEVICE_LIVE_METRICS:
                ring = self.device_rings.get((d.uuid, metric))
                if ring is None:
                    ring = self.device_rings[(d.uuid, metric)] = Ring(self.capacity)
                value = getattr(d, metric)
                ring.append(tick.ts, None if value is None else float(value))
        if tick.host_sample is not None:
            for metric in HOST_LIVE_METRICS:
                self.host_rings[metric].append(tick.ts, float(getattr(tick.host_sample, metric)))

    def seed(
        self,
        devices: dict[tuple[str, str], tuple[Sequence[float], Sequence[float]]],
        host: dict[str, tuple[Sequence[float], Sequence[float]]],
    ) -> None:
        """Fill the plots' recent past from the store, so they do not start empty."""
        for (uuid, metric), (ts, values) in devices.items():
            ring = self.device_rings.get((uuid, metric))
            if ring is None:
                ring = self.device_rings[(uuid, metric)] = Ring(self.capacity)
            ring.prepend(ts, values)
        for metric, (ts, values) in host.items():
            if metric in self.host_rings:
                self.host_rings[metric].prepend(ts, values)

    def device_series(self, uuid: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        ring = self.device_rings.get((uuid, metric))
        if ring is None:
            return np.empty(0), np.empty(0)
        return ring.view()

    def host_series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        return self.host_rings[metric].view()


Points = tuple[list[float], list[float]]


def recent_series(
    store: Store, uuids: Sequence[str], hostname: str, start: float, end: float, max_points: int
) -> tuple[
    dict[tuple[str, str], tuple[list[float], list[float]]],
    dict[str, tuple[list[float], list[float]]],
]:
    """What the store holds of the live metrics over ``[start, end)``, for ``LiveState.seed``.

    Devices are found by UUID on any host: the recorder may not have re-registered them under
    this host yet when this runs, and history written by ``costmeter simulate`` sits elsewhere.
    """
    ids = {d.uuid: d.id for d in store.devices() if d.uuid in uuids}
    devices = {}
    for uuid, device_id in ids.items():
        for metric in DEVICE_LIVE_METRICS:
            series = store.query_series(device_id, metric, start, end, max_points)
            devices[(uuid, metric)] = (series.ts, series.avg)
    host = {}
    for record in store.hosts():
        if record.hostname == hostname:
            for metric in HOST_LIVE_METRICS:
                series = store.query_host_series(record.id, metric, start, end, max_points)
                host[metric] = (series.ts, series.avg)
    return devices, host
