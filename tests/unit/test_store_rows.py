"""Stored units of host rows, per-core packing, and the Python-built minute rollups."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import DeviceSample, Tick
from costmeter.store import RetentionPolicy, Store, Writer
from costmeter.store.rollup import DEVICE_COLUMNS
from costmeter.store.rows import pack_per_core, unpack_per_core
from costmeter.store.testing import make_tick, realistic_ticks

T0 = 1_699_999_200.0  # on a whole hour
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)


def write(db: Path, ticks, batch_ticks: int = 2000) -> None:
    w = Writer(
        db,
        clock=SimulatedClock(T0),
        retention=KEEP_ALL,
        batch_ticks=batch_ticks,
        flush_interval=0.01,
    )
    w.start()
    for t in ticks:
        w.submit(t, wait=True)
    assert w.flush(60)
    w.stop()


def test_host_values_round_trip_in_hundredths(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    base = make_tick(T0, devices=1)
    assert base.host_sample is not None
    hs = dataclasses.replace(
        base.host_sample,
        cpu_percent=42.567,
        load1=1.234,
        load5=0.005,
        load15=123.456,
        disk_read_bps=1234.6,
        disk_write_bps=2e6,
        net_rx_bps=0.4,
        net_tx_bps=99_999_999.5,
    )
    write(db, [dataclasses.replace(base, host_sample=hs)])
    conn = sqlite3.connect(db)
    row = conn.execute(
        "SELECT cpu_pct_x100, load1_x100, load5_x100, load15_x100, disk_read, disk_write,"
        " net_rx, net_tx, typeof(cpu_pct_x100), typeof(load1_x100) FROM host_samples"
    ).fetchone()
    conn.close()
    assert row == (4257, 123, 0, 12346, 1235, 2_000_000, 0, 100_000_000, "integer", "integer")
    with Store.open(db) as store:

        def value(metric: str) -> float:
            return store.query_host_series(1, metric, T0, T0 + 1).avg[0]

        assert value("cpu_percent") == pytest.approx(42.57)
        assert abs(value("cpu_percent") - 42.567) <= 0.005
        assert value("load1") == pytest.approx(1.23)
        assert value("disk_read_bps") == 1235
        assert value("net_tx_bps") == 100_000_000
        (usage,) = store.host_usage(T0, T0 + 1)
        # 42.57 % of one CPU (the host was never registered) for one second.
        assert usage.busy_core_seconds == pytest.approx(0.4257)


def test_host_rollups_are_in_api_units(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    write(db, (make_tick(T0 + k, devices=1, cpu_percent=12.34) for k in range(180)))
    with Store.open(db) as store:
        s = store.query_host_series(1, "cpu_percent", T0, T0 + 180, max_points=3)
        assert s.resolution == "1m"
        assert s.avg == pytest.approx([12.34] * 3)
        assert s.min == pytest.approx([12.34] * 3) and s.max == pytest.approx([12.34] * 3)
        load = store.query_host_series(1, "load1", T0, T0 + 180, max_points=3)
        assert load.avg == pytest.approx([1.5] * 3)
        (usage,) = store.host_usage(T0, T0 + 180)
        assert usage.busy_core_seconds == pytest.approx(180 * 0.1234)


def test_per_core_packing() -> None:
    assert pack_per_core((0.0, 25.3, 100.0, 99.76)) == bytes([0, 51, 200, 200])
    assert pack_per_core((-1.0, 150.0, 3.0)) == bytes([0, 200, 6])  # clamped
    assert pack_per_core((110.0, 50.0)) == bytes([200, 100])  # fits a byte, still clamped
    assert pack_per_core(()) == b""
    assert unpack_per_core(pack_per_core((12.5, 50.25))) == (12.5, 50.0)


def _minute_rollups(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT * FROM device_rollup_1m ORDER BY device_id, ts").fetchall()
    conn.close()
    return rows


def _odd_ticks() -> list[Tick]:
    """Missing values, a GPU without energy, duplicates and late samples across flushes."""
    ticks = list(realistic_ticks(T0, 900, 2, host="h", seed=11))
    out = []
    for k, t in enumerate(ticks):
        if k % 7 == 0:
            devs = tuple(
                dataclasses.replace(s, gpu_util=None, power_w=None) if s.index == 0 else s
                for s in t.devices
            )
            t = dataclasses.replace(t, devices=devs)
        if k % 11 == 0:
            ivs = {
                u: dataclasses.replace(iv, energy_j=None, energy_measured=False)
                for u, iv in t.device_intervals.items()
            }
            t = dataclasses.replace(t, device_intervals=ivs)
        out.append(t)
        if k % 97 == 0:
            out.append(t)  # the same tick again: replaces the row
    # Late samples for minutes already written, and one with other values for an existing second.
    late = make_tick(T0 + 30.5, host="h", devices=2, util=None)
    dup: DeviceSample = dataclasses.replace(ticks[40].devices[1], gpu_util=99, mem_used=1)
    out += [late, dataclasses.replace(ticks[40], devices=(ticks[40].devices[0], dup))]
    return out


@pytest.mark.parametrize("batch_ticks", [1, 50, 2000])
def test_python_minute_rollups_equal_the_sql_rebuild(tmp_path: Path, batch_ticks: int) -> None:
    db = tmp_path / "m.db"
    write(db, _odd_ticks(), batch_ticks=batch_ticks)
    written = _minute_rollups(db)
    with Store.open(db) as store:
        store.rebuild_rollups()  # SQL only, from the raw rows
    rebuilt = _minute_rollups(db)
    assert len(written) == len(rebuilt) == 2 * 15
    for a, b in zip(written, rebuilt, strict=True):
        assert a == pytest.approx(b)
        assert [type(v) for v in a] == [type(v) for v in b]


def test_device_columns_match_the_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        cols = [r[1] for r in store._conn.execute("PRAGMA table_info(device_samples)")]
    assert tuple(cols) == DEVICE_COLUMNS
