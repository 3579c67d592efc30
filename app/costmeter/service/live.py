"""The last minutes of live samples, in fixed-size ring buffers the plots read without copying much.

Filled on the GUI thread from the bridge's tick signal; Qt-free, so tests fill it directly and the
views only read it. ``live_seed`` reads its recent past from the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

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
    """Latest ticks, device and host records, and ring buffers of the last ``window_s`` seconds.

    This machine's data keeps the plain names (``devices``, ``host_info``, ``latest``,
    ``host_series``) that the run manager, the tray and the pages read. Ticks of remote hosts
    (collected by the monitor from agents and exporters: ``tick.host`` is the remote host's
    name) go beside them, per host, so a remote tick never replaces this machine's latest tick
    nor mixes into its CPU plot. Device rings are keyed by UUID on every host.
    """

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
        self.host_rings: dict[str, Ring] = self._new_host_rings()
        #: Remote hosts, by the name their ticks carry.
        self.remote_latest: dict[str, Tick] = {}
        self.remote_devices: dict[str, dict[str, DeviceInfo]] = {}
        self.remote_host_infos: dict[str, HostInfo] = {}
        self.remote_host_rings: dict[str, dict[str, Ring]] = {}

    def _new_host_rings(self) -> dict[str, Ring]:
        return {m: Ring(self.capacity) for m in HOST_LIVE_METRICS}

    @property
    def local_host(self) -> str | None:
        return self.host_info.hostname if self.host_info is not None else None

    def is_local(self, host: str | None) -> bool:
        """Whether ``host`` is this machine (a tick before this machine is known counts too)."""
        return host is None or self.host_info is None or host == self.host_info.hostname

    def set_devices(self, host_info: HostInfo | None, devices: Iterable[DeviceInfo]) -> None:
        self.host_info = host_info
        for info in devices:
            self.devices[info.uuid] = info  # keep lost devices: they stay on screen, marked

    def set_remote(
        self, host: str, host_info: HostInfo | None, devices: Iterable[DeviceInfo]
    ) -> None:
        """What the store knows of a remote host (looked up when its first ticks arrive)."""
        if host_info is not None:
            self.remote_host_infos[host] = host_info
        known = self.remote_devices.setdefault(host, {})
        for info in devices:
            known[info.uuid] = info

    def push(self, tick: Tick) -> None:
        self.ticks += 1
        local = self.is_local(tick.host)
        if local:
            self.latest = tick
            host_rings = self.host_rings
        else:
            self.remote_latest[tick.host] = tick
            host_rings = self.remote_host_rings.get(tick.host) or self.remote_host_rings.setdefault(
                tick.host, self._new_host_rings()
            )
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
                host_rings[metric].append(tick.ts, float(getattr(tick.host_sample, metric)))

    # -- by host (None = every host) -----------------------------------------------------------
    def hosts(self) -> list[str]:
        """Every host with data: this machine first, then the remote ones by name."""
        remote = sorted(set(self.remote_latest) | set(self.remote_devices))
        local = self.local_host
        return ([local] if local else []) + [h for h in remote if h != local]

    def missing_info(self) -> list[str]:
        """Remote hosts whose ticks name a host or GPU the state has no record of yet."""
        out = []
        for host, tick in self.remote_latest.items():
            known = self.remote_devices.get(host, {})
            if host not in self.remote_host_infos or any(d.uuid not in known for d in tick.devices):
                out.append(host)
        return out

    def devices_for(self, host: str | None) -> dict[str, DeviceInfo]:
        if host is not None and self.is_local(host):
            return self.devices
        if host is not None:
            return self.remote_devices.get(host, {})
        merged = dict(self.devices)
        for known in self.remote_devices.values():
            merged.update(known)
        return merged

    def host_info_for(self, host: str | None) -> HostInfo | None:
        if host is None or self.is_local(host):
            return self.host_info
        return self.remote_host_infos.get(host)

    def tick_for(self, host: str | None) -> Tick | None:
        """The newest tick of ``host``; for None, this machine's tick with every remote host's
        newest GPU samples added (its host sample, and so its processes, stay this machine's)."""
        if host is not None:
            return self.latest if self.is_local(host) else self.remote_latest.get(host)
        if not self.remote_latest:
            return self.latest
        devices = list(self.latest.devices) if self.latest is not None else []
        for tick in self.remote_latest.values():
            devices.extend(tick.devices)
        newest = max(t.ts for t in self.remote_latest.values())
        base = self.latest
        return Tick(
            ts=base.ts if base is not None else newest,
            host=base.host if base is not None else (self.local_host or ""),
            host_sample=base.host_sample if base is not None else None,
            devices=tuple(devices),
        )

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

    def seed_remote(
        self,
        host: str,
        devices: dict[tuple[str, str], tuple[Sequence[float], Sequence[float]]],
        host_series: dict[str, tuple[Sequence[float], Sequence[float]]],
    ) -> None:
        """``seed`` for a remote host: its GPUs' and its own recent past from the store."""
        self.seed(devices, {})
        rings = self.remote_host_rings.get(host) or self.remote_host_rings.setdefault(
            host, self._new_host_rings()
        )
        for metric, (ts, values) in host_series.items():
            if metric in rings:
                rings[metric].prepend(ts, values)

    def device_series(self, uuid: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        ring = self.device_rings.get((uuid, metric))
        if ring is None:
            return np.empty(0), np.empty(0)
        return ring.view()

    def host_series(self, metric: str, host: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A host metric of this machine (``host`` None or local) or of a remote host."""
        if host is None or self.is_local(host):
            return self.host_rings[metric].view()
        rings = self.remote_host_rings.get(host)
        if rings is None:
            return np.empty(0), np.empty(0)
        return rings[metric].view()
