"""The recent past of the live plots and the records of remote hosts, read from the store.

Run on the store reader's thread; ``LiveState.seed``/``set_remote`` take what these return.
"""

from __future__ import annotations

from collections.abc import Sequence

from costmeter.core import DeviceInfo, HostInfo
from costmeter.service.live import DEVICE_LIVE_METRICS, HOST_LIVE_METRICS
from costmeter.store import Store


def remote_records(
    store: Store, hosts: Sequence[str]
) -> dict[str, tuple[HostInfo | None, list[DeviceInfo]]]:
    """The store's host and GPU records of remote ``hosts``, for ``LiveState.set_remote``."""
    records = {h.hostname: h for h in store.hosts() if h.hostname in hosts}
    out: dict[str, tuple[HostInfo | None, list[DeviceInfo]]] = {}
    for host in hosts:
        record = records.get(host)
        info = (
            HostInfo(
                hostname=host,
                cpu_count=record.cpu_count or 0,
                cpu_model=record.cpu_model or "",
                memory_total=record.memory_total or 0,
                physical_cores=record.physical_cores,
            )
            if record is not None
            else None
        )
        devices = [
            DeviceInfo(
                host=host,
                index=d.index,
                uuid=d.uuid,
                name=d.name,
                memory_total=d.memory_total or 0,
                power_limit_w=d.power_limit_w,
                architecture=d.architecture,
                compute_capability=d.compute_capability,
                unsupported=d.unsupported,
            )
            for d in store.devices(host)
        ]
        out[host] = (info, devices)
    return out


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
