"""Store.attribution: hand-made ticks through the real writer into a real SQLite file, then
who used each GPU-second and CPU-second, with owners, runs and tags read back."""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import GpuProcess, Interval, ProcessSample, Tick
from costmeter.core.owner import Owner
from costmeter.store import MIGRATIONS, RetentionPolicy, Store, Writer, migrate
from costmeter.store.database import connect
from costmeter.store.runs import RunStore
from costmeter.store.share_rollup import rebuild_shares
from costmeter.store.testing import device_infos, host_info, make_tick

T0 = 1_700_000_000.0
GIB = 1 << 30
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)
ALICE = Owner(uid=1001, user="alice", job_id="812", account="cv-lab", partition="gpu")
BOB = Owner(uid=1002, user="bob", container_id="a" * 64, unreadable=frozenset({"environ"}))


def tick(
    ts: float,
    gpu0: Sequence[GpuProcess] = (),
    gpu1: Sequence[GpuProcess] = (),
    cpu: Sequence[ProcessSample] = (),
    *,
    util: float = 80.0,
    power_w: float = 300.0,
) -> Tick:
    """Two GPUs for 1 s at ``power_w`` (energy = power x 1 s) with the given processes."""
    base = make_tick(ts, devices=2, util=util, power_w=power_w)
    devices = (
        replace(base.devices[0], processes=tuple(gpu0)),
        replace(base.devices[1], processes=tuple(gpu1)),
    )
    assert base.host_sample is not None
    hs = replace(base.host_sample, processes=tuple(cpu))
    return Tick(ts, base.host, hs, devices, base.device_intervals, Interval(1.0, 50.0, True))


def proc(pid: int, cpu_s: float, owner: Owner | None, created: float = T0 - 100) -> ProcessSample:
    return ProcessSample(
        pid, created, "python", f"python job{pid}.py", "?", 100.0, GIB, cpu_s, owner=owner
    )


def write(path: Path, ticks: Sequence[Tick]) -> None:
    writer = Writer(path, clock=SimulatedClock(T0), retention=KEEP_ALL, flush_interval=0.05)
    writer.start()
    writer.register(host_info(), device_infos(n=2))
    for t in ticks:
        writer.submit(t)
    assert writer.flush(10)
    writer.stop()


def by_proc(att, field: str) -> dict[int, float]:  # type: ignore[no-untyped-def]
    out: dict[int, float] = defaultdict(float)
    for s in att.shares:
        out[att.processes[s.proc_id].pid] += getattr(s, field)
    return dict(out)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """GPU 0: PID 100 (alice, 3 GiB) and PID 200 (bob, 1 GiB) for 60 s, idle for the last 20;
    GPU 1: nothing. CPU: both at one core."""
    path = tmp_path / "c.db"
    ticks = []
    for k in range(1, 61):
        g0 = [GpuProcess(100, 3 * GIB, None), GpuProcess(200, 1 * GIB, None)]
        cpu = [proc(100, float(k), ALICE), proc(200, float(k), BOB)]
        idle = k > 40
        ticks.append(
            tick(T0 + k, g0, (), cpu, util=2.0 if idle else 80.0, power_w=60.0 if idle else 300.0)
        )
    write(path, ticks)
    return path


def test_two_processes_split_a_gpu_3_to_1_by_memory(shared: Path) -> None:
    with Store.open(shared) as store:
        att = store.attribution(T0, T0 + 61)
    busy = by_proc(att, "busy_s")
    held = by_proc(att, "held_idle_s")
    energy = by_proc(att, "energy_j")
    idle_energy = by_proc(att, "idle_energy_j")
    # 40 busy seconds, 20 idle ones.
    assert busy == pytest.approx({100: 40 * 0.75, 200: 40 * 0.25})
    assert held == pytest.approx({100: 20 * 0.75, 200: 20 * 0.25})
    assert energy == pytest.approx(
        {100: 0.75 * (40 * 300 + 20 * 60), 200: 0.25 * (40 * 300 + 20 * 60)}
    )
    assert idle_energy == pytest.approx({100: 0.75 * 20 * 60, 200: 0.25 * 20 * 60})
    assert {s.uuid for s in att.shares} == {"GPU-host-a-0"}
    # The GPU with nothing on it is free, nobody's.
    (free,) = att.free
    assert (free.uuid, free.seconds, free.energy_j, free.run_id) == (
        "GPU-host-a-1",
        60,
        40 * 300 + 20 * 60,
        None,
    )


