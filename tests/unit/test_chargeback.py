"""The chargeback engine on hand-made attributions: who pays for each GPU- and CPU-second."""

from __future__ import annotations

import math

import pytest

from costmeter.core.model import DeviceUsage, HostUsage
from costmeter.core.owner import Owner
from costmeter.cost.chargeback import (
    CPU_MODEL,
    WHY_UNTRACKED_CPU,
    AttributionRule,
    ChargebackReport,
    compute_chargeback,
    parse_by,
)
from costmeter.cost.ledger import CostReport, price_usage
from costmeter.cost.pricing import Pricing, load_default_pricing, make_row
from costmeter.store.attribution import Attribution, CpuUse, GpuFree, GpuShare, ProcessRecord

HOUR = 3600.0
KWH = 3.6e6
A100 = "NVIDIA A100-SXM4-80GB"
T4 = "Tesla T4"
#: An owned A100 (its electricity is paid apart, at the tariff); the T4 keeps the default
#: cloud price, which includes its energy.
PRICING: Pricing = (
    load_default_pricing()
    .replace(tariff_per_kwh=0.25, carbon_g_per_kwh=400.0, cpu_core_hour=0.05)
    .merged(
        [make_row(model="A100 80GB", match=["A100.*80GB"], hourly=1.5, source="test", user=True)]
    )
)


def gpu(uuid: str = "GPU-a", name: str = A100, seconds: float = HOUR, energy_j: float = KWH,
        idle_s: float = 0.0, idle_j: float = 0.0, host: str = "box") -> DeviceUsage:  # fmt: skip
    return DeviceUsage(host, 0, uuid, name, seconds, idle_s, 50.0, energy_j, energy_j, idle_j)


def cpu_host(host: str = "box", cores: int = 2, seconds: float = HOUR, busy: float = HOUR,
             energy_j: float = 0.1 * KWH) -> HostUsage:  # fmt: skip
    return HostUsage(host, cores, seconds, busy, energy_j, energy_j)


def costs(devices: list[DeviceUsage], hosts: list[HostUsage] = ()) -> CostReport:  # type: ignore[assignment]
    return price_usage(devices, list(hosts), PRICING, 1_000_000.0, 1_000_000.0 + HOUR)


def proc(proc_id: int, owner: Owner, run_id: int | None = None, host: str = "box") -> ProcessRecord:
    return ProcessRecord(
        proc_id=proc_id,
        host=host,
        pid=1000 + proc_id,
        create_time=1.0,
        name="python",
        cmdline="python train.py",
        owner=owner,
        run_id=run_id,
    )


def share(
    proc_id: int,
    busy: float,
    held: float = 0.0,
    energy: float = 0.0,
    idle_energy: float = 0.0,
    uuid: str = "GPU-a",
    bucket: float | None = None,
) -> GpuShare:
    return GpuShare(uuid, proc_id, bucket, busy, held, energy, idle_energy)


def attribution(shares=(), free=(), cpu=(), procs=(), tags=None, covered_from=None) -> Attribution:  # type: ignore[no-untyped-def]
    return Attribution(
        shares=tuple(shares),
        free=tuple(free),
        cpu=tuple(cpu),
        processes={p.proc_id: p for p in procs},
        run_tags=tags or {},
        covered_from=covered_from,
    )


def parts_add_up(report: ChargebackReport, tol: float = 1e-9) -> None:
    parts = math.fsum(g.amounts.cost for g in report.groups)
    parts += report.unattributed.cost + report.idle.cost
    assert parts == pytest.approx(report.total.cost, rel=tol, abs=1e-12)
    assert abs(report.gap.cost) <= 0.01 * report.total.cost + 1e-12


def by_key(report: ChargebackReport) -> dict[tuple[str | None, ...], float]:
    return {tuple(g.key.values()): g.amounts.cost for g in report.groups}


ALICE, BOB = Owner(uid=1001, user="alice"), Owner(uid=1002, user="bob")


