"""The last minutes of live samples, in fixed-size ring buffers the plots read without copying much.

Filled on the GUI thread from the bridge's tick signal; Qt-free so tests can fill it directly.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from costmeter.core import DeviceInfo, HostInfo, Tick

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

    def last(self) -> float | None:
        if self._n == 0:
            return None
        v = float(self._v[(self._n - 1) % self.capacity])
        return None if np.isnan(v) else v


class LiveState:
    """Latest tick, device and host records, and ring buffers of the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 600.0, interval_s: float = 1.0) -> None:
        self.capacity = max(16, int(window_s / max(interval_s, 0.05)) + 1)
        self.devices: dict[str, DeviceInfo] = {}
        self.host_info: HostInfo | None = None
        self.latest: Tick | None = None
        self.ticks = 0
        self.device_rings: dict[tuple[str, str], Ring] = {}
        self.host_rings: dict[str, Ring] = {m: Ring(self.capacity) for m in HOST_LIVE_METRICS}

    def set_devices(self, host_info: HostInfo | None, devices: Iterable[DeviceInfo]) -> None:
        self.host_info = host_info
        for info in devices:
            self.devices[info.uuid] = info  # keep lost devices: they stay on screen, marked

    def push(self, tick: Tick) -> None:
        self.latest = tick
        self.ticks += 1
        for d in tick.devices:
            for metric in DEVICE_LIVE_METRICS:
                ring = self.device_rings.get((d.uuid, metric))
                if ring is None:
                    ring = self.device_rings[(d.uuid, metric)] = Ring(self.capacity)
                value = getattr(d, metric)
                ring.append(tick.ts, None if value is None else float(value))
        if tick.host_sample is not None:
            for metric in HOST_LIVE_METRICS:
                self.host_rings[metric].append(tick.ts, float(getattr(tick.host_sample, metric)))

    def device_series(self, uuid: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        ring = self.device_rings.get((uuid, metric))
        if ring is None:
            return np.empty(0), np.empty(0)
        return ring.view()

    def host_series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        return self.host_rings[metric].view()
