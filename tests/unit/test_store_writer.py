"""The writer: ticks in, rows and totals out; never blocking; keeping rows while locked."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import DeviceInfo
from costmeter.store import RetentionPolicy, Store, Writer
from costmeter.store.testing import device_infos, host_info, make_tick

T0 = 1_700_000_000.0
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)


def make_writer(path: Path, **kw) -> Writer:
    kw.setdefault("retention", KEEP_ALL)
    kw.setdefault("flush_interval", 0.05)
    return Writer(path, clock=SimulatedClock(T0), **kw)


def test_round_trip_usage_energy_and_idle(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    w = make_writer(db)
    w.start()
    w.register(host_info(), device_infos())
    for k in range(120):
        idle = k < 30
        w.submit(make_tick(T0 + k, util=2.0 if idle else 80.0, power_w=50.0 if idle else 300.0))
    assert w.flush(10)
    stats = w.stats
    w.stop()
    assert stats.ticks_written == 120
    assert stats.rows_written == 120 * 3  # two GPUs and the host per tick
    assert stats.pending == 0
    with Store.open(db) as store:
        usage = store.device_usage(T0, T0 + 120)
        assert [u.index for u in usage] == [0, 1]
        u = usage[0]
        assert u.seconds == pytest.approx(120)
        assert u.idle_seconds == pytest.approx(30)
        assert u.energy_j == pytest.approx(30 * 50 + 90 * 300)
        assert u.idle_energy_j == pytest.approx(30 * 50)
        assert u.energy_measured_j == pytest.approx(u.energy_j)
        assert u.energy_source == "measured"
        assert u.avg_util == pytest.approx((30 * 2 + 90 * 80) / 120)
        assert u.name == "NVIDIA A100-SXM4-80GB"
        (h,) = store.host_usage(T0, T0 + 120)
        assert h.seconds == pytest.approx(120)
        assert h.busy_core_seconds == pytest.approx(0.25 * 8 * 120)
        assert h.energy_source == "estimated"
        # A sub-range of raw data.
        (part, _) = store.device_usage(T0 + 10, T0 + 20)
        assert part.seconds == pytest.approx(10)


def test_process_rows_and_lost_device(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    w = make_writer(db)
    w.start()
    for k in range(10):
        w.submit(
            make_tick(T0 + k, with_processes=True, lost=frozenset({1}) if k >= 5 else frozenset())
        )
    w.flush(10)
    w.stop()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM process_samples").fetchone()[0] == 20
    assert conn.execute("SELECT count(*) FROM gpu_process_samples").fetchone()[0] == 15
    rows = dict(
        conn.execute(
            "SELECT idx, count(*) FROM device_samples JOIN devices"
            " ON devices.id = device_id GROUP BY idx"
        ).fetchall()
    )
    assert rows == {0: 10, 1: 5}
    conn.close()
    with Store.open(db) as store:
        lost = {d.index: d.lost_at for d in store.devices()}
        assert lost == {0: None, 1: T0 + 5}
        usage = {u.index: u for u in store.device_usage(T0, T0 + 10)}
        assert usage[1].lost and not usage[0].lost


def test_register_again_updates_unsupported_and_marks_missing_lost(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    w = make_writer(db)
    w.start()
    infos = device_infos(n=2)
    w.register(host_info(), infos)
    w.flush(10)
    changed = DeviceInfo(
        **{
            **{f: getattr(infos[0], f) for f in infos[0].__slots__},
            "unsupported": frozenset({"power_w"}),
        }
    )
    w.register(host_info(), [changed])
    w.flush(10)
    w.stop()
    with Store.open(db) as store:
        devs = {d.index: d for d in store.devices("host-a")}
        assert devs[0].unsupported == {"power_w"}
        assert devs[0].lost_at is None
        assert devs[1].lost_at is not None
        assert store.devices("elsewhere") == []


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_submit_never_blocks_while_database_is_locked(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    w = make_writer(db, busy_timeout=2.0)
    w.start()
    other = _hold_write_lock(db)
    try:
        w.submit(make_tick(T0))
        time.sleep(0.2)  # the writer thread now sits in its busy wait
        t = time.perf_counter()
        for k in range(1, 2001):
            w.submit(make_tick(T0 + k))
        assert time.perf_counter() - t < 1.0
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert w.flush(20)
    w.stop()


def test_writer_keeps_rows_while_locked_and_writes_them_after(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    errors: list[str] = []
    w = make_writer(db, busy_timeout=0.05, on_error=errors.append)
    w.start()
    other = _hold_write_lock(db)
    try:
        for k in range(50):
            w.submit(make_tick(T0 + k))
        assert not w.flush(timeout=0.6)
        assert w.stats.failed_flushes >= 2
        assert w.stats.pending == 50
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert w.flush(10)
    w.stop()
    assert len(errors) == 1, errors  # reported once, not once per retry
    assert "is locked by another program" in errors[0]
    assert str(db) in errors[0]
    with Store.open(db) as store:
        assert store.device_usage(T0, T0 + 50)[0].seconds == pytest.approx(50)


def test_wait_applies_back_pressure(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    w = make_writer(db, busy_timeout=0.05, max_pending=5)
    w.start()
    other = _hold_write_lock(db)
    done = threading.Event()

    def produce() -> None:
        for k in range(20):
            w.submit(make_tick(T0 + k), wait=True)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert not done.wait(0.5)
        assert w.stats.pending <= 6
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert done.wait(10)
    producer.join()
    assert w.flush(10)
    assert w.stats.ticks_written == 20
    w.stop()


def test_flush_batches_large_bursts(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    w = make_writer(db, flush_interval=60.0, batch_ticks=100)
    w.start()
    for k in range(250):
        w.submit(make_tick(T0 + k))
    assert w.flush(10)
    assert w.stats.flushes >= 3  # the batch size, not the hour-long interval, set the pace
    w.stop()
    w.stop()  # stopping twice is harmless


def test_a_registration_is_recorded_as_of_when_it_was_queued(tmp_path: Path) -> None:
    """The writer thread may reach a registration long after it was queued (with a simulated
    clock, after the producer has run ahead): first seen is the time it was queued."""
    db = tmp_path / "r.db"
    clock = SimulatedClock(T0)
    w = Writer(db, clock=clock, retention=KEEP_ALL, flush_interval=0.05)
    w.register(host_info(), device_infos())  # queued before the thread runs
    clock.advance(3_600.0)
    w.start()
    w.submit(make_tick(T0 + 3_600.0))
    assert w.flush(10)
    w.stop()
    with Store.open(db) as store:
        (host,) = store.hosts()
        assert host.first_seen == T0
        assert {d.first_seen for d in store.devices()} == {T0}