def test_a_shared_gpu_is_split_three_to_one_with_its_energy() -> None:
    c = costs([gpu()])
    att = attribution(
        shares=[share(1, 0.75 * HOUR, energy=0.75 * KWH), share(2, 0.25 * HOUR, energy=0.25 * KWH)],
        procs=[proc(1, ALICE), proc(2, BOB)],
    )
    report = compute_chargeback(att, c, PRICING, ["user"])
    device = c.devices[0]
    assert [g.key for g in report.groups] == [{"user": "alice"}, {"user": "bob"}]
    alice, bob = (g.amounts for g in report.groups)
    assert alice.cost == pytest.approx(0.75 * device.cost)
    assert bob.cost == pytest.approx(0.25 * device.cost)
    assert alice.cost == pytest.approx(0.75 * 1.5 + 0.75 * 0.25)
    assert (alice.gpu_hours, alice.energy_kwh) == pytest.approx((0.75, 0.75))
    assert alice.carbon_kg == pytest.approx(0.75 * 0.4)
    assert alice.idle_cost == 0 and report.idle.cost == 0 and report.unattributed.cost == 0
    assert report.groups[0].share == pytest.approx(0.75)
    parts_add_up(report)


def test_held_idle_time_is_charged_to_its_holder_as_idle_cost() -> None:
    c = costs([gpu(idle_s=HOUR / 2, idle_j=0.1 * KWH)])
    att = attribution(
        shares=[share(1, HOUR / 2, HOUR / 2, energy=KWH, idle_energy=0.1 * KWH)],
        procs=[proc(1, ALICE)],
    )
    report = compute_chargeback(att, c, PRICING, ["user"])
    (alice,) = report.groups
    assert alice.amounts.cost == pytest.approx(c.total.cost)
    assert alice.amounts.idle_cost == pytest.approx(1.5 / 2 + 0.1 * 0.25)
    assert report.idle.cost == 0
    assert report.total.idle_cost == pytest.approx(alice.amounts.idle_cost)
    parts_add_up(report)


def test_a_gpu_with_nobody_on_it_is_machine_idle_unless_a_run_was_placed_on_it() -> None:
    c = costs([gpu("GPU-a"), gpu("GPU-b", name=T4, energy_j=0.05 * KWH)])
    att = attribution(
        shares=[share(1, HOUR, energy=KWH)],
        free=[
            GpuFree("GPU-b", None, HOUR / 4, 0.0125 * KWH, None),
            GpuFree("GPU-b", None, 3 * HOUR / 4, 0.0375 * KWH, 7),
        ],
        procs=[proc(1, ALICE), proc(2, BOB, run_id=7)],
    )
    report = compute_chargeback(att, c, PRICING, ["user"])
    t4 = next(d for d in c.devices if d.name == T4)
    assert report.idle.cost == pytest.approx(0.25 * t4.cost)
    assert report.idle.idle_cost == pytest.approx(report.idle.cost)
    assert report.idle.gpu_hours == pytest.approx(0.25)
    groups = {g.key["user"]: g.amounts for g in report.groups}
    # The run's GPU, placed but running nothing: bob (whose process belongs to run 7) holds it.
    assert groups["bob"].cost == pytest.approx(0.75 * t4.cost)
    assert groups["bob"].idle_cost == pytest.approx(groups["bob"].cost)
    parts_add_up(report)


def test_an_owner_nobody_could_read_is_unattributed_with_the_reason() -> None:
    c = costs([gpu()])
    hidden = Owner(unreadable=frozenset({"uid", "environ", "cgroup"}))
    att = attribution(
        shares=[share(1, HOUR / 2, energy=KWH / 2), share(2, HOUR / 2, energy=KWH / 2)],
        procs=[proc(1, ALICE), proc(2, hidden)],
    )
    report = compute_chargeback(att, c, PRICING, ["user"])
    assert [g.key for g in report.groups] == [{"user": "alice"}]
    assert report.unattributed.cost == pytest.approx(c.total.cost / 2)
    assert report.unattributed_why == {
        "owner unreadable: cgroup, environ, uid": pytest.approx(c.total.cost / 2)
    }
    parts_add_up(report)


def test_a_known_owner_without_the_dimension_is_a_none_group_not_unattributed() -> None:
    c = costs([gpu()])
    att = attribution(shares=[share(1, HOUR, energy=KWH)], procs=[proc(1, ALICE)])
    report = compute_chargeback(att, c, PRICING, ["job"])
    assert [g.key for g in report.groups] == [{"job": None}]
    assert report.unattributed.cost == 0


