"""Chargeback keys on owners read from real nodes' ``/proc/PID/cgroup`` files (Docker,
containerd, CRI-O, Kubernetes, Slurm; tests/data/attribution/PROVENANCE.md): one process per
file, each on a GPU for an hour, grouped by container, pod and job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from costmeter.core.model import DeviceUsage
from costmeter.core.owner import Owner
from costmeter.cost.chargeback import compute_chargeback
from costmeter.cost.ledger import price_usage
from costmeter.cost.pricing import load_default_pricing
from costmeter.sampling.cgroup import parse_cgroup
from costmeter.store.attribution import Attribution, GpuShare, ProcessRecord

DATA = Path(__file__).resolve().parents[1] / "data" / "attribution" / "cgroup"
EXPECTED: dict[str, dict[str, str]] = json.loads((DATA / "expected.json").read_text())
HOUR = 3600.0
PRICING = load_default_pricing()


def owners() -> dict[str, Owner]:
    found = {}
    for name in sorted(EXPECTED):
        cg = parse_cgroup((DATA / name).read_text(encoding="utf-8"))
        # The uid is known for every process Costmeter sees on its own host.
        found[name] = Owner(
            uid=0, job_id=cg.job_id, container_id=cg.container_id, pod_uid=cg.pod_uid
        )
    return found


def report(by: list[str]):  # type: ignore[no-untyped-def]
    files = owners()
    uuids = [f"GPU-{i}" for i in range(len(files))]
    devices = [
        DeviceUsage("node", i, uuid, "NVIDIA A100-SXM4-80GB", HOUR, 0.0, 90.0, 1e6, 1e6)
        for i, uuid in enumerate(uuids)
    ]
    costs = price_usage(devices, [], PRICING, 0.0, HOUR)
    procs = {
        i: ProcessRecord(i, "node", 100 + i, 1.0, name, "", owner, None)
        for i, (name, owner) in enumerate(files.items())
    }
    shares = tuple(GpuShare(uuids[i], i, None, HOUR, 0.0, 1e6, 0.0) for i in procs)
    att = Attribution(shares, (), (), procs, {}, covered_from=0.0)
    return compute_chargeback(att, costs, PRICING, by), costs


@pytest.mark.parametrize(("dim", "field"), [("container", "container_id"), ("pod", "pod_uid"),
                                            ("job", "job_id")])  # fmt: skip
def test_each_real_container_pod_and_job_is_its_own_group(dim: str, field: str) -> None:
    result, costs = report([dim])
    per_gpu = costs.devices[0].cost
    expected: dict[str | None, int] = {}
    for values in EXPECTED.values():
        value = values.get(field)
        key = value[:12] if value and dim == "container" else value
        expected[key] = expected.get(key, 0) + 1
    got = {g.key[dim]: g.amounts.cost for g in result.groups}
    assert got == {k: pytest.approx(n * per_gpu) for k, n in expected.items()}
    # Processes on the host itself (no container, no pod, no job) are a "(none)" group, known
    # to be nobody's container: not unattributed.
    assert result.unattributed.cost == 0
    assert sum(g.amounts.cost for g in result.groups) == pytest.approx(costs.total.cost)


def test_a_container_is_named_by_the_short_id_docker_ps_shows() -> None:
    result, _ = report(["container", "pod"])
    debian = EXPECTED["neuvector_docker_v1_debian.cgroup"]["container_id"]
    keys = [g.key for g in result.groups]
    assert {"container": debian[:12], "pod": None} in keys
    slurm = [g for g in report(["job"])[0].groups if g.key["job"] is not None]
    assert slurm, "the Slurm nodes' files name jobs"
