"""query_series: resolution choice, the max_points bound, units."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.store import RetentionPolicy, Store, Writer
from costmeter.store.testing import device_infos, host_info, make_tick, realistic_ticks

T0 = 1_699_999_200.0  # on a whole hour
HOURS = 4


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    db = tmp_path_factory.mktemp("q") / "q.db"
    keep = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)
    w = Writer(db, clock=SimulatedClock(T0), retention=keep, batch_ticks=1000)
    w.start()
    w.register(host_info("h"), device_infos("h", 1))
    for t in realistic_ticks(T0, HOURS * 3600, 1, host="h", seed=1):
        w.submit(t, wait=True)
    assert w.flush(60)
    w.stop()
    s = Store.open(db)
    yield s
    s.close()


@pytest.mark.parametrize(
    ("span", "max_points", "resolution", "points"),
    [
        (600, 2000, "raw", 600),
        (1800, 2000, "raw", 1800),
        (3600, 2000, "1m", 60),  # 3,600 raw rows would be too many
        (HOURS * 3600, 2000, "1m", HOURS * 60),
        (HOURS * 3600, 100, "1h", HOURS),
        (HOURS * 3600, 3, "1h", 2),  # hours merged into 2-hour buckets
    ],
)
def test_resolution_choice(
    store: Store, span: int, max_points: int, resolution: str, points: int
) -> None:
    s = store.query_series(1, "gpu_util", T0, T0 + span, max_points=max_points)
    assert s.resolution == resolution
    assert len(s) == points == len(s.min) == len(s.avg) == len(s.max)
    assert s.ts == sorted(s.ts)
    assert all(lo <= a <= hi for lo, a, hi in zip(s.min, s.avg, s.max, strict=True))


def test_never_more_than_max_points(store: Store) -> None:
    rng = random.Random(7)
    for _ in range(60):
        a = T0 + rng.uniform(-3600, HOURS * 3600)
        b = a + rng.uniform(1, HOURS * 3600 * 1.5)
        m = rng.choice([1, 2, 3, 5, 17, 100, 500, 2000])
        s = store.query_series(1, "power_w", a, b, max_points=m)
        assert 0 < len(s) <= m or b < T0
        assert len(s) == len(s.avg)


def test_merged_buckets_keep_the_weighted_average(store: Store) -> None:
    raw_all = store.query_series(1, "power_w", T0, T0 + 1800, max_points=2000)
    assert raw_all.resolution == "raw"
    whole = store.query_series(1, "power_w", T0, T0 + HOURS * 3600, max_points=1)
    assert len(whole) == 1
    assert whole.bucket_s == HOURS * 3600
    minutes = store.query_series(1, "power_w", T0, T0 + HOURS * 3600, max_points=2000)
    assert whole.avg[0] == pytest.approx(sum(minutes.avg) / len(minutes.avg))
    assert whole.max[0] == max(minutes.max)
    assert whole.min[0] == min(minutes.min)


def test_units_are_converted_back(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    w = Writer(db, clock=SimulatedClock(T0))
    w.start()
    for k in range(5):
        w.submit(make_tick(T0 + k, power_w=123.456, devices=1, cpu_percent=42.5))
    w.submit(make_tick(T0 + 5, power_w=None, devices=1))
    w.flush(10)
    w.stop()
    with Store.open(db) as store:
        p = store.query_series(1, "power_w", T0, T0 + 10)
        assert p.avg[:5] == pytest.approx([123.456] * 5)
        assert math.isnan(p.avg[5])
        assert store.query_series(1, "sm_clock_mhz", T0, T0 + 10).avg[0] == 1410
        assert store.query_series(1, "mem_used", T0, T0 + 10).avg[0] == 10 * 2**30
        assert store.query_series(1, "temp_c", T0, T0 + 10).avg[0] == 55
        cpu = store.query_host_series(1, "cpu_percent", T0, T0 + 10)
        assert cpu.avg[0] == pytest.approx(42.5)
        assert store.query_host_series(1, "disk_write_bps", T0, T0 + 10).avg[0] == 2e6
        with pytest.raises(ValueError, match="Unknown device metric"):
            store.query_series(1, "volts", T0, T0 + 10)


def test_time_range_and_empty_ranges(store: Store) -> None:
    assert store.time_range() == (T0, T0 + HOURS * 3600 - 1)
    empty = store.query_series(1, "gpu_util", T0 - 7200, T0 - 3600)
    assert len(empty) == 0
    assert len(store.query_series(1, "gpu_util", T0 + 10, T0 + 5)) == 0