def test_cpu_time_is_split_into_tracked_untracked_and_idle() -> None:
    # 2 cores for an hour: 1 core-hour busy, of which alice's process used half.
    host = cpu_host(cores=2, busy=HOUR, energy_j=0.1 * KWH)
    c = costs([], [host])
    att = attribution(cpu=[CpuUse(1, "box", None, HOUR / 2)], procs=[proc(1, ALICE)])
    report = compute_chargeback(att, c, PRICING, ["user", "gpu-model"])
    (alice,) = report.groups
    assert alice.key == {"user": "alice", "gpu-model": CPU_MODEL}
    half_energy = 0.05
    assert alice.amounts.cost == pytest.approx(0.5 * 0.05 + half_energy * 0.25)
    assert alice.amounts.energy_kwh == pytest.approx(half_energy)
    assert report.unattributed_why == {WHY_UNTRACKED_CPU: pytest.approx(alice.amounts.cost)}
    assert report.idle.cost == pytest.approx(1.0 * 0.05)  # the unused core-hour
    assert report.total.cost == pytest.approx(c.hosts[0].cost)
    parts_add_up(report)


def test_processes_reporting_more_cpu_than_the_machine_has_are_scaled_down_to_it() -> None:
    c = costs([], [cpu_host(cores=1, busy=HOUR)])
    att = attribution(
        cpu=[CpuUse(1, "box", None, HOUR), CpuUse(2, "box", None, HOUR)],
        procs=[proc(1, ALICE), proc(2, BOB)],
    )
    report = compute_chargeback(att, c, PRICING, ["user"])
    assert by_key(report) == {
        ("alice",): pytest.approx(c.total.cost / 2),
        ("bob",): pytest.approx(c.total.cost / 2),
    }
    assert report.idle.cost == 0 and report.unattributed.cost == 0
    parts_add_up(report)


def test_share_idle_spreads_machine_idle_over_owners_by_their_cost() -> None:
    c = costs([gpu("GPU-a"), gpu("GPU-b")])
    att = attribution(
        shares=[share(1, 0.75 * HOUR, energy=0.75 * KWH), share(2, 0.25 * HOUR, energy=0.25 * KWH)],
        free=[GpuFree("GPU-b", None, HOUR, KWH, None)],
        procs=[proc(1, ALICE), proc(2, BOB)],
    )
    apart = compute_chargeback(att, c, PRICING, ["user"])
    shared = compute_chargeback(att, c, PRICING, ["user"], share_idle=True)
    assert apart.idle.cost == pytest.approx(c.total.cost / 2)
    assert shared.idle.cost == 0 and shared.share_idle
    alice = shared.groups[0].amounts
    assert alice.cost == pytest.approx(0.75 * c.total.cost)
    assert alice.idle_cost == pytest.approx(0.75 * apart.idle.cost)
    assert any("OpenCost's shareIdle" in n for n in shared.notes)
    assert shared.to_dict()["share_idle"] is True
    parts_add_up(shared)


def test_share_idle_is_per_resource_as_opencost_shares_it() -> None:
    # OpenCost: "idle CPU cost is shared with each non-idle allocation's CPU cost" (and GPU
    # with GPU): alice only used a GPU, bob only CPU time.
    c = costs([gpu("GPU-a"), gpu("GPU-b")], [cpu_host(cores=2, busy=HOUR)])
    att = attribution(
        shares=[share(1, HOUR, energy=KWH)],
        free=[GpuFree("GPU-b", None, HOUR, KWH, None)],
        cpu=[CpuUse(2, "box", None, HOUR)],
        procs=[proc(1, ALICE), proc(2, BOB)],
    )
    apart = compute_chargeback(att, c, PRICING, ["user"])
    shared = compute_chargeback(att, c, PRICING, ["user"], share_idle=True)
    before = {g.key["user"]: g.amounts.cost for g in apart.groups}
    after = {g.key["user"]: g.amounts.cost for g in shared.groups}
    gpu_idle = c.devices[1].cost
    cpu_idle = apart.idle.cost - gpu_idle
    assert cpu_idle == pytest.approx(1.0 * 0.05)  # the unused core-hour
    assert after["alice"] == pytest.approx(before["alice"] + gpu_idle)
    assert after["bob"] == pytest.approx(before["bob"] + cpu_idle)
    assert shared.idle.cost == 0
    parts_add_up(shared)


