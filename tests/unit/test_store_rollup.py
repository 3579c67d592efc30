"""Rollups match a direct GROUP BY over raw rows; retention keeps totals and rollups intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.store import RetentionPolicy, Store, Writer
from costmeter.store.schema import DEVICE_ROLLUP_METRICS
from costmeter.store.testing import make_tick, realistic_ticks

T0 = 1_699_999_200.0  # on a whole hour
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)


def write(db: Path, ticks, batch_ticks: int = 97) -> None:
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


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("roll") / "h.db"
    write(db, realistic_ticks(T0, 3 * 3600, 2, host="h", seed=3))
    return db


def _stat_cols() -> str:
    return ", ".join(f"min({m}), avg({m}), max({m})" for m in DEVICE_ROLLUP_METRICS)


def test_minute_rollups_equal_group_by_over_raw(history: Path) -> None:
    conn = sqlite3.connect(history)
    direct = conn.execute(
        "SELECT device_id, ts / 60000 * 60000 AS b, count(*), sum(dt_ms),"
        " sum(CASE WHEN gpu_util < 5 THEN dt_ms ELSE 0 END), sum(gpu_util * dt_ms),"
        " sum(energy_mj), sum(CASE WHEN gpu_util < 5 THEN energy_mj ELSE 0 END), "
        + _stat_cols()
        + " FROM device_samples GROUP BY device_id, b ORDER BY device_id, b"
    ).fetchall()
    stats = ", ".join(f"{m}_min, {m}_avg, {m}_max" for m in DEVICE_ROLLUP_METRICS)
    rolled = conn.execute(
        "SELECT device_id, ts, n, dt_ms, idle_ms, util_ms, energy_mj, idle_energy_mj, "
        + stats
        + " FROM device_rollup_1m ORDER BY device_id, ts"
    ).fetchall()
    conn.close()
    assert len(direct) == 2 * 180
    assert len(rolled) == len(direct)
    for a, b in zip(direct, rolled, strict=True):
        assert a == pytest.approx(b)


def test_hour_rollups_equal_group_by_over_raw(history: Path) -> None:
    conn = sqlite3.connect(history)
    direct = conn.execute(
        "SELECT device_id, ts / 3600000 * 3600000 AS b, count(*), sum(dt_ms), sum(energy_mj),"
        " min(power_mw), avg(power_mw), max(power_mw), max(mem_used)"
        " FROM device_samples GROUP BY device_id, b ORDER BY device_id, b"
    ).fetchall()
    rolled = conn.execute(
        "SELECT device_id, ts, n, dt_ms, energy_mj, power_mw_min, power_mw_avg, power_mw_max,"
        " mem_used_max FROM device_rollup_1h ORDER BY device_id, ts"
    ).fetchall()
    host_direct = conn.execute(
        # cpu_pct_x100 is stored in hundredths of a percent.
        "SELECT sum(dt_ms), sum(cpu_pct_x100 * dt_ms) * (SELECT cpu_count FROM hosts) / 10000.0,"
        " max(disk_write) FROM host_samples"
    ).fetchone()
    host_rolled = conn.execute(
        "SELECT sum(dt_ms), sum(busy_core_ms), max(disk_write_max) FROM host_rollup_1h"
    ).fetchone()
    conn.close()
    assert len(rolled) == 6
    for a, b in zip(direct, rolled, strict=True):
        assert a == pytest.approx(b)
    assert host_direct == pytest.approx(host_rolled)


def _totals(store: Store, start: float, end: float) -> list[float]:
    dev = [
        (
            u.seconds,
            u.idle_seconds,
            u.energy_j,
            u.energy_measured_j,
            u.idle_energy_j,
            u.avg_util or 0.0,
        )
        for u in store.device_usage(start, end)
    ]
    host = [
        (h.seconds, h.busy_core_seconds, h.cpu_energy_j, h.cpu_energy_measured_j)
        for h in store.host_usage(start, end)
    ]
    return [v for row in dev + host for v in row]


def test_usage_agrees_between_raw_and_rollup_paths(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    write(db, realistic_ticks(T0, 3 * 3600, 2, host="h", seed=5), batch_ticks=500)
    ranges = [(T0, T0 + 3 * 3600), (T0 + 3600, T0 + 3 * 3600), (T0 + 5400, T0 + 9000)]
    with Store.open(db) as store:
        before = {r: _totals(store, *r) for r in ranges}
        first_hour = store.query_series(1, "power_w", T0, T0 + 3600, max_points=2)
        policy = RetentionPolicy(raw_days=1 / 24, minute_days=2 / 24, hour_days=None)
        cut = store.apply_retention(policy, T0 + 3 * 3600 + 0.5)
        assert (cut.raw, cut.minute) == (int((T0 + 7200) * 1000), int((T0 + 3600) * 1000))
        for r, totals in before.items():
            assert _totals(store, *r) == pytest.approx(totals), r
        # Rollups for the dropped raw rows are all still there.
        assert store.query_series(1, "power_w", T0, T0 + 3600, max_points=2) == first_hour
        assert store.query_series(1, "power_w", T0 + 3600, T0 + 7200).resolution == "1m"
        assert store.query_series(1, "power_w", T0 + 7200, T0 + 7300).resolution == "raw"
        span = store.time_range()
        assert span is not None and span[0] == T0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT min(ts) FROM device_samples").fetchone()[0] == (T0 + 7200) * 1000
    assert conn.execute("SELECT min(ts) FROM device_rollup_1m").fetchone()[0] == (T0 + 3600) * 1000
    assert conn.execute("SELECT count(*) FROM device_rollup_1h").fetchone()[0] == 6
    hour_before = conn.execute("SELECT * FROM device_rollup_1h ORDER BY 1, 2").fetchall()
    conn.close()

    # A late sample for a pruned minute is stored but does not rebuild rollups from partial data.
    write(db, [make_tick(T0 + 10, host="h", devices=2)])
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT * FROM device_rollup_1h ORDER BY 1, 2").fetchall() == hour_before
    conn.close()


def test_writer_applies_retention_at_start(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    write(db, (make_tick(T0 + k) for k in range(600)))
    w = Writer(db, clock=SimulatedClock(T0 + 10 * 86400), retention=RetentionPolicy())
    w.start()
    w.stop()
    with Store.open(db) as store:
        assert store.device_usage(T0, T0 + 600)[0].seconds == pytest.approx(600)
        assert store.query_series(1, "gpu_util", T0, T0 + 600).resolution == "1m"


def test_retention_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(raw_days=10, minute_days=5)
    with pytest.raises(ValueError):
        RetentionPolicy(raw_days=None, minute_days=5)
    with pytest.raises(ValueError):
        RetentionPolicy(raw_days=0)
    RetentionPolicy(raw_days=1, minute_days=1, hour_days=None)
