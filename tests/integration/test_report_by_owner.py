"""``costmeter report --by``: a real recording (simulated GPUs, real processes and SQLite file)
split over owners adds up to the plain report's total."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costmeter.config import Config, RetentionConfig
from costmeter.service.chargeback import chargeback
from costmeter.service.summary import report_between
from costmeter.store import Store
from costmeter.store.retention import RetentionPolicy

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]


def costmeter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COSTMETER, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    db = home / "rec.db"
    env_args = ("--config", str(home / "absent.toml"))
    rec = costmeter(
        "record", "--simulate", "2", "--interval", "0.5", "--duration", "4", "--db", str(db),
        *env_args,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    return db


def report(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return costmeter("report", "--db", str(db), "--config", str(db.parent / "absent.toml"), *args)


def test_groups_unattributed_and_idle_add_up_to_the_reports_total(recorded: Path) -> None:
    plain = report(recorded, "--format", "json")
    assert plain.returncode == 0, plain.stderr
    total = json.loads(plain.stdout)["total"]["cost"]
    assert total > 0

    by_user = report(recorded, "--by", "user", "--format", "json")
    assert by_user.returncode == 0, by_user.stderr
    data = json.loads(by_user.stdout)
    assert data["by"] == ["user"]
    parts = sum(g["cost"] for g in data["groups"])
    parts += data["unattributed"]["cost"] + data["idle"]["cost"]
    assert data["total"]["cost"] == pytest.approx(total, rel=1e-6)
    assert parts == pytest.approx(total, rel=0.01)
    # The simulated GPUs' processes have an owner: some of the money is theirs, by name.
    named = [g for g in data["groups"] if g["key"]["user"] is not None]
    assert named and all(g["cost"] > 0 for g in named)
    assert sum(g["share"] for g in data["groups"]) <= 1.0 + 1e-9


def test_table_and_csv_show_the_same_split(recorded: Path) -> None:
    table = report(recorded, "--by", "gpu-model,user", "--share-idle")
    assert table.returncode == 0, table.stderr
    assert "GPU-MODEL" in table.stdout and "TOTAL" in table.stdout
    assert "shareIdle" in table.stdout

    out = report(recorded, "--by", "host", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    kinds = [r["kind"] for r in rows]
    assert kinds[-3:] == ["unattributed", "idle", "total"] and "group" in kinds
    parts = sum(float(r["cost"]) for r in rows if r["kind"] != "total")
    assert parts == pytest.approx(float(rows[-1]["cost"]), rel=0.01)


def test_a_bad_dimension_exits_2_with_the_list(recorded: Path) -> None:
    bad = report(recorded, "--by", "usr")
    assert bad.returncode == 2
    assert "user, job, account, container, pod, namespace, run, project" in bad.stderr
    assert "tag:KEY" in bad.stderr


def simulated_hours(tmp_path: Path, hours: int = 2) -> Path:
    db = tmp_path / "sim.db"
    sim = costmeter(
        "simulate", "--hours", str(hours), "--interval", "10", "--db", str(db),
        "--config", str(tmp_path / "absent.toml"),
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    return db


def test_the_gpu_time_older_than_the_raw_samples_is_attributed_and_only_its_cpu_is_not(
    tmp_path: Path,
) -> None:
    """Two simulated hours, then retention keeps one hour of raw samples: the older hour's GPU
    time is still split over its owners from the per-process minutes (kept 90 days); only its
    CPU time, which needs the raw process samples, is unattributed with that reason. The split
    still adds up to the plain report's total."""
    db = simulated_hours(tmp_path)
    raw_days = 1 / 24
    config = Config(retention=RetentionConfig(raw_days=raw_days))
    now = time.time()
    start = now - 3 * 3600
    with Store.open(db) as store:
        store.apply_retention(RetentionPolicy(raw_days=raw_days), now)
        result = chargeback(store, config, start, now, ["user"])
        plain = report_between(store, config.pricing(), start, now)
        att = store.attribution(start, now)
        assert att.cpu_covered_from is not None and att.cpu_covered_from > now - 1.1 * 3600
        cpu_before = report_between(store, config.pricing(), start, att.cpu_covered_from)
        older_hour = chargeback(store, config, start, att.cpu_covered_from, ["user"])
    why = result.unattributed_why
    assert not any(reason.startswith("older than") for reason in why)
    cpu_older = why[f"CPU older than the raw samples (kept {raw_days:g} days)"]
    assert cpu_older == pytest.approx(math.fsum(h.cost for h in cpu_before.hosts))
    assert cpu_older > 0
    # The hour before the raw samples: its GPU-hours are the owners', by name.
    named = math.fsum(g.amounts.gpu_hours for g in older_hour.groups if g.key["user"] is not None)
    assert math.fsum(d.hours for d in cpu_before.devices) > 0.5  # about an hour per GPU
    # (the simulated GPUs run their owners' processes all along)
    assert named == pytest.approx(math.fsum(d.hours for d in cpu_before.devices), rel=0.02)
    assert result.total.cost == pytest.approx(plain.total.cost)
    parts = sum(g.amounts.cost for g in result.groups) + result.unattributed.cost + result.idle.cost
    assert parts == pytest.approx(plain.total.cost, rel=0.01)


def test_the_gpu_time_older_than_the_per_process_minutes_is_unattributed_as_such(
    tmp_path: Path,
) -> None:
    """Minutes kept one hour too: before the minute cut-off only hour rollups are left (no
    processes), so the GPUs' cost there is unattributed with that reason.

    Retention keeps the minutes from the start of the clock hour an hour ago, so the cut-off
    lies one to two hours back: three simulated hours leave at least a whole hour before it,
    whatever the time of day."""
    db = simulated_hours(tmp_path, hours=3)
    days = 1 / 24
    config = Config(retention=RetentionConfig(raw_days=days, minute_days=days))
    now = time.time()
    start = now - 4 * 3600
    with Store.open(db) as store:
        store.apply_retention(RetentionPolicy(raw_days=days, minute_days=days), now)
        result = chargeback(store, config, start, now, ["user"])
        plain = report_between(store, config.pricing(), start, now)
        covered = store.attribution(start, now).covered_from
        assert covered is not None and now - 2 * 3600 - 60 <= covered <= now - 3600
        before = report_between(store, config.pricing(), start, covered)
    why = result.unattributed_why
    gpu_older = why[f"older than the per-process minutes (kept {days:g} days)"]
    assert gpu_older == pytest.approx(math.fsum(d.cost for d in before.devices))
    # At least the whole hour before the cut-off, on each of the four simulated GPUs.
    assert len(before.devices) == 4 and all(d.hours >= 0.95 for d in before.devices)
    assert gpu_older > 0
    assert f"CPU older than the raw samples (kept {days:g} days)" in why
    assert result.total.cost == pytest.approx(plain.total.cost)
    parts = sum(g.amounts.cost for g in result.groups) + result.unattributed.cost + result.idle.cost
    assert parts == pytest.approx(plain.total.cost, rel=0.01)