def test_two_dimensions_with_project_rules_and_a_project_tag_that_wins() -> None:
    c = costs([gpu()])
    rules = [AttributionRule("vision", users=("ali*",)), AttributionRule("nlp", users=("bob",))]
    carol = Owner(user="carol")
    att = attribution(
        shares=[
            share(1, 0.5 * HOUR, energy=0.5 * KWH),
            share(2, 0.3 * HOUR, energy=0.3 * KWH),
            share(3, 0.2 * HOUR, energy=0.2 * KWH),
        ],
        procs=[proc(1, ALICE), proc(2, BOB, run_id=4), proc(3, carol)],
        tags={4: {"project": "moon"}},
    )
    report = compute_chargeback(att, c, PRICING, parse_by("project,user"), rules=rules)
    assert [g.key for g in report.groups] == [
        {"project": "vision", "user": "alice"},
        {"project": "moon", "user": "bob"},
        {"project": None, "user": "carol"},
    ]
    parts_add_up(report)


def test_tag_dimension_reads_the_runs_tags() -> None:
    c = costs([gpu()])
    att = attribution(
        shares=[share(1, 0.6 * HOUR, energy=0.6 * KWH), share(2, 0.4 * HOUR, energy=0.4 * KWH)],
        procs=[proc(1, ALICE, run_id=1), proc(2, BOB, run_id=2)],
        tags={1: {"team": "infra"}, 2: {}},
    )
    report = compute_chargeback(att, c, PRICING, ["tag:team"])
    assert by_key(report) == {
        ("infra",): pytest.approx(0.6 * c.total.cost),
        (None,): pytest.approx(0.4 * c.total.cost),
    }
    run_report = compute_chargeback(att, c, PRICING, ["run"])
    assert set(by_key(run_report)) == {("1",), ("2",)}


def test_slurm_array_jobs_containers_and_pods_have_readable_keys() -> None:
    c = costs([gpu()])
    owner = Owner(
        user="alice",
        job_id="4243",
        array_job_id="4242",
        array_task_id="1",
        container_id="f" * 64,
        pod_uid="1c2d3e4f-0000-1111-2222-333344445555",
    )
    att = attribution(shares=[share(1, HOUR, energy=KWH)], procs=[proc(1, owner)])
    (g,) = compute_chargeback(att, c, PRICING, ["job", "container"]).groups
    assert g.key == {"job": "4242_1", "container": "f" * 12}
    (g,) = compute_chargeback(att, c, PRICING, ["pod", "gpu-model"]).groups
    assert g.key == {"pod": owner.pod_uid, "gpu-model": A100}


def test_what_the_samples_do_not_cover_is_shown_as_a_gap_or_as_older_than_the_minutes() -> None:
    c = costs([gpu()])  # the report prices a whole hour ...
    att = attribution(shares=[share(1, 0.995 * HOUR, energy=0.995 * KWH)], procs=[proc(1, ALICE)])
    report = compute_chargeback(att, c, PRICING, ["user"])  # ... the samples hold 99.5 % of it
    assert report.unattributed.cost == 0
    assert report.gap.cost == pytest.approx(0.005 * c.total.cost)
    assert report.to_dict()["gap"]["cost"] == pytest.approx(report.gap.cost)
    assert any(n.startswith("gap: +0.50%") for n in report.notes)
    parts_add_up(report, tol=0.01)

    older = attribution(
        shares=[share(1, HOUR / 2, energy=KWH / 2)],
        procs=[proc(1, ALICE)],
        covered_from=c.start + HOUR / 2,
    )
    report = compute_chargeback(older, c, PRICING, ["user"], raw_days=7, minute_days=90)
    assert report.unattributed_why == {
        "older than the per-process minutes (kept 90 days)": pytest.approx(c.total.cost / 2)
    }
    assert report.gap.cost == pytest.approx(0, abs=1e-12)


def test_the_priced_part_before_the_minutes_is_unattributed_exactly_and_the_rest_a_gap() -> None:
    c = costs([gpu(seconds=2 * HOUR, energy_j=2 * KWH)])
    before = costs([gpu(seconds=HOUR, energy_j=KWH)])  # what the rollups hold before the shares
    att = attribution(
        shares=[share(1, 0.99 * HOUR, energy=0.99 * KWH)],
        procs=[proc(1, ALICE)],
        covered_from=c.start + HOUR,
    )
    report = compute_chargeback(
        att, c, PRICING, ["user"], raw_days=7, minute_days=90, older_gpu=before
    )
    assert report.unattributed_why == {
        "older than the per-process minutes (kept 90 days)": pytest.approx(before.total.cost)
    }
    assert report.unattributed.gpu_hours == pytest.approx(1.0)
    assert report.gap.cost == pytest.approx(0.01 * before.total.cost)


