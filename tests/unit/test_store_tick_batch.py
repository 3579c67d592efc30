"""A ``TickBatch`` (ticks as columns) is stored as the very rows its ``Tick`` objects give, by
the bulk path, the per-tick path and the writer alike."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import GpuProcess, ProcessSample, Tick
from costmeter.core.tick_batch import HOST_FIELDS, TickBatch
from costmeter.store import RetentionPolicy, Writer, bulk_rows
from costmeter.store.batch_of_ticks import batch_of
from costmeter.store.bulk_rows import add_tick_batch, add_ticks_bulk
from costmeter.store.database import connect
from costmeter.store.rows import Batch, Registry, add_tick
from costmeter.store.schema import migrate
from costmeter.store.testing import device_infos, host_info, realistic_ticks

T0 = 1_699_999_200.0  # on a whole hour
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = connect(tmp_path / "b.db")
    migrate(db, str(tmp_path / "b.db"))
    Registry(db).register(host_info("h"), device_infos("h", 3), T0)
    yield db
    db.close()


def _rows(batch: Batch) -> tuple[list[Any], ...]:
    device = [tuple(r) for c in batch.device_columns for r in c.iter_rows()] + batch.device_rows
    host = [tuple(r) for c in batch.host_columns for r in c.iter_rows()] + batch.host_rows
    typed = [tuple(map(type, r)) for r in (*device, *host)]
    return device, host, typed, batch.proc_rows, batch.gpu_proc_rows


def _same(a: Batch, b: Batch) -> None:
    assert _rows(a) == _rows(b)
    assert a.device_spans == b.device_spans and a.host_spans == b.host_spans
    assert a.host_seen == b.host_seen
    assert a.share_sums == b.share_sums and a.share_ticks == b.share_ticks
    assert a.share_dups == b.share_dups


def _columnar(conn: sqlite3.Connection, tb: TickBatch) -> Batch:
    batch = Batch()
    assert add_tick_batch(batch, Registry(conn), tb)
    assert not batch.device_rows and not batch.host_rows
    return batch


def _per_tick(conn: sqlite3.Connection, ticks: list[Tick]) -> Batch:
    batch = Batch()
    reg = Registry(conn)
    for t in ticks:
        add_tick(batch, reg, t)
    return batch


def test_realistic_ticks_as_a_batch_give_the_same_rows(conn: sqlite3.Connection) -> None:
    ticks = list(realistic_ticks(T0, 300, 3, host="h", seed=4))
    tb = batch_of(ticks)
    assert tb is not None and len(tb) == 300
    columnar = _columnar(conn, tb)
    _same(columnar, _per_tick(conn, ticks))
    bulk = Batch()
    assert add_ticks_bulk(bulk, Registry(conn), ticks)
    _same(columnar, bulk)
    _same(_per_tick(conn, list(tb.ticks())), _per_tick(conn, ticks))


def _with_jobs(ticks: list[Tick]) -> list[Tick]:
    """One process on GPUs 0 and 1 (seen CPU-side), a GPU-only one on GPU 2 now and then."""
    out = []
    for k, t in enumerate(ticks):
        procs = (GpuProcess(700, 1 << 30, 50.0), GpuProcess(701, 2 << 30, None))
        gpu_only = (GpuProcess(900 + k % 3, None, None),) if k % 4 == 0 else ()
        devices = tuple(
            type(s)(**{**{f: getattr(s, f) for f in s.__slots__}, "processes": p})
            for s, p in zip(t.devices, ((procs[0],), (procs[1],), gpu_only), strict=True)
        )
        hs = t.host_sample
        assert hs is not None
        cpu = tuple(
            ProcessSample(pid, T0 - 5, "python", "python train.py", "me", 99.0, 1 << 30, k)
            for pid in (700, 701)
        )
        out.append(
            Tick(
                t.ts,
                t.host,
                type(hs)(**{**{f: getattr(hs, f) for f in hs.__slots__}, "processes": cpu}),
                devices,
                t.device_intervals,
                t.host_interval,
            )
        )
    return out


def test_processes_get_the_same_ids_rows_and_shares(conn: sqlite3.Connection) -> None:
    ticks = _with_jobs(list(realistic_ticks(T0, 120, 3, host="h", seed=5)))
    tb = batch_of(ticks)
    assert tb is not None and tb.gpu_processes and tb.host_processes
    columnar = _columnar(conn, tb)
    assert columnar.proc_rows and columnar.gpu_proc_rows and columnar.share_sums
    _same(columnar, _per_tick(conn, ticks))


def test_a_batch_the_bulk_path_refuses_is_refused_untouched(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    tb = batch_of(list(realistic_ticks(T0, 10, 3, host="h")))
    assert tb is not None
    nan = tb.device["power_w"].astype(np.float64)
    nan[3, 1] = np.nan
    for odd in (
        dataclasses.replace(tb, device={**tb.device, "power_w": nan}),
        dataclasses.replace(tb, host="elsewhere"),
        dataclasses.replace(tb, device={**tb.device, "mem_used": nan}),
    ):
        batch = Batch()
        assert not add_tick_batch(batch, Registry(conn), odd)
        assert batch == Batch()
    monkeypatch.setattr(bulk_rows, "_numpy", False)
    assert not add_tick_batch(Batch(), Registry(conn), tb)


# Values on and around the .5 boundaries, where rounding rules differ.
_num = st.one_of(
    st.integers(0, 400),
    st.floats(0, 400, allow_nan=False).map(lambda v: round(v * 2) / 2),
    st.floats(0, 400, allow_nan=False),
)


@st.composite
def _batches(draw: st.DrawFn) -> TickBatch:
    n = draw(st.integers(1, 30))
    start = T0 + draw(st.integers(0, 3600)) + draw(st.sampled_from([0.0, 0.0005, 0.25]))
    steps = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 7.5, 60.0, -3.0]), min_size=n))
    ts = np.cumsum(np.array(steps[:n], np.float64)) + start

    def grid(shape: tuple[int, ...], values: st.SearchStrategy[float]) -> np.ndarray:
        size = int(np.prod(shape))
        drawn = draw(st.lists(values, min_size=size, max_size=size))
        return np.array(drawn, np.float64).reshape(shape)

    k = 3
    device = {
        name: grid((n, k), _num)
        for name in ("gpu_util", "mem_util", "power_w", "temp_c", "sm_clock_mhz")
    }
    device["mem_clock_mhz"] = grid((n, k), _num)
    device["mem_used"] = np.array(
        draw(st.lists(st.integers(0, 80 << 30), min_size=n * k, max_size=n * k)), np.int64
    ).reshape(n, k)
    host_values = {
        name: grid((n,), _num)
        for name in HOST_FIELDS
        if name not in ("per_core", "mem_used", "mem_total", "swap_used")
    }
    host_values["per_core"] = grid((n, 4), st.floats(-5, 150))
    for name in ("mem_used", "mem_total", "swap_used"):
        host_values[name] = np.array(
            draw(st.lists(st.integers(0, 1 << 40), min_size=n, max_size=n)), np.int64
        )
    return TickBatch(
        host="h",
        devices=tuple((f"GPU-h-{i}", i) for i in range(k)),
        ts=ts,
        device=device,
        dt_s=grid((n, k), st.sampled_from([0.0, 0.5, 1.0, 1.0005, 2.5])),
        energy_j=grid((n, k), _num),
        energy_measured=np.array(
            draw(st.lists(st.booleans(), min_size=n * k, max_size=n * k)), np.bool_
        ).reshape(n, k),
        host_values=host_values,
        host_dt_s=grid((n,), _num),
        host_energy_j=grid((n,), _num),
        host_energy_measured=np.array(
            draw(st.lists(st.booleans(), min_size=n, max_size=n)), np.bool_
        ),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tb=_batches())
def test_random_batches_give_the_rows_of_their_ticks(
    tmp_path_factory: pytest.TempPathFactory, tb: TickBatch
) -> None:
    path = tmp_path_factory.mktemp("hyp") / "h.db"
    db = connect(path)
    migrate(db, str(path))
    Registry(db).register(host_info("h"), device_infos("h", 3), T0)
    ticks = list(tb.ticks())
    _same(_columnar(db, tb), _per_tick(db, ticks))
    db.close()


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}
    db.close()
    for volatile in ("meta", "devices", "hosts"):  # registration times: the clock's
        out.pop(volatile, None)
    return out


def _record(path: Path, ticks: list[Tick], *, batches: bool) -> Writer:
    w = Writer(path, clock=SimulatedClock(T0), retention=KEEP_ALL, batch_ticks=250)
    w.start()
    w.register(host_info("h"), device_infos("h", 3))
    if batches:
        for at in range(0, len(ticks), 90):
            tb = batch_of(ticks[at : at + 90])
            assert tb is not None
            w.submit_batch(tb, wait=True)
    else:
        for t in ticks:
            w.submit(t)
    w.flush()
    w.stop()
    return w


@pytest.mark.parametrize("numpy_missing", [False, True])
def test_the_writer_stores_batches_as_it_stores_their_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, numpy_missing: bool
) -> None:
    ticks = _with_jobs(list(realistic_ticks(T0, 600, 3, host="h", seed=6)))
    expected = _record(tmp_path / "ticks.db", ticks, batches=False)
    if numpy_missing:  # batches made, then the writer's bulk path finds no numpy
        monkeypatch.setattr("costmeter.store.batch_of_ticks.numpy_module", lambda: np)
        monkeypatch.setattr(bulk_rows, "_numpy", False)
        monkeypatch.setattr("costmeter.store.writer.numpy_module", lambda: None)
    got = _record(tmp_path / "batches.db", ticks, batches=True)
    assert got.stats.ticks_written == expected.stats.ticks_written == 600
    assert got.stats.rows_written == expected.stats.rows_written
    assert _dump(tmp_path / "batches.db") == _dump(tmp_path / "ticks.db")
    assert _dump(tmp_path / "ticks.db")["gpu_share_1m"]


def test_batches_count_tick_by_tick_against_max_pending(tmp_path: Path) -> None:
    """While the database is locked, batches wait in memory up to ``max_pending`` ticks; past
    it the oldest batch is dropped whole, and ``stop`` counts its ticks among the lost."""
    ticks = list(realistic_ticks(T0, 300, 3, host="h", seed=7))
    batches = [batch_of(ticks[at : at + 60]) for at in range(0, 300, 60)]
    db = tmp_path / "w.db"
    errors: list[str] = []
    w = Writer(
        db,
        clock=SimulatedClock(T0),
        retention=KEEP_ALL,
        flush_interval=0.05,
        busy_timeout=0.05,
        max_pending=150,
        on_error=errors.append,
    )
    w.start()
    w.register(host_info("h"), device_infos("h", 3))
    assert w.flush(10)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for tb in batches:
            assert tb is not None
            w.submit_batch(tb)  # never blocks
        assert w.stats.pending <= 150
        assert w.stats.dropped == 180  # three batches of 60, oldest first
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert w.flush(10)
    w.stop()
    assert w.stats.ticks_written == 120 and w.stats.lost == 180
    assert any("the oldest are being dropped" in e for e in errors)
    con = sqlite3.connect(db)
    kept = [r[0] for r in con.execute("SELECT ts FROM host_samples ORDER BY ts")]
    con.close()
    # The newest batch, and either the one being written when the lock came or the one
    # before the newest: whole batches, never part of one.
    assert kept[-60:] == [round((T0 + k) * 1000) for k in range(240, 300)]
    assert kept[0] in (round(T0 * 1000), round((T0 + 180) * 1000))
    assert kept[:60] == [kept[0] + 1000 * k for k in range(60)]