def test_the_owners_are_written_once_and_read_back_equal(shared: Path) -> None:
    with Store.open(shared) as store:
        att = store.attribution(T0, T0 + 61)
    owners = {p.pid: p.owner for p in att.processes.values()}
    assert owners == {100: ALICE, 200: BOB}
    rec = next(p for p in att.processes.values() if p.pid == 100)
    assert (rec.host, rec.name, rec.cmdline, rec.create_time) == (
        "host-a",
        "python",
        "python job100.py",
        T0 - 100,
    )
    conn = sqlite3.connect(shared)
    try:
        rows = conn.execute("SELECT pid, user, unreadable FROM processes ORDER BY pid").fetchall()
    finally:
        conn.close()
    # One row per process; the user name from the owner where psutil had none; '' = all read.
    assert rows == [(100, "alice", ""), (200, "bob", "environ")]


def test_an_owner_read_late_is_filled_in_once_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    other = Owner(uid=0, user="root")
    ticks = [
        tick(T0 + 1, [GpuProcess(300, GIB, 50.0)]),  # GPU side only: no CPU sample
        tick(T0 + 2, [GpuProcess(300, GIB, 50.0)], cpu=[proc(300, 1.0, None)]),  # not read yet
        tick(T0 + 3, [GpuProcess(300, GIB, 50.0)], cpu=[proc(300, 2.0, ALICE)]),
    ]
    write(path, ticks)
    write(path, [tick(T0 + 4, [GpuProcess(300, GIB, 50.0)], cpu=[proc(300, 3.0, other)])])
    with Store.open(path) as store:
        att = store.attribution(T0, T0 + 5)
    with_create = [p for p in att.processes.values() if p.create_time]
    assert [p.owner for p in with_create] == [ALICE]
    # The GPU-only row of the first tick stays unattributed: nothing was read for it.
    gpu_only = [p for p in att.processes.values() if not p.create_time]
    assert [p.owner for p in gpu_only] == [Owner()] and not gpu_only[0].owner.known


