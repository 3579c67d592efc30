"""A process row of a run stored without its owner (a GPU process seen once its CPU side had
gone, as the run's process exits, gets a row of its own with no owner) is charged to the owner
of the run's other processes, not to an owner of nobody. Seen in ``test_who_pays_e2e``: a
0.2 s ``user: null`` group beside the run's user."""

from __future__ import annotations

import math

import pytest

from costmeter.core.model import DeviceUsage
from costmeter.core.owner import Owner
from costmeter.cost.chargeback import compute_chargeback
from costmeter.cost.ledger import price_usage
from costmeter.cost.pricing import load_default_pricing
from costmeter.store.attribution import Attribution, GpuShare, ProcessRecord

HOUR = 3600.0
KWH = 3.6e6
PRICING = load_default_pricing()
DEVICE = DeviceUsage("box", 0, "GPU-a", "NVIDIA A100-SXM4-80GB", HOUR, 0.0, 50.0, KWH, KWH, 0.0)
COSTS = price_usage([DEVICE], [], PRICING, 1_000_000.0, 1_000_000.0 + HOUR)
CAROL = Owner(uid=1003, user="carol", job_id="2001")


def _proc(proc_id: int, owner: Owner, run_id: int | None) -> ProcessRecord:
    return ProcessRecord(proc_id, "box", 1000, 0.0, "bash", "", owner, run_id)


def _attribution(parts: list[tuple[float, Owner, int | None]]) -> Attribution:
    """One GPU-hour split over processes by ``(fraction, owner, run id)``."""
    return Attribution(
        shares=tuple(
            GpuShare("GPU-a", i, None, f * HOUR, 0.0, f * KWH, 0.0)
            for i, (f, _, _) in enumerate(parts)
        ),
        free=(),
        cpu=(),
        processes={i: _proc(i, owner, run) for i, (_, owner, run) in enumerate(parts)},
        run_tags={7: {"team": "ops"}},
        covered_from=None,
    )


def _adds_up(report) -> None:  # type: ignore[no-untyped-def]
    parts = math.fsum(g.amounts.cost for g in report.groups)
    assert parts + report.unattributed.cost + report.idle.cost == pytest.approx(report.total.cost)


def test_an_ownerless_row_of_a_run_takes_the_runs_owner() -> None:
    att = _attribution([(0.9, CAROL, 7), (0.1, Owner(), 7)])
    for by, key in ((["user"], ("carol",)), (["job", "tag:team"], ("2001", "ops"))):
        report = compute_chargeback(att, COSTS, PRICING, by)
        assert [tuple(g.key.values()) for g in report.groups] == [key]
        assert report.groups[0].amounts.gpu_hours == pytest.approx(1.0)
        assert report.unattributed.cost == 0
        _adds_up(report)


def test_an_ownerless_row_of_no_run_stays_unattributed() -> None:
    report = compute_chargeback(
        _attribution([(0.5, CAROL, 7), (0.5, Owner(), None)]), COSTS, PRICING, ["user"]
    )
    assert [tuple(g.key.values()) for g in report.groups] == [("carol",)]
    assert report.groups[0].amounts.gpu_hours == pytest.approx(0.5)
    assert report.unattributed.gpu_hours == pytest.approx(0.5)
    _adds_up(report)
