"""A batch job's run (issue 15): charged what the job's processes used on its node, through the
real writer into a real SQLite file; estimated from elapsed time x GPUs x price when no sample
of the node covers it, and measured once samples arrive."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from costmeter.cli import runs_cmd
from costmeter.config import Config
from costmeter.core.clock import SimulatedClock
from costmeter.core.hostnames import pick_host, same_host
from costmeter.core.model import GpuProcess, Interval, ProcessSample, Tick
from costmeter.core.owner import Owner
from costmeter.cost.run_estimate import estimate_allocation, gpu_hourly
from costmeter.service.chargeback import chargeback
from costmeter.service.run_costs import cost_columns, cost_of_run, reprice_estimated
from costmeter.store import MIGRATIONS, RetentionPolicy, Store, Writer, migrate
from costmeter.store.runs import JOB_END_SLACK_S, RunRow, RunStore
from costmeter.store.testing import device_infos, host_info, make_tick

T0 = 1_700_000_000.0
GIB = 1 << 30
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)
FQDN = "gpu07.cluster.example"  # how the node's agent names itself
NODE = "gpu07"  # how Slurm names it (NodeName, hostname -s)
JOB = Owner(uid=1001, user="alice", job_id="4242", account="cv-lab", partition="gpu")
OTHER = Owner(uid=1002, user="bob", job_id="99")
CONFIG = Config()
PRICING = CONFIG.pricing()


def tick(
    ts: float, gpu0: Sequence[GpuProcess], gpu1: Sequence[GpuProcess], cpu: Sequence[ProcessSample]
) -> Tick:
    base = make_tick(ts, host=FQDN, devices=2, util=80.0, power_w=300.0)
    devices = (
        replace(base.devices[0], processes=tuple(gpu0)),
        replace(base.devices[1], processes=tuple(gpu1)),
    )
    assert base.host_sample is not None
    hs = replace(base.host_sample, processes=tuple(cpu))
    return Tick(ts, base.host, hs, devices, base.device_intervals, Interval(1.0, 50.0, True))


def proc(pid: int, cpu_s: float, owner: Owner, created: float) -> ProcessSample:
    return ProcessSample(
        pid, created, "python", f"python w{pid}.py", "?", 100.0, GIB, cpu_s, owner=owner
    )


def job_ticks(first: float, seconds: int) -> list[Tick]:
    """``seconds`` 1 s ticks from ``first``: on GPU 0 the job's PID 500 (3 GiB) beside another
    job's PID 600 (1 GiB); on GPU 1 the job's PID 501, a task Slurm started from slurmstepd
    (not a child of the PID the backend reports). Each process keeps one core busy."""
    out = []
    for k in range(seconds):
        ts = first + k
        g0 = [GpuProcess(500, 3 * GIB, None), GpuProcess(600, 1 * GIB, None)]
        g1 = [GpuProcess(501, 2 * GIB, None)]
        cpu = [
            proc(500, float(k + 1), JOB, first - 0.5),
            proc(501, float(k + 1), JOB, first - 0.5),
            proc(600, float(k + 1), OTHER, first - 0.5),
        ]
        out.append(tick(ts, g0, g1, cpu))
    return out


def write(path: Path, ticks: Sequence[Tick]) -> None:
    writer = Writer(path, clock=SimulatedClock(T0), retention=KEEP_ALL, flush_interval=0.05)
    writer.start()
    writer.register(host_info(FQDN), device_infos(FQDN, n=2))
    for t in ticks:
        writer.submit(t)
    assert writer.flush(10)
    writer.stop()


def job_run(store: RunStore, started: float, ended: float, **extra: object) -> RunRow:
    values: dict[str, object] = {
        "name": "train",
        "backend": "slurm",
        "spec": {"argv": ["python", "train.py"], "gpus": 2, "cpus": 4},
        "status": "succeeded",
        "started": started,
        "ended": ended,
        "node": NODE,
        "host": "login1",
        "pids": [77],  # the batch script: never on a GPU, never sampled
        "job": "4242",
        "allocated_gpus": 2,
        "currency": "USD",
    }
    values.update(extra)
    run_id = store.insert(**values)
    row = store.get(run_id)
    assert row is not None
    return row


def job_group_cost(path: Path, start: float, end: float, job: str = "4242") -> float:
    with Store.open(path) as store:
        report = chargeback(store, CONFIG, start, end, ["job"])
    (group,) = [g for g in report.groups if g.key.get("job") == job]
    return group.amounts.cost


# -- host names -----------------------------------------------------------------------------


def test_a_short_node_name_means_the_fqdn_the_agent_reports() -> None:
    assert same_host("gpu07", "gpu07.cluster.example")
    assert same_host("GPU07.cluster.example", "gpu07")
    assert not same_host("gpu07.a.example", "gpu07.b.example")
    assert not same_host("gpu07", "gpu070")
    assert not same_host("", "gpu07")
    names = ["gpu07.cluster.example", "gpu08.cluster.example", "gpu070"]
    assert pick_host("gpu07", names) == "gpu07.cluster.example"
    assert pick_host("gpu07.cluster.example", ["gpu07", "gpu07.cluster.example"]) == (
        "gpu07.cluster.example"
    )
    # Ambiguous: two machines called gpu07 in different domains, none spelt like the node.
    assert pick_host("gpu07", ["gpu07.a.example", "gpu07.b.example"]) is None
    assert pick_host("gpu09", names) is None
    # An address names no machine by its first part.
    assert not same_host("10", "10.0.0.7") and not same_host("fe80::1", "fe80")
    assert same_host("10.0.0.7", "10.0.0.7")


# -- measured from the job's processes ---------------------------------------------------------


def test_a_jobs_run_costs_what_its_processes_used_on_its_node(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, job_ticks(T0 + 1, 60))
    started, ended = T0 + 10, T0 + 50
    with RunStore.open(path) as store:
        row = job_run(store, started, ended)
        cost = cost_of_run(store, row, PRICING)
    assert not cost.estimated and cost.note == ""
    # Whole ticks from the start to a second after Slurm's end: 41 ticks of GPU 0 at 3/4 (by
    # memory; SM unknown) and of GPU 1 whole; 41 core-seconds for each of PIDs 500 and 501.
    ticks = int(ended + JOB_END_SLACK_S - started)
    assert cost.gpu_seconds == pytest.approx(ticks * (0.75 + 1.0))
    assert cost.cpu_seconds == pytest.approx(2 * ticks)
    # The same as `report --by job` says job 4242 cost over the run's window.
    expected = job_group_cost(path, started, ended + JOB_END_SLACK_S)
    assert cost.cost == pytest.approx(expected, rel=0.01)
    assert cost.cost > 0


def test_without_a_job_the_run_is_priced_from_its_pids_as_before(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, job_ticks(T0 + 1, 30))
    with RunStore.open(path) as store:
        row = job_run(store, T0 + 1, T0 + 25, job=None, pids=[501])
        cost = cost_of_run(store, row, PRICING)
    assert not cost.estimated
    # Only PID 501's GPU 1 (the run is placed on none): 24 s, the ticks' parts within it.
    assert cost.gpu_seconds == pytest.approx(24.0)


# -- estimated when nothing covers it, measured once samples arrive ------------------------------


def test_a_job_on_a_node_nobody_samples_is_estimated_in_words(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, job_ticks(T0 + 1, 10))
    with RunStore.open(path) as store:
        row = job_run(store, T0, T0 + 3600, node="gpu99")
        cost = cost_of_run(store, row, PRICING)
    assert cost.estimated
    hourly, _ = gpu_hourly(None, PRICING)
    cheapest = min(r.hourly for r in PRICING.gpu_rows)
    assert hourly == cheapest > 0  # the shipped unknown-GPU price is 0: the cheapest row
    assert cost.cost == pytest.approx(1.0 * 2 * cheapest + 1.0 * 4 * PRICING.cpu_core_hour)
    assert cost.gpu_seconds == pytest.approx(2 * 3600)
    assert "gpu99" in cost.note and "cheapest GPU" in cost.note and "allocated" in cost.note


def test_a_node_whose_samples_show_no_process_of_the_job_is_estimated(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, job_ticks(T0 + 1, 60))  # jobs 4242 and 99 there, not 5555
    with RunStore.open(path) as store:
        cost = cost_of_run(store, job_run(store, T0 + 10, T0 + 50, job="5555"), PRICING)
    assert cost.estimated
    assert "show no process of job 5555" in cost.note and "A100 80GB" in cost.note
    a100 = PRICING.gpu_price("NVIDIA A100-SXM4-80GB").hourly
    assert cost.cost == pytest.approx(40 / 3600 * (2 * a100 + 4 * PRICING.cpu_core_hour))


def test_late_samples_replace_the_estimate_at_the_next_recompute(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, job_ticks(T0 + 1, 20))
    late = T0 + 1000  # the agent was cut off while this job ran
    with RunStore.open(path) as store:
        row = job_run(store, late + 5, late + 35)
        est = cost_of_run(store, row, PRICING)
        store.update(row.id, **cost_columns(est))
        assert store.get(row.id).estimated  # type: ignore[union-attr]
        assert reprice_estimated(store, PRICING) == []  # still nothing: stays estimated
    # The node's model is known (its earlier samples): the A100 80GB row prices it.
    a100 = PRICING.gpu_price("NVIDIA A100-SXM4-80GB").hourly
    assert est.estimated and est.cost == pytest.approx(
        30 / 3600 * (2 * a100 + 4 * PRICING.cpu_core_hour)
    )
    assert "A100 80GB" in est.note
    listed = runs_cmd.table([row_of(path, row.id)], "USD")
    assert f"~{runs_cmd.format_cost(est.cost, 'USD')} est." in listed
    assert runs_cmd.as_json(row_of(path, row.id))["cost_basis"] == "estimated"
    # The agent's buffer arrives (a late backfill).
    write(path, job_ticks(late, 60))
    with RunStore.open(path) as store:
        assert reprice_estimated(store, PRICING) == [row.id]
        now = store.get(row.id)
    assert now is not None and not now.estimated and now.cost_basis == "measured"
    assert now.cost == pytest.approx(
        job_group_cost(path, late + 5, late + 35 + JOB_END_SLACK_S), rel=0.01
    )
    out = runs_cmd.as_json(now)
    assert out["cost_basis"] == "measured" and out["cost_note"] is None and out["job"] == "4242"
    assert "est." not in runs_cmd.table([now], "USD")


def test_partly_sampled_job_says_how_much_the_samples_cover(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    write(path, job_ticks(T0 + 1, 20))  # samples to T0 + 20; the job ran to T0 + 40
    with RunStore.open(path) as store:
        cost = cost_of_run(store, job_run(store, T0 + 10, T0 + 40), PRICING)
    assert not cost.estimated and "cover 33%" in cost.note


def row_of(path: Path, run_id: int) -> RunRow:
    with RunStore.open(path) as store:
        row = store.get(run_id)
    assert row is not None
    return row


def test_estimate_uses_the_requested_gpus_when_the_scheduler_does_not_say() -> None:
    cost = estimate_allocation(
        elapsed_s=1800, gpus=1, gpus_said=False, gpu_name="NVIDIA H100 80GB HBM3",
        cpus=1, node="n1", why="nothing reports n1.", pricing=PRICING,
    )  # fmt: skip
    h100 = PRICING.gpu_price("NVIDIA H100 80GB HBM3")
    assert h100.row is not None
    assert cost.cost == pytest.approx(0.5 * h100.hourly + 0.5 * PRICING.cpu_core_hour)
    assert "requested" in cost.note and h100.row.model in cost.note
    assert cost.energy_kwh == 0 and "energy is not included" in cost.note


# -- the migration --------------------------------------------------------------------------


def test_migration_6_keeps_a_version_5_databases_runs(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    migrate(conn, str(path), MIGRATIONS[:5])
    conn.execute(
        "INSERT INTO runs (name, backend, spec, status, started, ended, gpus, pids, cost,"
        " currency, tags) VALUES ('old', 'local', '{}', 'succeeded', 1, 2, '[0]', '[5]', 0.5,"
        " 'USD', '{\"team\": \"cv\"}')"
    )
    conn.commit()
    conn.close()
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    Store.open(copy).close()  # migrates the copy
    with RunStore.open(copy) as store:
        (row,) = store.list_runs()
    assert (row.name, row.cost, row.gpus, row.pids, row.tags) == (
        "old",
        0.5,
        [0],
        [5],
        {"team": "cv"},
    )
    assert (row.job, row.allocated_gpus, row.cost_basis, row.cost_note) == (None, None, None, "")
    assert not row.estimated and runs_cmd.as_json(row)["cost_basis"] == "measured"
    conn = sqlite3.connect(copy)
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(processes)")}
    conn.close()
    assert "processes_job" in indexes
    conn = sqlite3.connect(path)  # the original is untouched
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    conn.close()


# -- real jobs: figures from a real cluster's sacct ---------------------------------------------

#: tests/data/slurm/hb-jobinfo-sacct.txt: sacct of the University of Groningen's Hábrók cluster
#: (rug-cit-hpc/hb-jobinfo, MIT; S1's data, see its PROVENANCE), ``☃``-delimited.
HB_SACCT = Path(__file__).resolve().parents[1] / "data" / "slurm" / "hb-jobinfo-sacct.txt"
#: NVML names of the GPU models the node names say (v100gpuN, a100gpuN).
HB_MODELS = {"v100": "Tesla V100-PCIE-32GB", "a100": "NVIDIA A100-SXM4-40GB"}


def _elapsed_s(text: str) -> float:
    days, _, clock = text.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return (int(days) if days else 0) * 86400 + h * 3600 + m * 60 + s


def hb_gpu_jobs() -> list[tuple[str, str, float, int]]:
    """(job id, node, elapsed seconds, allocated GPUs) of the finished one-node GPU jobs."""
    out = []
    for line in HB_SACCT.read_text(encoding="utf-8").splitlines():
        f = line.split("☃")
        if "." in f[0] or f[8].split()[0] not in ("COMPLETED", "CANCELLED", "FAILED"):
            continue
        tres = [x for x in f if "gres/gpu=" in x]
        node = f[4]
        if not tres or node[:4] not in HB_MODELS or "[" in node:
            continue
        gpus = int(tres[-1].split("gres/gpu=")[1].split(",")[0])
        out.append((f[0], node, _elapsed_s(f[13]), gpus))
    return out


def test_real_jobs_without_samples_are_estimated_at_their_nodes_gpu_price(tmp_path: Path) -> None:
    jobs = hb_gpu_jobs()
    assert len(jobs) >= 5 and {g for *_, g in jobs} >= {1, 2}
    path = tmp_path / "c.db"
    writer = Writer(path, clock=SimulatedClock(T0), retention=KEEP_ALL, flush_interval=0.05)
    writer.start()
    for node in sorted({n for _, n, _, _ in jobs}):
        fqdn = f"{node}.cluster.example"  # the agent there names itself by its FQDN
        infos = [replace(d, name=HB_MODELS[node[:4]]) for d in device_infos(fqdn, n=4)]
        writer.register(host_info(fqdn), infos)
    assert writer.flush(10)
    writer.stop()
    with RunStore.open(path) as store:
        for job, node, elapsed, gpus in jobs:
            row = job_run(
                store, T0, T0 + elapsed, node=node, job=job, allocated_gpus=gpus,
                spec={"gpus": gpus, "cpus": 8},
            )  # fmt: skip
            cost = cost_of_run(store, row, PRICING)
            price = PRICING.gpu_price(HB_MODELS[node[:4]])
            assert price.row is not None
            hours = elapsed / 3600
            assert cost.estimated, job
            assert cost.cost == pytest.approx(
                hours * (gpus * price.hourly + 8 * PRICING.cpu_core_hour)
            )
            assert price.row.model in cost.note and f"{gpus} GPU(s) allocated" in cost.note
