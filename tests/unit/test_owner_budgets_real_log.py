"""Budgets per owner on someone else's data: nanoGPT's 8-GPU nvidia-smi log (karpathy/nanoGPT,
``gpu_metrics.csv``; tests/data/nvidia_smi/PROVENANCE.md), each GPU's real utilisation and power
written through the real writer with a process of alice on GPUs 0-3 and of bob on GPUs 4-7.

The expected money is worked out from the CSV with the csv module alone (not with the importer):
each GPU's seconds between readings at the H100's price per hour."""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from costmeter.config import Config, parse_config
from costmeter.core.clock import SimulatedClock
from costmeter.core.model import DeviceInfo, GpuProcess, Interval, ProcessSample, Tick
from costmeter.core.owner import Owner
from costmeter.importers.nvidia_smi_csv import parse_text
from costmeter.service.advice import advise
from costmeter.service.advice_owners import owners_from
from costmeter.service.budgets import budget_status
from costmeter.store import RetentionPolicy, Store, Writer
from costmeter.store.testing import host_info

LOG = Path(__file__).resolve().parents[1] / "data" / "nvidia_smi" / "nanogpt_8gpu_train_nounits.csv"
MODEL = "NVIDIA H100 80GB HBM3"  # 700 W boards: the H100 SXM class the provenance names
H100_HOURLY = 4.29  # USD/h in the default price table, energy included
HOST = "node-1"
NOW = datetime(2025, 9, 24, 4, 0, tzinfo=UTC)  # the log runs from 03:48:33 to about 03:51:13
OWNERS = {
    i: Owner(uid=1001, user="alice") if i < 4 else Owner(uid=1002, user="bob") for i in range(8)
}
CONFIG = """
[[budgets]]
by = "user"
key = "alice"
daily = 0.25

[[budgets]]
by = "user"
key = "bob"
daily = 100.0
"""


def expected_seconds() -> dict[int, float]:
    """Each GPU's seconds between consecutive readings (what a tick stands for)."""
    stamps: dict[int, list[float]] = defaultdict(list)
    with LOG.open(newline="") as f:
        for row in csv.DictReader(f):
            ts = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()
            stamps[int(row["gpu_index"])].append(ts)
    return {i: sorted(s)[-1] - sorted(s)[0] for i, s in stamps.items()}


def write_log(db: Path) -> None:
    columns = ["timestamp", "index", "temperature.gpu", "utilization.gpu", "power.draw"]
    readings, errors, _ = parse_text(LOG.read_text(), host=HOST, gpu_model=MODEL, columns=columns)
    assert not errors and len(readings) == 5112
    by_ts: dict[float, list] = defaultdict(list)
    metas = {}
    for r in readings:
        by_ts[r.sample.ts].append(r)
        metas[r.device.index] = r.device
    infos = [
        DeviceInfo(HOST, m.index, m.uuid, m.name, 80 << 30, 700.0, "Hopper", (9, 0))
        for m in sorted(metas.values(), key=lambda m: m.index)
    ]
    w = Writer(
        db,
        clock=SimulatedClock(min(by_ts)),
        retention=RetentionPolicy(raw_days=None, minute_days=None, hour_days=None),
    )
    w.start()
    w.register(host_info(HOST), infos)
    last: float | None = None
    for ts in sorted(by_ts):
        dt = 0.0 if last is None else ts - last  # the first reading stands for no time
        last = ts
        samples, intervals, procs = [], {}, []
        for r in sorted(by_ts[ts], key=lambda r: r.device.index):
            i = r.device.index
            pid = 4000 + i
            held = (GpuProcess(pid, 30 << 30, r.sample.gpu_util),)
            samples.append(dataclasses.replace(r.sample, processes=held))
            power = r.sample.power_w or 0.0
            intervals[r.sample.uuid] = Interval(dt, power * dt, energy_measured=False)
            owner = OWNERS[i]
            procs.append(
                ProcessSample(pid, min(by_ts) - 60, "python", "python train.py",
                              owner.user or "?", 0.0, 1 << 30, 0.0, owner=owner)
            )  # fmt: skip
        w.submit(
            Tick(ts, HOST, None, tuple(samples), intervals, None, processes=tuple(procs)),
            wait=True,
        )
    assert w.flush(60)
    w.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    db = tmp_path_factory.mktemp("nanogpt") / "nanogpt.db"
    write_log(db)
    s = Store.open(db)
    yield s
    s.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return parse_config(CONFIG, tmp_path_factory.mktemp("cfg") / "config.toml")


def test_each_owner_pays_for_the_gpus_its_processes_held(store: Store, config: Config) -> None:
    seconds = expected_seconds()
    alice_s = sum(seconds[i] for i in range(4))
    bob_s = sum(seconds[i] for i in range(4, 8))
    assert 4 * 150 < alice_s < 4 * 170  # about 160 s of training on each GPU
    alice, bob = budget_status(store, config, now=NOW)
    assert alice.spent_today == pytest.approx(alice_s / 3600 * H100_HOURLY, rel=0.01)
    assert bob.spent_today == pytest.approx(bob_s / 3600 * H100_HOURLY, rel=0.01)
    # The whole log lies in the last hour: the pace is the log's cost per hour.
    assert alice.per_hour == pytest.approx(alice.spent_today, rel=1e-9)
    assert alice.daily_over is True and bob.daily_over is False
    assert alice.month_to_date == pytest.approx(alice.spent_today, rel=1e-9)


def test_the_rule_names_the_owner_on_course_to_pass_its_budget(
    store: Store, config: Config
) -> None:
    result = advise(store, config, since_s=3600, now=NOW.timestamp())
    budgets = [r for r in result.recommendations if r.rule == "budget-forecast"]
    assert [r.target.owner for r in budgets] == ["user alice"]
    (rec,) = budgets
    assert rec.title.startswith("User alice is on course to cost ")
    assert rec.evidence.values["daily_budget"] == 0.25
    # No other rule fires on this busy training log; the GPUs' owners, as a finding on one of
    # them would name them, from the same attribution pass advise makes:
    owners = owners_from(store.attribution(result.start, result.end))
    uuids = {d.index: d.uuid for d in store.devices()}
    assert [owners.of_devices([uuids[i]]) for i in range(8)] == ["alice (100 %)"] * 4 + [
        "bob (100 %)"
    ] * 4
    both = owners.of_devices(uuids.values())
    assert both is not None and sorted(both.split(", ")) == ["alice (50 %)", "bob (50 %)"]