def test_share_sums_equal_device_seconds_minus_free_seconds(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    ticks = []
    for k in range(1, 121):
        g0 = [GpuProcess(100, 3 * GIB, 70.0), GpuProcess(200, GIB, 10.0)] if k % 3 else []
        g1 = [GpuProcess(300, None, 20.0)] if k % 5 else []
        if k % 7 == 0:
            g1.append(GpuProcess(400, 2 * GIB, None))  # memory unknown for one: by SM alone
        ticks.append(tick(T0 + k, g0, g1, util=2.0 if k % 4 == 0 else 90.0, power_w=100.0 + k))
    write(path, ticks)
    with Store.open(path) as store:
        for window in ((T0, T0 + 121), (T0 + 10.5, T0 + 77.2)):
            att = store.attribution(*window)
            usage = {u.uuid: u for u in store.device_usage(*window)}
            for uuid, u in usage.items():
                used = sum(s.busy_s + s.held_idle_s for s in att.shares if s.uuid == uuid)
                free = sum(f.seconds for f in att.free if f.uuid == uuid)
                assert used + free == pytest.approx(u.seconds, rel=1e-9)
                assert used == pytest.approx(u.seconds - free, rel=1e-9)
                energy = sum(s.energy_j for s in att.shares if s.uuid == uuid)
                energy += sum(f.energy_j for f in att.free if f.uuid == uuid)
                assert energy == pytest.approx(u.energy_j, rel=1e-9)
                idle = sum(s.held_idle_s for s in att.shares if s.uuid == uuid)
                idle_free = sum(f.seconds for f in att.free if f.uuid == uuid)
                assert idle <= u.idle_seconds + 1e-9
                assert idle_free <= u.seconds - idle + 1e-9


def test_memory_and_sm_shares_are_averaged(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    ticks = [
        tick(T0 + k, [GpuProcess(100, 3 * GIB, 50.0), GpuProcess(200, GIB, 50.0)])
        for k in range(1, 12)
    ]
    write(path, ticks)
    with Store.open(path) as store:
        busy = by_proc(store.attribution(T0, T0 + 12), "busy_s")
    assert busy == pytest.approx({100: 11 * (0.75 + 0.5) / 2, 200: 11 * (0.25 + 0.5) / 2})


def test_buckets(shared: Path) -> None:
    with Store.open(shared) as store:
        att = store.attribution(T0, T0 + 61, bucket_s=30)
    rows = {(att.processes[s.proc_id].pid, s.bucket): s.busy_s + s.held_idle_s for s in att.shares}
    first = (T0 // 30) * 30
    assert {b for _, b in rows} == {first, first + 30, first + 60}
    for pid, part in ((100, 0.75), (200, 0.25)):
        per_bucket = [rows.get((pid, first + i * 30), 0.0) for i in range(3)]
        # Ticks at T0+1..T0+60 (1 s each) by the bucket their ts falls in.
        expected = [0, 0, 0]
        for k in range(1, 61):
            expected[int((T0 + k - first) // 30)] += 1
        assert per_bucket == pytest.approx([e * part for e in expected])
    cpu: dict[int, float] = defaultdict(float)
    for c in att.cpu:
        assert c.bucket is not None and c.host == "host-a"
        cpu[att.processes[c.proc_id].pid] += c.core_s
    assert dict(cpu) == pytest.approx({100: 59.0, 200: 59.0})  # from the first sample on
    with pytest.raises(ValueError, match="positive"):
        Store.open(shared).attribution(T0, T0 + 1, bucket_s=0)


def test_cpu_core_seconds_from_cpu_time(shared: Path) -> None:
    with Store.open(shared) as store:
        whole = store.attribution(T0, T0 + 61)
        part = store.attribution(T0 + 20.5, T0 + 30.5)
    cpu = {whole.processes[c.proc_id].pid: c.core_s for c in whole.cpu}
    # Created before the window: the CPU time before the first sample is not this window's...
    assert cpu == pytest.approx({100: 59.0, 200: 59.0})
    # ...and a window that starts between samples counts from the sample before it.
    assert {part.processes[c.proc_id].pid: c.core_s for c in part.cpu} == pytest.approx(
        {100: 10.0, 200: 10.0}
    )


def test_a_process_created_in_the_window_counts_its_first_cpu_time(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, [tick(T0 + k, cpu=[proc(500, 5.0 + k, None, created=T0 + 0.5)]) for k in (1, 2)])
    with Store.open(path) as store:
        att = store.attribution(T0, T0 + 3)
    assert [c.core_s for c in att.cpu] == pytest.approx([7.0])


def test_runs_found_by_run_key_and_by_pids_with_their_tags(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    keyed = replace(ALICE, run_key="costmeter-run-abc")
    ticks = [
        tick(
            T0 + k,
            [GpuProcess(100, GIB, None)],
            [GpuProcess(200, GIB, None)],
            [
                proc(100, k, keyed, created=T0 + 0.5),
                proc(200, k, BOB, created=T0 + 0.5),
                proc(600, k, None, created=T0 + 0.5),
            ],
        )
        for k in range(1, 11)
    ]
    write(path, ticks)
    with RunStore.open(path) as runs:
        by_key = runs.insert(
            name="k",
            backend="local",
            status="running",
            host="host-a",
            started=T0,
            gpus=[0],
            pids=[],
            handle_key="costmeter-run-abc",
            tags={"project": "vision"},
        )
        by_pid = runs.insert(
            name="p",
            backend="local",
            status="succeeded",
            host="host-a",
            started=T0,
            ended=T0 + 20,
            gpus=[1],
            pids=[200],
            tags={"team": "nlp"},
        )
        # Another host's run with the same PID is not this one's.
        runs.insert(
            name="x",
            backend="local",
            status="succeeded",
            host="elsewhere",
            started=T0,
            ended=T0 + 20,
            gpus=[0],
            pids=[200, 600],
        )
    with Store.open(path) as store:
        att = store.attribution(T0, T0 + 11)
    runs_of = {p.pid: p.run_id for p in att.processes.values()}
    assert runs_of == {100: by_key, 200: by_pid, 600: None}
    assert att.run_tags == {by_key: {"project": "vision"}, by_pid: {"team": "nlp"}}


def test_an_empty_gpu_with_a_run_placed_is_the_runs(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, [tick(T0 + k) for k in range(1, 21)])  # both GPUs empty for 20 s
    with RunStore.open(path) as runs:
        a = runs.insert(
            name="a",
            backend="local",
            status="succeeded",
            host="host-a",
            started=T0 + 5.5,
            ended=T0 + 15.5,
            gpus=[0],
            pids=[],
        )
        b = runs.insert(
            name="b",
            backend="local",
            status="succeeded",
            host="host-a",
            started=T0 + 10.5,
            ended=T0 + 12.5,
            gpus=[0],
            pids=[],
        )
    with Store.open(path) as store:
        att = store.attribution(T0, T0 + 21)
    gpu0 = {f.run_id: f.seconds for f in att.free if f.uuid == "GPU-host-a-0"}
    # Ticks 6..15 are a's; 11 and 12 shared with b (half each); the others nobody's.
    assert gpu0 == pytest.approx({a: 8 + 1.0, b: 1.0, None: 20 - 10})
    assert {f.run_id for f in att.free if f.uuid == "GPU-host-a-1"} == {None}
    assert att.run_tags == {a: {}, b: {}}
    assert att.covered_from == T0 + 1


def test_an_empty_window_and_an_empty_store(tmp_path: Path, shared: Path) -> None:
    with Store.open(shared) as store:
        att = store.attribution(T0 + 1000, T0 + 2000)
        assert (att.shares, att.free, att.cpu, dict(att.processes)) == ((), (), (), {})
        assert att.covered_from == T0 + 1
    with Store.open(tmp_path / "empty.db") as store:
        assert store.attribution(T0, T0 + 10).covered_from is None


def test_a_version_4_database_with_data_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    conn = connect(path)
    try:
        migrate(conn, str(path), MIGRATIONS[:4])
        conn.execute("INSERT INTO hosts (id, hostname, cpu_count) VALUES (1, 'old-box', 8)")
        conn.execute(
            "INSERT INTO devices (id, host_id, idx, uuid, name, unsupported)"
            " VALUES (1, 1, 0, 'GPU-old', 'A100', '[]')"
        )
        conn.execute(
            "INSERT INTO processes (id, host_id, pid, create_time, name, cmdline, user)"
            " VALUES (7, 1, 4242, ?, 'python', 'python t.py', 'carol')",
            (T0,),
        )
        conn.execute(
            "INSERT INTO runs (id, name, backend, status, host, started, ended, gpus,"
            " pids) VALUES (3, 'r', 'local', 'succeeded', 'old-box', ?, ?, '[0]',"
            " '[4242]')",
            (T0, T0 + 10),
        )
        for k in range(1, 11):
            ts = round((T0 + k) * 1000)
            conn.execute(
                "INSERT INTO device_samples (device_id, ts, dt_ms, gpu_util, energy_mj,"
                " energy_measured) VALUES (1, ?, 1000, 90, 250000, 1)",
                (ts,),
            )
            conn.execute("INSERT INTO gpu_process_samples VALUES (1, ?, 7, ?, 80)", (ts, GIB))
            conn.execute("INSERT INTO process_samples VALUES (7, ?, 100.0, ?, ?)", (ts, GIB, k))
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    finally:
        conn.close()
    with Store.open(path) as store:  # migrates
        assert store.schema_version == len(MIGRATIONS) >= 5
        att = store.attribution(T0, T0 + 11)
    (share,) = att.shares
    assert (share.busy_s, share.energy_j) == (10.0, 2500.0)
    (rec,) = att.processes.values()
    assert rec.owner == Owner(user="carol") and rec.run_id == 3
    assert att.run_tags == {3: {}}
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT tags FROM runs").fetchone() == ("{}",)
        assert conn.execute("SELECT uid, unreadable FROM processes").fetchone() == (None, None)
        assert json.loads(conn.execute("SELECT pids FROM runs").fetchone()[0]) == [4242]
    finally:
        conn.close()
    # The writer then fills the owner of the old row in, once, when a sample carries it.
    write(path, [])  # registering host-a only: the old rows stay as they were
    writer = Writer(path, clock=SimulatedClock(T0), retention=KEEP_ALL, flush_interval=0.05)
    writer.start()
    old = replace(make_tick(T0 + 11, host="old-box", devices=0), device_intervals={})
    assert old.host_sample is not None
    hs = replace(
        old.host_sample,
        processes=(
            ProcessSample(
                4242,
                T0,
                "python",
                "python t.py",
                "carol",
                1.0,
                GIB,
                11.0,
                owner=Owner(uid=1003, user="carol", job_id="9"),
            ),
        ),
    )
    writer.submit(replace(old, host_sample=hs))
    assert writer.flush(10)
    writer.stop()
    with Store.open(path) as store:
        (rec,) = store.attribution(T0, T0 + 12).processes.values()
    assert rec.owner == Owner(uid=1003, user="carol", job_id="9") and rec.proc_id == 7


def _totals(att) -> tuple[dict[tuple[str, int], list[float]], dict[str, list[float]]]:  # type: ignore[no-untyped-def]
    shares: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0] * 4)
    for s in att.shares:
        row = shares[(s.uuid, att.processes[s.proc_id].pid)]
        for i, v in enumerate((s.busy_s, s.held_idle_s, s.energy_j, s.idle_energy_j)):
            row[i] += v
    free: dict[str, list[float]] = defaultdict(lambda: [0.0] * 2)
    for f in att.free:
        free[f.uuid][0] += f.seconds
        free[f.uuid][1] += f.energy_j
    return dict(shares), dict(free)


def _random_ticks(rng: random.Random, first: int, last: int) -> list[Tick]:
    out = []
    for k in range(first, last):
        gpus: list[list[GpuProcess]] = [[], []]
        for g in range(2):
            for pid in rng.sample([100, 200, 300, 400], rng.randrange(4)):
                mem = None if rng.random() < 0.1 else rng.randrange(0, 8) * GIB
                sm = None if rng.random() < 0.2 else float(rng.randrange(0, 101))
                gpus[g].append(GpuProcess(pid + g, mem, sm))
        util = rng.choice((0.0, 3.0, 4.6, 5.0, 50.0, 99.0))
        out.append(tick(T0 + k, gpus[0], gpus[1], util=util, power_w=rng.uniform(50, 400)))
    return out


def test_the_writers_minute_shares_equal_the_raw_ticks_even_when_ticks_come_again(
    tmp_path: Path,
) -> None:
    """Whole minutes come from ``gpu_share_1m`` (kept by the writer as it goes), edges and
    bucket widths that are not whole minutes from the raw rows: the totals agree, also after
    ticks were sent again (a backfill overlapping what was stored, with other processes)."""
    rng = random.Random(13)
    path = tmp_path / "c.db"
    writer = Writer(path, clock=SimulatedClock(T0), retention=KEEP_ALL, flush_interval=0.05)
    writer.start()
    writer.register(host_info(), device_infos(n=2))
    for first, last in ((1, 200), (150, 260), (255, 400), (30, 40)):
        for t in _random_ticks(rng, first, last):
            writer.submit(t)
        assert writer.flush(10)
    writer.stop()
    with Store.open(path) as store:
        for window in ((T0, T0 + 401), (T0 + 7.5, T0 + 333.3)):
            by_minutes = _totals(store.attribution(*window))
            by_ticks = _totals(store.attribution(*window, bucket_s=1))  # raw rows only
            assert by_minutes[0].keys() == by_ticks[0].keys()
            for key, values in by_ticks[0].items():
                assert by_minutes[0][key] == pytest.approx(values, rel=1e-9, abs=1e-9)
            assert by_minutes[1].keys() == by_ticks[1].keys()
            for uuid, values in by_ticks[1].items():
                assert by_minutes[1][uuid] == pytest.approx(values, rel=1e-9, abs=1e-9)
            usage = {u.uuid: u.seconds for u in store.device_usage(*window)}
            for uuid, seconds in usage.items():
                used = sum(v[0] + v[1] for (u, _), v in by_minutes[0].items() if u == uuid)
                assert used + by_minutes[1].get(uuid, [0.0])[0] == pytest.approx(seconds)
    # What the writer kept minute by minute is what a recomputation from the raw rows gives.
    conn = sqlite3.connect(path)
    try:
        kept = conn.execute("SELECT * FROM gpu_share_1m ORDER BY 1, 2, 3").fetchall()
        conn.execute("BEGIN")
        rebuild_shares(conn)
        again = conn.execute("SELECT * FROM gpu_share_1m ORDER BY 1, 2, 3").fetchall()
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert [r[:3] for r in kept] == [r[:3] for r in again]
    for a, b in zip(kept, again, strict=True):
        assert a[3:] == pytest.approx(b[3:], rel=1e-9, abs=1e-6)


def test_retention_drops_old_share_minutes_with_the_minute_rollups(shared: Path) -> None:
    with Store.open(shared) as store:
        assert store.attribution(T0, T0 + 61).shares
        store.apply_retention(
            RetentionPolicy(raw_days=1, minute_days=1, hour_days=None), now=T0 + 3 * 86400
        )
        att = store.attribution(T0, T0 + 61)
        assert att.shares == () and att.covered_from is None
    conn = sqlite3.connect(shared)
    try:
        assert conn.execute("SELECT count(*) FROM gpu_share_1m").fetchone() == (0,)
    finally:
        conn.close()


def test_free_ticks_of_a_minute_a_run_starts_and_ends_in_go_to_whoever_held_them(
    tmp_path: Path,
) -> None:
    """Whole minutes are read from the rollups, but a minute a placement starts or ends in is
    read tick by tick where raw rows are kept: its free ticks go to the run only while it held
    the GPU, as the run's own cost counts them (split by how much of the minute the run
    covered, the run got 10/60 of the minute's 50 free seconds although it ran on every one
    of its ticks: a Slurm job's report and its run's cost then disagreed)."""
    path = tmp_path / "c.db"
    m = math.ceil(T0 / 60) * 60  # a whole minute
    busy = range(71, 81)  # the run's process is on GPU 0 for these ticks only
    ticks = [
        tick(m + k, [GpuProcess(300, GIB, None)] if k in busy else (), (), [])
        for k in range(1, 181)
    ]
    write(path, ticks)
    with RunStore.open(path) as runs:
        run = runs.insert(
            name="job",
            backend="slurm",
            status="succeeded",
            host="host-a",
            started=m + 70.0,
            ended=m + 80.0,
            gpus=[0],
            pids=[300],
        )
        row = runs.get(run)
        assert row is not None
        samples = runs.samples(row)
    with Store.open(path) as store:
        att = store.attribution(m, m + 181)
    gpu0 = {f.run_id: f.seconds for f in att.free if f.uuid == "GPU-host-a-0"}
    assert gpu0 == pytest.approx({None: 180 - 10})
    assert sum(r.dt_s for d in samples.devices for r in d.rows if d.index == 0) == 10
