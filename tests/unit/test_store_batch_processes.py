"""Process rows and GPU shares built in bulk (``store/batch_processes.py``) are those of the
tick-by-tick path: the same rows in the same order, the same process ids given out in the
same order, the same owners recorded and the same per-minute share sums, bit for bit."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.core.model import IDLE_UTIL_PERCENT, GpuProcess, ProcessSample, Tick
from costmeter.core.owner import Owner
from costmeter.core.tick_batch import HOST_FIELDS, TickBatch
from costmeter.store import batch_processes
from costmeter.store.batch_of_ticks import batch_of
from costmeter.store.bulk_rows import add_tick_batch, add_ticks_bulk
from costmeter.store.database import connect
from costmeter.store.rows import Batch, Registry, add_tick
from costmeter.store.schema import migrate
from costmeter.store.testing import device_infos, host_info, make_tick, realistic_ticks

T0 = 1_699_999_200.0  # on a whole hour
K = 3
OWNERS = (None, Owner(user="ann", job_id="7"), Owner(uid=5, user="bob"))
#: (pid, create_time): pid 100 comes back as another process (create time 2.0).
#: realistic_ticks' seed whose energies add up otherwise in one sum than one by one.
SHARED_SEED = 1
PROCESSES = ((100, 1.0), (101, 1.0), (102, 1.0), (100, 2.0), (103, 1.0))


def _database(path: Path, *, ownerless: bool) -> sqlite3.Connection:
    """A database with the host and its GPUs; with ``ownerless``, pid 101 already has a row
    without an owner (an old recorder's), which a sample with an owner fills in."""
    db = connect(path)
    migrate(db, str(path))
    reg = Registry(db)
    reg.register(host_info("h"), device_infos("h", K), T0)
    if ownerless:
        reg.proc_id(reg.hosts["h"][0], 101, 1.0, "old", "old", "")
    return db


@st.composite
def _runs(draw: st.DrawFn) -> list[TickBatch]:
    """One to three batches of one host whose process sets mostly last a while (the bulk
    path's stretches) and change now and then: new processes, a pid reused, GPU-only and
    shared GPUs, owners arriving late, tick times twice, intervals of zero, huge energies."""
    out = []
    seen = 0
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 40))
        steps = draw(st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.0, 7.5, 61.0]), min_size=n))
        ts = np.cumsum(np.array(steps[:n])) + T0 + seen + draw(st.sampled_from([0.0, 0.25]))
        seen += int(sum(steps[:n])) + 100
        host_procs: list[tuple[ProcessSample, ...]] = []
        gpu_procs: list[tuple[tuple[GpuProcess, ...], ...]] = []
        while len(host_procs) < n:
            length = draw(st.integers(1, 12))
            cpu = draw(st.lists(st.sampled_from(PROCESSES), max_size=4))
            owner = draw(st.sampled_from(OWNERS))
            gpus = tuple(
                draw(
                    st.lists(
                        st.tuples(
                            st.sampled_from([100, 101, 102, 103, 104, 105]),
                            st.one_of(st.none(), st.integers(0, 80 << 30)),
                            st.one_of(st.none(), st.integers(0, 100), st.sampled_from([2.5, 3.5])),
                        ),
                        max_size=draw(st.sampled_from([1, 1, 2])),
                    )
                )
                for _ in range(K)
            )
            for _ in range(length):
                k = len(host_procs)
                host_procs.append(
                    tuple(
                        ProcessSample(pid, ct, "python", f"train {pid}", "", 50.0 + k, 1 << 30, k)
                        if owner is None
                        else ProcessSample(
                            pid, ct, "python", "train", "", 50.0 + k, 1 << 30, k * 1.5, owner
                        )
                        for pid, ct in cpu
                    )
                )
                gpu_procs.append(
                    tuple(tuple(GpuProcess(pid, mem, sm) for pid, mem, sm in g) for g in gpus)
                )
        host_procs, gpu_procs = host_procs[:n], gpu_procs[:n]

        def grid(n: int, values: st.SearchStrategy[Any], dtype: Any = np.float64) -> Any:
            drawn = draw(st.lists(values, min_size=n * K, max_size=n * K))
            return np.array(drawn, dtype).reshape(n, K)

        util = grid(n, st.sampled_from([0.0, 3.0, 4.5, 5.0, 60.0, 100.0]))
        out.append(
            TickBatch(
                host="h",
                devices=tuple((f"GPU-h-{i}", i) for i in range(K)),
                ts=ts,
                device={
                    "gpu_util": util,
                    "mem_util": util / 2,
                    "mem_used": grid(n, st.integers(0, 80 << 30), np.int64),
                    "power_w": util * 3,
                    "temp_c": util / 3,
                    "sm_clock_mhz": util * 10,
                    "mem_clock_mhz": util * 5,
                },
                dt_s=grid(n, st.sampled_from([0.0, 1.0, 1.0, 7.5, 1.0005])),
                energy_j=grid(n, st.sampled_from([0.0, 250.0, 300.5, 1e12])),
                energy_measured=np.ones((n, K), np.bool_),
                host_values={
                    **{name: np.full(n, 10.0) for name in HOST_FIELDS},
                    "per_core": np.full((n, 2), 20.0),
                    **{name: np.full(n, 1 << 30) for name in ("mem_used", "mem_total")},
                    "swap_used": np.zeros(n, np.int64),
                },
                host_dt_s=np.ones(n),
                host_energy_j=np.full(n, 20.0),
                host_energy_measured=np.ones(n, np.bool_),
                host_processes=tuple(host_procs) if any(host_procs) else (),
                gpu_processes=tuple(gpu_procs) if any(any(g) for g in gpu_procs) else (),
            )
        )
    return out


