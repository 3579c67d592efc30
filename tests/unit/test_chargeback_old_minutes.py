"""GPU attribution reaches back as far as the per-process minutes (``gpu_share_1m``, kept as long
as the minute rollups), not only as far as the raw samples: two hours of an owned GPU written
through the real writer, then retention keeps one hour of raw samples."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import owned_history as oh
from costmeter.config import Config, RetentionConfig
from costmeter.core.owner import Owner
from costmeter.service.chargeback import chargeback
from costmeter.store import Store
from costmeter.store.retention import RetentionPolicy

ALICE = Owner(uid=1001, user="alice")
RAW_DAYS = 1 / 24


def two_owned_hours(db: Path, end: float) -> float:
    start = end - 2 * 3600
    alice = oh.Holder(0, 4242, ALICE, util=90.0, power_w=300.0)
    oh.write(db, [oh.Stretch(start, end, (alice,))], devices=1)
    return start


def test_the_gpu_hour_older_than_the_raw_samples_is_still_its_owners(tmp_path: Path) -> None:
    db = tmp_path / "owned.db"
    now = time.time()
    end = now - 120
    start = two_owned_hours(db, end)
    config = Config(retention=RetentionConfig(raw_days=RAW_DAYS))
    with Store.open(db) as store:
        store.apply_retention(RetentionPolicy(raw_days=RAW_DAYS), now)
        att = store.attribution(start, end)
        report = chargeback(store, config, start, end, ["user"])
    # The raw samples of the older hour are gone (CPU attribution starts an hour ago) ...
    assert att.cpu_covered_from is not None and att.cpu_covered_from > start + 3000
    # ... but the GPU's per-process minutes are not: attribution starts with the data.
    assert att.covered_from is not None and att.covered_from <= start + 60
    total_hours = report.total.gpu_hours
    assert total_hours == pytest.approx(2.0, rel=0.01)
    (alice,) = [g for g in report.groups if g.key["user"] == "alice"]
    assert alice.amounts.gpu_hours == pytest.approx(total_hours, rel=0.02)
    assert not any(why.startswith("older than the per-process") for why in report.unattributed_why)
    parts = sum(g.amounts.cost for g in report.groups) + report.unattributed.cost
    parts += report.idle.cost
    assert parts == pytest.approx(report.total.cost, rel=0.01)


def test_with_the_minutes_gone_too_the_older_gpu_time_is_unattributed_as_such(
    tmp_path: Path,
) -> None:
    """Minutes kept one hour too: the older whole hour only has hour rollups (no processes), so
    its GPU time is unattributed with that reason, and its CPU time with the raw samples'."""
    db = tmp_path / "owned.db"
    now = time.time()
    minute_cut = (now - 3600) // 3600 * 3600  # where retention will cut the minutes
    end = now - 120
    alice = oh.Holder(0, 4242, ALICE, util=90.0, power_w=300.0)
    oh.write(db, [oh.Stretch(minute_cut - 2 * 3600, end, (alice,))], devices=1)
    start = minute_cut - 3600  # one whole hour older than the minutes, then the rest
    config = Config(retention=RetentionConfig(raw_days=RAW_DAYS, minute_days=RAW_DAYS))
    with Store.open(db) as store:
        store.apply_retention(RetentionPolicy(raw_days=RAW_DAYS, minute_days=RAW_DAYS), now)
        assert store.attribution(start, end).covered_from == minute_cut
        report = chargeback(store, config, start, end, ["user"])
    why = report.unattributed_why
    assert set(why) == {
        f"older than the per-process minutes (kept {RAW_DAYS:g} days)",
        f"CPU older than the raw samples (kept {RAW_DAYS:g} days)",
    }
    assert report.unattributed.gpu_hours == pytest.approx(1.0, rel=0.01)
    (alice_group,) = [g for g in report.groups if g.key["user"] == "alice"]
    assert alice_group.amounts.gpu_hours == pytest.approx(report.total.gpu_hours - 1.0, rel=0.02)
    parts = sum(g.amounts.cost for g in report.groups) + report.unattributed.cost
    parts += report.idle.cost
    assert parts == pytest.approx(report.total.cost, rel=0.01)
