"""Imports and the store: rollups over imported ranges, retention cut-offs, series combining."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from costmeter.core.model import DeviceInfo, DeviceSample, Interval
from costmeter.service.log_import import ImportOptions, import_log, parse_tz
from costmeter.store import RetentionPolicy, Store
from costmeter.store.imports import ImportTransaction

DATA = Path(__file__).resolve().parents[1] / "data" / "nvidia_smi"
NANOGPT = DATA / "nanogpt_8gpu_train_nounits.csv"
OPTIONS = ImportOptions(
    host="gpu-box-1",
    gpu_model="h100",
    columns=("timestamp", "index", "temperature.gpu", "utilization.gpu", "power.draw"),
)


def _usage(db: Path) -> dict[int, tuple[float, float, float | None]]:
    store = Store.open(db)
    try:
        return {
            u.index: (u.energy_j, u.seconds, u.avg_util) for u in store.device_usage(0, time.time())
        }
    finally:
        store.close()


def test_rollups_cover_the_imported_range(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    import_log(NANOGPT, db, OPTIONS)
    conn = sqlite3.connect(db)
    raw = conn.execute("SELECT device_id, sum(energy_mj), sum(dt_ms) FROM device_samples"
                       " GROUP BY device_id ORDER BY device_id").fetchall()  # fmt: skip
    for table in ("device_rollup_1m", "device_rollup_1h"):
        rolled = conn.execute(
            f"SELECT device_id, sum(energy_mj), sum(dt_ms) FROM {table}"
            " GROUP BY device_id ORDER BY device_id"
        ).fetchall()
        assert rolled == raw, table
    conn.close()


@pytest.mark.parametrize(
    "policy",
    [RetentionPolicy(raw_days=7, minute_days=None), RetentionPolicy(raw_days=7, minute_days=30)],
)
def test_import_older_than_retention_lands_in_rollups(
    tmp_path: Path, policy: RetentionPolicy
) -> None:
    fresh = tmp_path / "fresh.db"
    import_log(NANOGPT, fresh, OPTIONS)
    expected = _usage(fresh)

    db = tmp_path / "kept.db"
    store = Store.open(db)
    cut = store.apply_retention(policy, time.time())
    store.close()
    assert cut.raw > 0
    summary = import_log(NANOGPT, db, OPTIONS)
    assert summary.written == 5112 and summary.summarised == 0
    got = _usage(db)  # read from rollups: the raw rows lie before the raw cut-off
    assert got.keys() == expected.keys()
    for idx, (energy, seconds, util) in expected.items():
        assert got[idx][0] == pytest.approx(energy, abs=0.01)
        assert got[idx][1] == pytest.approx(seconds, abs=0.01)
        assert got[idx][2] == pytest.approx(util, abs=1e-6)

    # Retention prunes the imported raw rows; importing again must not count them twice.
    store = Store.open(db)
    store.apply_retention(policy, time.time() + 60)
    store.close()
    again = import_log(NANOGPT, db, OPTIONS)
    assert again.written == 0 and again.summarised == 5112
    assert _usage(db) == got


def _export(path: Path, metric: str, values: list[str]) -> Path:
    rows = [f"2025-01-01T00:00:0{i}Z,{v},{v},{v},raw" for i, v in enumerate(values)]
    path.write_text("\n".join(["ts,min,avg,max,resolution", *rows]) + "\n")
    return path


def test_two_single_metric_exports_combine_and_power_beats_the_estimate(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    opts = ImportOptions(host="copy", gpu_model="h100")
    util = _export(tmp_path / "costmeter-abc-gpu_util.csv", "gpu_util", ["10", "20", "30"])
    power = _export(tmp_path / "costmeter-abc-power_w.csv", "power_w", ["100", "200", "300"])
    first = import_log(util, db, opts)
    assert (
        first.written == 3 and "estimated from utilisation" in first.energy[first.devices[0].uuid]
    )
    second = import_log(power, db, opts)
    assert second.written == 3 and second.unchanged == 0
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT gpu_util, power_mw, energy_mj FROM device_samples ORDER BY ts"
    ).fetchall()
    conn.close()
    # Trapezoid of the measured power (150 J, then 250 J), not the utilisation estimate.
    assert rows == [(10, 100_000, 0), (20, 200_000, 150_000), (30, 300_000, 250_000)]
    assert import_log(power, db, opts).written == 0
    assert import_log(util, db, opts).written == 0


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    tx = ImportTransaction(db)
    tx.host("h")
    info = DeviceInfo(host="h", index=0, uuid="GPU-x", name="n", memory_total=0)
    tx.device(info, 1.0)
    tx.add(DeviceSample(uuid="GPU-x", index=0, ts=1.0, gpu_util=5), Interval(0, None, False))
    tx.rollback()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM hosts").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM device_samples").fetchone()[0] == 0
    conn.close()


def test_parse_tz() -> None:
    assert parse_tz(None) is None and parse_tz("local") is None
    assert parse_tz("UTC") is not None and parse_tz("+05:30") is not None
    assert parse_tz("Europe/Berlin") is not None
    for bad in ("+25:00", "+1", "Mars/Olympus", "../etc/passwd"):
        with pytest.raises(ValueError):
            parse_tz(bad)


def test_a_mostly_garbage_file_keeps_the_good_rows_and_names_the_first_bad(
    tmp_path: Path,
) -> None:
    log = tmp_path / "junk.csv"
    bad = "".join(f"garbage {i}, line\n" for i in range(50_000))
    log.write_text("timestamp, utilization.gpu\n1764189075, 5\n" + bad + "1764189076, 7\n")
    summary = import_log(log, tmp_path / "j.db", ImportOptions(host="junk"))
    assert summary.written == 2 and summary.error_count == 50_000
    assert [e.line for e in summary.errors] == list(range(3, 13))
    assert str(summary.errors[0]) == "line 3 (timestamp 'garbage 0' is not a date and time)"
