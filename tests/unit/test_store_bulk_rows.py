"""Rows built in bulk (numpy columns) equal the per-tick rows, and their fresh minute rollups
equal both the Python per-bucket aggregation and the SQL re-aggregation over the raw rows."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import DeviceSample, GpuProcess, Interval, Tick
from costmeter.store import RetentionPolicy, Writer, bulk_rows
from costmeter.store.bulk_rows import (
    DEVICE_METRIC_POSITIONS,
    HOST_METRIC_POSITIONS,
    add_ticks_bulk,
    fresh_host_minutes_bulk,
    fresh_minutes_bulk,
)
from costmeter.store.database import connect
from costmeter.store.rollup import update_rollups, write_fresh_device_minutes
from costmeter.store.rows import Batch, Registry, add_tick, write_batch
from costmeter.store.schema import DEVICE_ROLLUP_METRICS, HOST_ROLLUP_METRICS, migrate
from costmeter.store.share_rollup import rebuild_shares
from costmeter.store.testing import device_infos, host_info, make_tick, realistic_ticks

T0 = 1_699_999_200.0  # on a whole hour
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)
_T = TypeVar("_T")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = connect(tmp_path / "b.db")
    migrate(db, str(tmp_path / "b.db"))
    reg = Registry(db)
    reg.register(host_info("h"), device_infos("h", 3), T0)
    yield db
    db.close()


def _per_tick(conn: sqlite3.Connection, ticks: list[Tick]) -> Batch:
    batch = Batch()
    reg = Registry(conn)
    for t in ticks:
        add_tick(batch, reg, t)
    return batch


def _bulk(conn: sqlite3.Connection, ticks: list[Tick]) -> Batch:
    batch = Batch()
    assert add_ticks_bulk(batch, Registry(conn), ticks)
    assert not batch.device_rows and not batch.host_rows
    return batch


def _device_rows(batch: Batch) -> list[tuple[object, ...]]:
    return [tuple(r) for c in batch.device_columns for r in c.iter_rows()] + batch.device_rows


def _host_rows(batch: Batch) -> list[tuple[object, ...]]:
    return [tuple(r) for c in batch.host_columns for r in c.iter_rows()] + batch.host_rows


def _assert_same(bulk: Batch, slow: Batch) -> None:
    rows, expected = _device_rows(bulk), _device_rows(slow)
    assert rows == expected
    # Same Python types too (int, not numpy scalars or floats), as SQLite stores them.
    assert [tuple(map(type, r)) for r in rows] == [tuple(map(type, r)) for r in expected]
    hosts, expected_hosts = _host_rows(bulk), _host_rows(slow)
    assert hosts == expected_hosts
    assert [tuple(map(type, r)) for r in hosts] == [tuple(map(type, r)) for r in expected_hosts]
    assert bulk.device_spans == slow.device_spans
    assert bulk.host_spans == slow.host_spans
    assert bulk.host_seen == slow.host_seen
    assert bulk.row_count == slow.row_count


def test_metric_positions_follow_the_schema(conn: sqlite3.Connection) -> None:
    def names(table: str) -> list[str]:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]

    assert [names("device_samples")[p] for p in DEVICE_METRIC_POSITIONS] == list(
        DEVICE_ROLLUP_METRICS
    )
    assert [names("host_samples")[p] for p in HOST_METRIC_POSITIONS] == list(HOST_ROLLUP_METRICS)


def test_realistic_ticks_give_the_same_rows(conn: sqlite3.Connection) -> None:
    ticks = list(realistic_ticks(T0, 600, 3, host="h", seed=5))
    _assert_same(_bulk(conn, ticks), _per_tick(conn, ticks))


def _with(obj: _T, **changes: Any) -> _T:
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


def test_processes_get_the_same_ids_rows_and_shares(conn: sqlite3.Connection) -> None:
    ticks = list(realistic_ticks(T0, 200, 3, host="h", seed=2))
    for k in range(0, 200, 3):  # jobs on the GPUs, seen CPU-side and not (GPU-only pids)
        t = make_tick(T0 + k, host="h", devices=3, with_processes=True, util=float(k % 100))
        gpu_only = GpuProcess(5000 + k % 7, None if k % 2 else 1 << 28, None)
        dev = t.devices[2]
        ticks[k] = _with(t, devices=(*t.devices[:2], _with(dev, processes=(gpu_only,))))
    ticks.append(ticks[30])  # a tick twice: its shares are recomputed
    bulk, slow = _bulk(conn, ticks), _per_tick(conn, ticks)
    _assert_same(bulk, slow)
    assert bulk.proc_rows == slow.proc_rows and bulk.proc_rows
    assert bulk.gpu_proc_rows == slow.gpu_proc_rows
    assert bulk.share_sums == slow.share_sums and bulk.share_sums
    assert bulk.share_ticks == slow.share_ticks
    assert bulk.share_dups == slow.share_dups and bulk.share_dups


@pytest.mark.parametrize(
    "odd",
    [
        "lost GPU",
        "no utilisation",
        "NaN power",
        "no interval",
        "unknown host",
        "float mem_used",
        "ragged per_core",
    ],
)
def test_runs_of_another_shape_are_left_to_the_per_tick_path(
    conn: sqlite3.Connection, odd: str
) -> None:
    ticks = [make_tick(T0 + k, host="h", devices=3) for k in range(5)]
    t = ticks[2]
    dev = t.devices[1]
    hs = t.host_sample
    assert hs is not None
    changed = {
        "lost GPU": lambda: _with(t, devices=(*t.devices[:2], _with(dev, lost=True))),
        "no utilisation": lambda: _with(t, devices=(t.devices[0], _with(dev, gpu_util=None))),
        "NaN power": lambda: _with(t, devices=(t.devices[0], _with(dev, power_w=float("nan")))),
        "no interval": lambda: _with(t, device_intervals={}),
        "unknown host": lambda: make_tick(t.ts, host="elsewhere", devices=0),
        "float mem_used": lambda: _with(t, devices=(t.devices[0], _with(dev, mem_used=1.5e9))),
        "ragged per_core": lambda: _with(t, host_sample=_with(hs, per_core=(1.0, 2.0))),
    }[odd]()
    ticks[2] = changed
    batch = Batch()
    assert not add_ticks_bulk(batch, Registry(conn), ticks)
    assert batch == Batch()


def test_without_numpy_every_run_takes_the_per_tick_path(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_rows, "_numpy", False)
    assert not add_ticks_bulk(Batch(), Registry(conn), [make_tick(T0, host="h", devices=3)])


# Values on and around the .5 boundaries, where rounding rules differ.
_num = st.one_of(
    st.integers(0, 400),
    st.floats(0, 400, allow_nan=False).map(lambda v: round(v * 2) / 2),
    st.floats(0, 400, allow_nan=False),
)


@st.composite
def _tick_runs(draw: st.DrawFn) -> list[Tick]:
    n = draw(st.integers(1, 40))
    start = T0 + draw(st.integers(0, 3600))
    steps = draw(st.lists(st.sampled_from([0.0, 0.25, 1.0, 7.5, 30.0, 60.0, -3.0]), min_size=n))
    ticks = []
    ts = start
    for k in range(n):
        ts += steps[k]
        devices = []
        intervals = {}
        for i in range(3):
            uuid = f"GPU-h-{i}"
            devices.append(
                DeviceSample(
                    uuid=uuid,
                    index=i,
                    ts=ts + draw(st.sampled_from([0.0, 0.0005, 0.0015])),
                    gpu_util=draw(st.one_of(st.integers(0, 100), st.floats(0, 100))),
                    mem_util=draw(_num),
                    mem_used=draw(st.integers(0, 80 << 30)),
                    power_w=draw(_num),
                    temp_c=draw(_num),
                    sm_clock_mhz=draw(_num),
                    mem_clock_mhz=draw(_num),
                )
            )
            intervals[uuid] = Interval(
                dt_s=draw(st.sampled_from([0.0, 0.5, 1.0, 1.0005, 2.5])),
                energy_j=draw(_num),
                energy_measured=draw(st.booleans()),
            )
        base = make_tick(ts, host="h", devices=0)
        assert base.host_sample is not None
        hs = _with(
            base.host_sample,
            cpu_percent=draw(st.floats(0, 100)),
            per_core=tuple(draw(st.floats(-5, 150)) for _ in range(4)),
            load1=draw(_num),
            disk_read_bps=draw(_num),
        )
        ticks.append(
            _with(
                base,
                host_sample=hs,
                devices=tuple(devices),
                device_intervals=intervals,
                host_interval=Interval(draw(_num), draw(st.none() | _num), draw(st.booleans())),
            )
        )
    return ticks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=_tick_runs(), newest=st.sampled_from([-1, 0, 1]))
def test_random_runs_rows_and_fresh_minutes_match(
    tmp_path_factory: pytest.TempPathFactory, ticks: list[Tick], newest: int
) -> None:
    path = tmp_path_factory.mktemp("hyp") / "h.db"
    db = connect(path)
    migrate(db, str(path))
    db.execute("BEGIN")
    Registry(db).register(host_info("h"), device_infos("h", 3), T0)
    bulk, slow = _bulk(db, ticks), _per_tick(db, ticks)
    _assert_same(bulk, slow)
    # Pretend some devices already had rows up to the middle of the run (or none at all).
    mid = round(ticks[len(ticks) // 2].ts * 1000)
    last_stored = {1: -1, 2: mid if newest >= 0 else -1, 3: mid + 60_000 * newest}
    rows, done = fresh_minutes_bulk(bulk.device_columns, last_stored, raw_cutoff=0)
    write_batch(db, slow)
    expected_done = write_fresh_device_minutes(db, slow.device_rows, last_stored)
    assert done == expected_done
    python_rows = db.execute("SELECT * FROM device_rollup_1m ORDER BY device_id, ts").fetchall()
    assert sorted(rows) == python_rows
    # The SQL re-aggregation over the stored raw rows gives the very same minutes.
    db.execute("DELETE FROM device_rollup_1m")
    update_rollups(db, "device", slow.ms_spans(slow.device_spans))
    sql_rows = db.execute("SELECT * FROM device_rollup_1m ORDER BY device_id, ts").fetchall()
    assert [r for r in sql_rows if (r[0], r[1]) in done] == sorted(rows)
    # Hosts: the bulk minutes equal SQL's (none when a row has no CPU energy).
    cpus = Registry(db).cpu_counts()
    host_rows, host_done = fresh_host_minutes_bulk(bulk.host_columns, {}, cpus, raw_cutoff=0)
    update_rollups(db, "host", slow.ms_spans(slow.host_spans), cpu_counts=cpus)
    sql_hosts = db.execute("SELECT * FROM host_rollup_1m ORDER BY host_id, ts").fetchall()
    assert [r for r in sql_hosts if (r[0], r[1]) in host_done] == sorted(host_rows)
    energies = [t.host_interval.energy_j for t in ticks if t.host_interval is not None]
    if None not in energies and len({t.ts for t in ticks}) == len(ticks):
        assert host_done  # every bucket is fresh, none holds a time twice
    db.execute("ROLLBACK")
    db.close()


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    db.close()
    return out


def _mixed_stream() -> list[Tick | str]:
    """Ticks of the common shape, with odd ones, re-sent ones, backfill and a registration
    between them (``"register"``)."""
    ticks: list[Tick | str] = list(realistic_ticks(T0, 900, 3, host="h", seed=7))
    for k in range(100, 300, 2):
        ticks[k] = make_tick(T0 + k, host="h", devices=3, with_processes=True)
    for k in range(301, 330, 2):  # two processes on one GPU: split by memory and SM
        t = make_tick(T0 + k, host="h", devices=3, with_processes=True)
        two = (GpuProcess(1000, 3 << 30, 30.0), GpuProcess(6000 + k, 1 << 30, 10.0))
        ticks[k] = _with(t, devices=(_with(t.devices[0], processes=two), *t.devices[1:]))
    ticks[101] = make_tick(T0 + 101, host="h", devices=3, lost=frozenset({1}))
    ticks[400:400] = ["register"]
    ticks[500:500] = [make_tick(T0 + 2000 + k, host="other", devices=2) for k in range(30)]
    ticks += list(realistic_ticks(T0 + 300, 200, 3, host="h", seed=8))  # re-sent, differing
    ticks += list(realistic_ticks(T0 - 600, 300, 3, host="h", seed=9))  # backfill before
    ticks += [make_tick(T0 + 950, host="h", devices=3, util=None)]
    return ticks


def _record(path: Path, stream: list[Tick | str]) -> None:
    w = Writer(
        path, clock=SimulatedClock(T0), retention=KEEP_ALL, batch_ticks=97, flush_interval=60
    )
    w.start()
    w.register(host_info("h"), device_infos("h", 3))
    for item in stream:
        if item == "register":
            w.flush()
            w.register(host_info("h"), device_infos("h", 3))
        else:
            assert isinstance(item, Tick)
            w.submit(item, wait=True)
    assert w.flush(60)
    w.stop()


def test_a_recording_is_the_same_database_with_and_without_the_bulk_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _mixed_stream()
    _record(tmp_path / "bulk.db", stream)
    calls: list[bool] = []
    real = bulk_rows.add_ticks_bulk

    def counting(batch: Batch, reg: Registry, ticks: list[Tick]) -> bool:
        calls.append(real(batch, reg, ticks))
        return calls[-1]

    monkeypatch.setattr("costmeter.store.writer.add_ticks_bulk", counting)
    _record(tmp_path / "bulk2.db", stream)
    assert True in calls and False in calls  # both paths ran
    monkeypatch.setattr(bulk_rows, "_numpy", False)
    _record(tmp_path / "per_tick.db", stream)
    expected = _dump(tmp_path / "per_tick.db")
    assert len(expected["device_samples"]) > 3000
    assert expected["gpu_share_1m"]
    assert _dump(tmp_path / "bulk.db") == expected
    # The shares kept as fresh ticks came (one process on a GPU: the whole tick) equal SQL's
    # (the stream's first 400 ticks: no minute there is recomputed from raw rows).
    _record(tmp_path / "jobs.db", stream[:400])
    db = sqlite3.connect(tmp_path / "jobs.db")
    kept = db.execute("SELECT * FROM gpu_share_1m ORDER BY 1, 2, 3").fetchall()
    rebuild_shares(db)
    rebuilt = db.execute("SELECT * FROM gpu_share_1m ORDER BY 1, 2, 3").fetchall()
    db.close()
    assert len(kept) == len(rebuilt)
    for a, b in zip(kept, rebuilt, strict=True):
        assert a == pytest.approx(b)