def test_cpu_older_than_the_raw_samples_is_its_own_reason_and_the_gpu_still_attributed() -> None:
    """The GPU shares reach back further than the raw process samples: the older CPU time alone
    is unattributed (priced from its hosts only), and the processes' CPU is split against the
    rest of each host's time."""
    c = costs([gpu()], [cpu_host(cores=2, seconds=HOUR, busy=HOUR)])
    before = price_usage(
        [], [cpu_host(cores=2, seconds=HOUR / 2, busy=HOUR / 2, energy_j=0.05 * KWH)],
        PRICING, c.start, c.start + HOUR / 2,
    )  # fmt: skip
    att = Attribution(
        shares=(share(1, HOUR, energy=KWH),),
        free=(),
        cpu=(CpuUse(1, "box", None, HOUR / 2),),
        processes={1: proc(1, ALICE)},
        run_tags={},
        covered_from=c.start,
        cpu_covered_from=c.start + HOUR / 2,
    )
    report = compute_chargeback(
        att, c, PRICING, ["user"], raw_days=7, minute_days=90, older_cpu=before
    )
    cpu_before = before.hosts[0].cost
    assert cpu_before > 0
    assert report.unattributed_why == {
        "CPU older than the raw samples (kept 7 days)": pytest.approx(cpu_before)
    }
    assert report.unattributed.gpu_hours == 0
    # Alice has the whole GPU hour, and all the busy core time of the covered half hour.
    (g,) = report.groups
    assert g.amounts.gpu_hours == pytest.approx(1.0)
    parts_add_up(report, tol=1e-6)


def test_series_gives_cost_per_bucket_per_owner_and_idle_as_the_empty_key() -> None:
    c = costs([gpu("GPU-a"), gpu("GPU-b")])
    att = attribution(
        shares=[
            share(1, HOUR / 2, energy=KWH / 2, bucket=0.0),
            share(1, HOUR / 2, energy=KWH / 2, bucket=1800.0),
        ],
        free=[GpuFree("GPU-b", 0.0, HOUR, KWH, None)],
        procs=[proc(1, ALICE)],
    )
    report = compute_chargeback(att, c, PRICING, ["user"])
    points = {(p.bucket, p.key): p.cost for p in report.series}
    half = c.devices[0].cost / 2
    assert points == {
        (0.0, ()): pytest.approx(2 * half),
        (0.0, ("alice",)): pytest.approx(half),
        (1800.0, ("alice",)): pytest.approx(half),
    }


def test_json_has_the_issues_shape() -> None:
    c = costs([gpu()], [cpu_host()])
    att = attribution(shares=[share(1, HOUR, energy=KWH)], procs=[proc(1, ALICE)])
    data = compute_chargeback(att, c, PRICING, ["user"]).to_dict()
    assert {"by", "groups", "unattributed", "idle", "total", "currency", "start", "end"} <= set(
        data
    )
    assert data["by"] == ["user"]
    group = data["groups"][0]
    assert set(group) == {
        "key",
        "gpu_hours",
        "energy_kwh",
        "cost",
        "idle_cost",
        "carbon_kg",
        "share",
    }
    assert data["unattributed"]["why"] == {WHY_UNTRACKED_CPU: pytest.approx(
        data["unattributed"]["cost"])}  # fmt: skip
    assert data["total"]["cost"] == pytest.approx(c.total.cost)


@pytest.mark.parametrize(
    ("text", "dims"),
    [
        ("user", ("user",)),
        (" project , user ", ("project", "user")),
        ("tag:team", ("tag:team",)),
        ("GPU-MODEL", ("gpu-model",)),
    ],
)
def test_parse_by_reads_one_or_two_dimensions(text: str, dims: tuple[str, ...]) -> None:
    assert parse_by(text) == dims


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("usr", "'usr' is not a dimension; give one of user, job"),
        ("user,job,host", "give at most two"),
        ("user,user", "give 'user' once"),
        ("tag:", "is not a dimension"),
        ("", "is not a dimension"),
    ],
)
def test_parse_by_refuses_in_words(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_by(text)
