"""Run rows and the samples attributed to a run (written through the real writer)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import GpuProcess, Interval, ProcessSample, Tick
from costmeter.store import Writer
from costmeter.store.runs import RunStore
from costmeter.store.testing import GIB, device_infos, host_info, make_tick

T0 = 1_800_000_000.0
RUN_PID, OTHER_PID = 4321, 999


def _tick(ts: float, *, run_on_gpu0: bool, other_on_gpu0: bool) -> Tick:
    """Two A100s for 1 s at 300 W; the run (PID 4321, CPU time = seconds since T0) on GPU 0
    with 3 GiB, another process with 1 GiB there too when asked."""
    base = make_tick(ts, devices=2, power_w=300.0)
    procs = []
    if run_on_gpu0:
        procs.append(GpuProcess(RUN_PID, 3 * GIB))
    if other_on_gpu0:
        procs.append(GpuProcess(OTHER_PID, 1 * GIB))
    devices = (replace(base.devices[0], processes=tuple(procs)), base.devices[1])
    cpu = (ProcessSample(RUN_PID, T0 + 0.5, "python", "python t.py", "me", 100.0, GIB, ts - T0),)
    assert base.host_sample is not None
    hs = replace(base.host_sample, processes=cpu)
    return Tick(ts, base.host, hs, devices, base.device_intervals, Interval(1.0, 50.0, True))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    writer = Writer(path, clock=SimulatedClock(T0))
    writer.start()
    writer.register(host_info(), device_infos(n=2))
    for k in range(1, 11):  # samples at T0+1 .. T0+10
        writer.submit(_tick(T0 + k, run_on_gpu0=k >= 2, other_on_gpu0=k >= 6))
    writer.stop()
    return path


def test_rows_round_trip_and_list(db: Path) -> None:
    with RunStore.open(db) as store:
        rid = store.insert(name="a", backend="local", spec={"argv": ["x"]}, status="queued",
                           created=T0, gpus=[], pids=[])  # fmt: skip
        store.update(
            rid, status="succeeded", gpus=[0], pids=[RUN_PID], started=T0 + 1, ended=T0 + 4
        )
        row = store.get(rid)
        assert row is not None
        assert (row.status, row.gpus, row.pids) == ("succeeded", [0], [RUN_PID])
        assert row.spec == {"argv": ["x"]}
        assert row.duration_s == pytest.approx(3.0)
        assert [r.id for r in store.list_runs()] == [rid]
        with pytest.raises(ValueError, match="Unknown run columns"):
            store.update(rid, bogus=1)


def test_past_costs_for_estimates(db: Path) -> None:
    with RunStore.open(db) as store:
        for cost, status in ((0.1, "succeeded"), (0.2, "failed"), (0.3, "succeeded")):
            store.insert(name="a", backend="local", status=status, command_key="k", cost=cost,
                         currency="USD")  # fmt: skip
        store.insert(name="b", backend="local", status="succeeded", command_key="other", cost=9.0,
                     currency="USD")  # fmt: skip
        assert store.past_costs("k", currency="USD") == [0.3, 0.1]
        assert store.past_costs("k", currency="EUR") == []


def test_attribution_whole_then_shared_gpu(db: Path) -> None:
    with RunStore.open(db) as store:
        rid = store.insert(name="r", backend="local", status="succeeded", host="host-a",
                           gpus=[0], pids=[RUN_PID], started=T0 + 0.5, ended=T0 + 8.5)  # fmt: skip
        row = store.get(rid)
        assert row is not None
        s = store.samples(row)
    assert len(s.devices) == 1  # only the GPU it was placed on
    rows = s.devices[0].rows
    # Intervals (T0+0.5, T0+1] half, then whole ones up to T0+8, then (T0+8, T0+8.5] half.
    assert [r.dt_s for r in rows] == [0.5] + [1.0] * 7 + [0.5]
    assert rows[0].run_procs == 0 and rows[0].other_procs == 0 and rows[0].holders == 1
    assert rows[1].run_procs == 1 and rows[1].run_mem == 3 * GIB and rows[1].other_procs == 0
    shared = [r for r in rows if r.other_procs]
    assert len(shared) == 4  # T0+6 .. T0+9 (the last one cut to half)
    assert shared[0].other_mem == GIB
    assert rows[0].energy_j == pytest.approx(150.0)
    assert s.cpu_seconds == pytest.approx(10.0)  # the largest CPU time sampled
    assert s.host is not None and s.cpu_count == 8


def test_unplaced_run_is_charged_where_its_processes_were(db: Path) -> None:
    with RunStore.open(db) as store:
        rid = store.insert(name="r", backend="local", status="succeeded", host="host-a",
                           gpus=[], pids=[RUN_PID], started=T0 + 0.5, ended=T0 + 3.0)  # fmt: skip
        row = store.get(rid)
        assert row is not None
        s = store.samples(row)
    assert [d.index for d in s.devices] == [0]
    assert all(r.holders == 0 for r in s.devices[0].rows)


def test_other_runs_on_the_same_gpu_share_the_reservation(db: Path) -> None:
    with RunStore.open(db) as store:
        a = store.insert(name="a", backend="local", status="succeeded", host="host-a",
                         gpus=[1], pids=[], started=T0, ended=T0 + 10)  # fmt: skip
        store.insert(name="b", backend="local", status="succeeded", host="host-a",
                     gpus=[1], pids=[], started=T0 + 5, ended=T0 + 10)  # fmt: skip
        row = store.get(a)
        assert row is not None
        holders = [r.holders for r in store.samples(row).devices[0].rows]
    assert holders == [1] * 5 + [2] * 5


def test_a_run_on_a_node_is_attributed_from_the_nodes_samples(db: Path) -> None:
    """The samples above are host-a's; a run launched from elsewhere that ran on node host-a
    (a Ray run) gets them, and runs on other hosts or nodes do not share its GPU."""
    with RunStore.open(db) as store:
        rid = store.insert(name="r", backend="ray", status="succeeded", host="launcher",
                           node="host-a", gpus=[0], pids=[RUN_PID], started=T0 + 0.5,
                           ended=T0 + 8.5)  # fmt: skip
        # Same GPU index, another machine: not a holder of host-a's GPU 0.
        store.insert(name="o", backend="ray", status="succeeded", host="launcher",
                     node="elsewhere", gpus=[0], pids=[], started=T0, ended=T0 + 10)  # fmt: skip
        row = store.get(rid)
        assert row is not None
        s = store.samples(row)
        elsewhere = replace(row, node="no-samples-here")
        assert store.samples(elsewhere).devices == ()
    assert [d.host for d in s.devices] == ["host-a"]
    rows = s.devices[0].rows
    assert rows[1].run_procs == 1 and all(r.holders == 1 for r in rows)
    assert s.cpu_seconds == pytest.approx(10.0)
    assert s.host is not None and s.host.host == "host-a"


def test_runs_on_the_launchers_own_node_share_a_gpu_with_its_local_runs(db: Path) -> None:
    """A run whose node is the launcher's own host (a local Ray) holds GPUs like a local run."""
    with RunStore.open(db) as store:
        a = store.insert(name="a", backend="local", status="succeeded", host="host-a",
                         gpus=[1], pids=[], started=T0, ended=T0 + 10)  # fmt: skip
        store.insert(name="b", backend="ray", status="succeeded", host="host-a", node="host-a",
                     gpus=[1], pids=[], started=T0 + 5, ended=T0 + 10)  # fmt: skip
        row = store.get(a)
        assert row is not None
        holders = [r.holders for r in store.samples(row).devices[0].rows]
    assert holders == [1] * 5 + [2] * 5


def test_migration_2_keeps_version_1_runs(tmp_path: Path) -> None:
    from costmeter.store.database import connect
    from costmeter.store.schema import MIGRATIONS, migrate

    path = tmp_path / "old.db"
    conn = connect(path)
    migrate(conn, str(path), MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO runs (name, backend, spec, status, gpus, pids) VALUES"
        " ('old', 'local', '{}', 'succeeded', '[1]', '[7]')"
    )
    conn.close()
    with RunStore.open(path) as store:
        (row,) = store.list_runs()
    assert (row.name, row.gpus, row.pids, row.cost, row.message) == ("old", [1], [7], None, "")
