"""The live plots' data, Qt-free: ring buffers, their seed from the store, remote host records."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.core import HostInfo
from costmeter.service.live import LiveState, Ring
from costmeter.service.live_seed import recent_series, remote_records
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.store import Store
from costmeter.store.testing import device_infos, host_info, make_tick


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hour of an A100 training and an H100 idling, written as ``costmeter simulate`` does."""
    db = tmp_path_factory.mktemp("live") / "hist.db"
    end = math.floor(time.time())
    monitor = Monitor(
        MonitorOptions(
            db_path=db,
            config=Config(),
            interval_s=1.0,
            simulate="a100:train,h100:idle",
            seed=0,
            simulated_start=end - 3600,
        ),
        on_message=lambda _m: None,
    )
    monitor.open()
    try:
        monitor.run_until(end)
    finally:
        monitor.close()
    return db


def test_live_plots_start_with_the_last_minutes_from_the_store(history_db) -> None:
    """A window opened on a database with history does not start with empty plots."""
    with Store.open(history_db) as store:
        devices = store.devices()
        host = store.hosts()[0].hostname
        end = max(d.last_seen for d in devices)
        data = recent_series(store, [d.uuid for d in devices], host, end - 300, end + 1, 601)
    live = LiveState()
    live.seed(*data)
    ts, util = live.device_series(devices[0].uuid, "gpu_util")
    assert len(ts) >= 290 and (ts[1:] > ts[:-1]).all()
    assert util.max() > 50  # the a100:train GPU
    ts_cpu, _ = live.host_series("cpu_percent")
    assert len(ts_cpu) >= 290
    # live points that follow are kept after the seeded ones; older seeds are not duplicated
    live.push(make_tick(end + 2, devices=0))
    live.seed(*data)
    assert len(live.host_series("cpu_percent")[0]) == len(ts_cpu) + 1


def test_prefill_finds_gpus_written_under_another_host_name(history_db) -> None:
    """`costmeter simulate` writes as sim-host; the app on this machine still shows that history."""
    with Store.open(history_db) as store:
        devices = store.devices()
        end = max(d.last_seen for d in devices)
        uuids = [d.uuid for d in devices]
        data = recent_series(store, uuids, "not-the-writer", end - 300, end, 601)
    device_series, host_series = data
    assert {uuid for uuid, _metric in device_series} == {d.uuid for d in devices}
    assert all(len(ts) >= 290 for ts, _ in device_series.values())
    assert host_series == {}  # this host has no history of its own yet: nothing is made up


def test_a_ring_keeps_the_newest_points_and_prepends_only_older_ones() -> None:
    ring = Ring(4)
    for t in range(6):
        ring.append(float(t), float(t * 10))
    ts, values = ring.view()
    assert list(ts) == [2, 3, 4, 5] and list(values) == [20, 30, 40, 50]
    ring.prepend([0.0, 1.0, 4.0], [0.0, 10.0, 99.0])  # 4.0 is not older than what it holds
    ts, values = ring.view()
    assert list(ts) == [2, 3, 4, 5] and values[-1] == 50  # full: nothing older fits
    assert ring.last() == 50


def test_remote_records_come_back_as_core_records(history_db: Path) -> None:
    with Store.open(history_db) as store:
        record = store.hosts()[0]
        found = remote_records(store, [record.hostname, "never-seen"])
    info, devices = found[record.hostname]
    assert info is not None and info.hostname == record.hostname
    assert info.cpu_count == record.cpu_count and info.memory_total == record.memory_total
    assert sorted(d.name for d in devices) == sorted(
        ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
    )
    assert all(d.host == record.hostname for d in devices)
    assert found["never-seen"] == (None, [])
    live = LiveState()
    live.set_devices(host_info("this-machine"), [])
    live.set_remote(record.hostname, info, devices)
    assert set(live.devices_for(record.hostname)) == {d.uuid for d in devices}
    assert live.host_info_for(record.hostname) == info


def test_a_remote_tick_does_not_replace_this_machines() -> None:
    live = LiveState()
    # This machine (host-a) with 2 GPUs, and gpu-box-1 with 3, as the live state gets them.
    live.set_devices(host_info("host-a"), device_infos("host-a", 2))
    live.push(make_tick(time.time(), host="host-a", devices=2, cpu_percent=10.0))
    live.push(make_tick(time.time(), host="gpu-box-1", devices=3, cpu_percent=90.0))
    live.set_remote(
        "gpu-box-1", HostInfo("gpu-box-1", 64, "EPYC", 512 << 30), device_infos("gpu-box-1", 3)
    )
    assert live.latest is not None and live.latest.host == "host-a"
    assert list(live.devices) == ["GPU-host-a-0", "GPU-host-a-1"]  # the run manager's GPUs
    assert live.host_series("cpu_percent")[1].tolist() == [10.0]
    assert live.host_series("cpu_percent", "gpu-box-1")[1].tolist() == [90.0]
    assert live.hosts() == ["host-a", "gpu-box-1"]
    merged = live.tick_for(None)
    assert merged is not None and len(merged.devices) == 5
    assert merged.host_sample is live.latest.host_sample
    assert live.missing_info() == []
    past = time.time() - 100  # the store's recent past of gpu-box-1 goes before its live points
    live.seed_remote(
        "gpu-box-1",
        {("GPU-gpu-box-1-0", "gpu_util"): ([past], [33.0])},
        {"cpu_percent": ([past], [50.0])},
    )
    assert live.host_series("cpu_percent", "gpu-box-1")[1].tolist() == [50.0, 90.0]
    assert live.host_series("cpu_percent")[1].tolist() == [10.0]
    assert live.device_series("GPU-gpu-box-1-0", "gpu_util")[1].tolist() == [33.0, 50.0]