def _state(db: sqlite3.Connection, batch: Batch) -> dict[str, Any]:
    """Everything the two paths must agree on, orders included."""
    return {
        "proc_rows": batch.proc_rows,
        "proc_types": [tuple(map(type, r)) for r in batch.proc_rows],
        "gpu_proc_rows": batch.gpu_proc_rows,
        "gpu_proc_types": [tuple(map(type, r)) for r in batch.gpu_proc_rows],
        "share_sums": list(batch.share_sums.items()),
        "share_ticks": batch.share_ticks,
        "share_dups": batch.share_dups,
        "processes": db.execute("SELECT * FROM processes ORDER BY id").fetchall(),
    }


def _columnar(db: sqlite3.Connection, run: list[TickBatch]) -> tuple[Batch, Registry]:
    batch, reg = Batch(), Registry(db)
    for tb in run:
        assert add_tick_batch(batch, reg, tb)
    return batch, reg


def _tick_by_tick(db: sqlite3.Connection, ticks: list[Tick]) -> tuple[Batch, Registry]:
    batch, reg = Batch(), Registry(db)
    for t in ticks:
        add_tick(batch, reg, t)
    return batch, reg


def _compare(tmp: Path, run: list[TickBatch], *, ownerless: bool) -> None:
    ticks = [t for tb in run for t in tb.ticks()]
    slow_db = _database(tmp / "slow.db", ownerless=ownerless)
    slow, slow_reg = _tick_by_tick(slow_db, ticks)
    expected = _state(slow_db, slow)
    fast_db = _database(tmp / "fast.db", ownerless=ownerless)
    fast, fast_reg = _columnar(fast_db, run)
    assert _state(fast_db, fast) == expected
    assert fast_reg.latest_proc == slow_reg.latest_proc
    assert fast_reg.ownerless == slow_reg.ownerless
    # The Tick objects' bulk path (one host) gives them too.
    ticks_db = _database(tmp / "ticks.db", ownerless=ownerless)
    bulk = Batch()
    assert add_ticks_bulk(bulk, Registry(ticks_db), ticks)
    assert _state(ticks_db, bulk) == expected
    for db in (slow_db, fast_db, ticks_db):
        db.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=_runs(), ownerless=st.booleans(), max_slow=st.sampled_from([1, 3, 16, 1000]))
def test_random_runs_give_the_rows_ids_and_shares_of_the_per_tick_path(
    tmp_path_factory: pytest.TempPathFactory, run: list[TickBatch], ownerless: bool, max_slow: int
) -> None:
    saved = batch_processes.MAX_SLOW_TICKS
    batch_processes.MAX_SLOW_TICKS = max_slow
    try:
        _compare(tmp_path_factory.mktemp("proc"), run, ownerless=ownerless)
    finally:
        batch_processes.MAX_SLOW_TICKS = saved


def _steady_jobs(ticks: list[Tick]) -> Iterator[Tick]:
    """A job per busy GPU for the whole run (the common case), seen CPU-side too."""

    for k, tick in enumerate(ticks):
        devices = tuple(
            replace(s, processes=(GpuProcess(500 + s.index, s.mem_used, s.gpu_util),))
            for s in tick.devices
        )
        hs = tick.host_sample
        assert hs is not None
        cpu = tuple(
            ProcessSample(500 + s.index, T0 - 9, "python", "train", "me", 99.0, 1 << 30, k * 0.5)
            for s in tick.devices
        )
        yield replace(tick, devices=devices, host_sample=replace(hs, processes=cpu))


def test_a_steady_job_is_done_in_one_stretch_after_its_first_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the first tick (processes not yet known in this transaction) goes tick by tick;
    the rows are still those of the per-tick path."""
    ticks = list(_steady_jobs(list(realistic_ticks(T0, 300, K, host="h", seed=3))))
    tb = batch_of(ticks)
    assert tb is not None
    slow_ticks: list[int] = []
    per_tick = batch_processes.add_tick_processes

    def counted(*args: Any) -> None:
        slow_ticks.append(args[3])
        per_tick(*args)

    monkeypatch.setattr(batch_processes, "add_tick_processes", counted)
    db = _database(tmp_path / "fast.db", ownerless=False)
    fast, _ = _columnar(db, [tb])
    assert slow_ticks == [0]
    assert len(fast.proc_rows) == len(fast.gpu_proc_rows) == 300 * K
    slow_db = _database(tmp_path / "slow.db", ownerless=False)
    assert _state(db, fast) == _state(slow_db, _tick_by_tick(slow_db, ticks)[0])
    db.close()
    slow_db.close()


def test_whole_ticks_added_to_a_shared_minute_go_one_by_one(tmp_path: Path) -> None:
    """A GPU shared by two processes for two ticks leaves fractions in the minute's sums;
    the ticks of that minute in which one of them holds it alone are then added one at a
    time, as the per-tick path adds them (adding their total instead rounds otherwise)."""
    ticks = list(_steady_jobs(list(realistic_ticks(T0, 60, K, host="h", seed=SHARED_SEED))))
    shared = (GpuProcess(500, 1, None), GpuProcess(501, 2, None))  # shares 1/3 and 2/3
    for i in (0, 1):
        t = ticks[i]
        ticks[i] = replace(t, devices=(replace(t.devices[0], processes=shared), *t.devices[1:]))
    tb = batch_of(ticks)
    assert tb is not None
    slow_db = _database(tmp_path / "slow.db", ownerless=False)
    slow = _tick_by_tick(slow_db, ticks)[0]
    fast_db = _database(tmp_path / "fast.db", ownerless=False)
    assert _state(fast_db, _columnar(fast_db, [tb])[0]) == _state(slow_db, slow)
    # The data are such that adding the whole ticks' total would give other sums.
    first_db = _database(tmp_path / "first.db", ownerless=False)
    (key, fractions), *_ = _tick_by_tick(first_db, ticks[:2])[0].share_sums.items()
    first_db.close()
    rows = []
    for t in ticks[2:]:
        iv = t.device_intervals["GPU-h-0"]
        assert iv.energy_j is not None and t.devices[0].gpu_util is not None
        idle = round(t.devices[0].gpu_util) < IDLE_UTIL_PERCENT
        rows.append((idle, round(iv.dt_s * 1000), round(iv.energy_j * 1000)))
    totals = [
        sum(dt for idle, dt, _ in rows if not idle),
        sum(dt for idle, dt, _ in rows if idle),
        sum(e for _, _, e in rows),
        sum(e for idle, _, e in rows if idle),
    ]
    assert all(dt for _, dt, _ in rows)
    assert slow.share_sums[key] != [f + t for f, t in zip(fractions, totals, strict=True)]
    slow_db.close()
    fast_db.close()


@pytest.mark.parametrize("owner_only", [False, True])
def test_ticks_of_two_hosts_or_with_owner_only_processes_go_tick_by_tick(
    tmp_path: Path, owner_only: bool
) -> None:
    """``add_ticks_bulk`` of ticks from two hosts, or carrying processes known by owner
    only, gives the per-tick rows and ids (its tick-by-tick branch)."""
    pod = ProcessSample(4242, 0.0, "pod", "", "", 0.0, 0, 0.0, Owner(user="k8s", pod="p"))
    ticks = []
    for k in range(40):
        for host in ("h", "g") if not owner_only else ("h",):
            t = make_tick(T0 + k, host=host, devices=2, with_processes=k % 7 != 3, util=k % 9)
            ticks.append(replace(t, processes=(pod,)) if owner_only else t)
    states = []
    for name, bulk in (("slow", False), ("fast", True)):
        db = _database(tmp_path / f"{name}.db", ownerless=False)
        Registry(db).register(host_info("g"), device_infos("g", 2), T0)
        if bulk:
            batch = Batch()
            assert add_ticks_bulk(batch, Registry(db), ticks)
        else:
            batch = _tick_by_tick(db, ticks)[0]
        states.append(_state(db, batch))
        db.close()
    assert states[0] == states[1]
    assert states[0]["proc_rows"] and states[0]["gpu_proc_rows"] and states[0]["share_sums"]
