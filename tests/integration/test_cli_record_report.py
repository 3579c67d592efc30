"""The whole path, as a user drives it: real processes, real SQLite files, simulated GPUs."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from costmeter.store import Store

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]


def costmeter(*args: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COSTMETER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,  # type: ignore[call-overload]
    )


@pytest.fixture
def env_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the user's real data and config dirs out of every test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def test_record_then_report_json(env_home: Path) -> None:
    db = env_home / "rec.db"
    rec = costmeter(
        "record",
        "--simulate",
        "a100:train,t4:idle",
        "--interval",
        "0.5",
        "--duration",
        "3",
        "--db",
        str(db),
    )
    assert rec.returncode == 0, rec.stderr
    assert "recording 2 simulated GPUs" in rec.stderr
    store = Store.open(db)
    try:
        devices = store.devices()
        assert sorted(d.name for d in devices) == ["NVIDIA A100-SXM4-80GB", "Tesla T4"]
    finally:
        store.close()

    rep = costmeter("report", "--db", str(db), "--format", "json")
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    by_name = {d["name"]: d for d in data["devices"]}
    a100, t4 = by_name["NVIDIA A100-SXM4-80GB"], by_name["Tesla T4"]
    for d in (a100, t4):
        assert {
            "host",
            "index",
            "name",
            "energy_kwh",
            "energy_source",
            "cost",
            "idle_cost",
            "avg_util",
        } <= d.keys()
        assert d["energy_source"] == "measured"
        assert d["energy_kwh"] > 0 and d["cost"] > 0
    assert a100["avg_util"] > 80 and a100["idle_cost"] == 0
    assert t4["avg_util"] < 5 and t4["idle_cost"] == pytest.approx(t4["cost"], rel=1e-6)
    (host,) = data["hosts"]
    assert {"host", "cpu_energy_kwh", "energy_source", "cost"} <= host.keys()
    assert host["energy_source"] == "estimated" and host["cost"] > 0
    total = sum(d["cost"] for d in data["devices"]) + host["cost"]
    assert data["total"]["cost"] == pytest.approx(total)

    table = costmeter("report", "--db", str(db))
    assert table.returncode == 0 and "TOTAL" in table.stdout and "Tesla T4" in table.stdout
    csv = costmeter("report", "--db", str(db), "--format", "csv")
    assert csv.stdout.splitlines()[0].startswith("kind,host,index,name")
    assert len(csv.stdout.splitlines()) == 1 + 2 + 1 + 1


def test_ctrl_c_stops_cleanly_with_everything_flushed(env_home: Path) -> None:
    db = env_home / "sigint.db"
    proc = subprocess.Popen(
        [*COSTMETER, "record", "--simulate", "2", "--interval", "0.2", "--db", str(db)],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    found = re.search(r"(\d+) samples saved", err)
    assert found, err
    saved = int(found.group(1))
    assert saved >= 5
    store = Store.open(db)
    try:
        usage = store.device_usage(0, time.time() + 10)
        assert len(usage) == 2
    finally:
        store.close()
    with sqlite3.connect(db) as conn:  # every tick the recorder counted is in the database
        assert conn.execute("SELECT count(*) FROM device_samples").fetchone()[0] == 2 * saved


def test_a_second_recorder_is_refused(env_home: Path) -> None:
    db = env_home / "locked.db"
    first = subprocess.Popen(
        [*COSTMETER, "record", "--simulate", "1", "--db", str(db)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 30
        while not (db.exists() and Path(f"{db}.lock").exists()) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        second = costmeter("record", "--simulate", "1", "--duration", "2", "--db", str(db))
        assert second.returncode == 3
        assert f"PID {first.pid}" in second.stderr and "already" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert first.returncode == 0


def test_corrupted_database_is_moved_aside_and_recording_goes_on(env_home: Path) -> None:
    db = env_home / "broken.db"
    db.write_bytes(b"this is not a database" * 100)
    rec = costmeter("record", "--simulate", "1", "--duration", "1", "--db", str(db))
    assert rec.returncode == 0, rec.stderr
    aside = [p for p in env_home.iterdir() if p.name.startswith("broken.db.corrupt-")]
    assert len(aside) == 1
    assert aside[0].read_bytes() == b"this is not a database" * 100
    assert str(aside[0]) in rec.stderr


def test_malformed_config_names_file_line_and_key(env_home: Path) -> None:
    cfg = env_home / "bad.toml"
    cfg.write_text("[sampling]\ninterval_s = 1\nintervall = 2\n")
    rec = costmeter(
        "record",
        "--simulate",
        "1",
        "--duration",
        "1",
        "--config",
        str(cfg),
        "--db",
        str(env_home / "x.db"),
    )
    assert rec.returncode == 2
    assert str(cfg) in rec.stderr and "line 3" in rec.stderr and "intervall" in rec.stderr
    assert "Traceback" not in rec.stderr
    assert not (env_home / "x.db").exists()


def test_without_a_driver_it_records_the_host_in_cpu_only_mode(env_home: Path) -> None:
    db = env_home / "cpu.db"
    rec = costmeter("record", "--duration", "2", "--interval", "0.5", "--db", str(db))
    assert rec.returncode == 0, rec.stderr
    assert rec.stderr.count("No NVIDIA driver") == 1
    assert "Traceback" not in rec.stderr
    data = json.loads(costmeter("report", "--db", str(db), "--format", "json").stdout)
    assert data["devices"] == []
    assert len(data["hosts"]) == 1 and data["hosts"][0]["cost"] > 0


def test_simulated_data_defaults_to_its_own_database(env_home: Path) -> None:
    rec = costmeter("record", "--simulate", "1", "--duration", "1")
    assert rec.returncode == 0, rec.stderr
    data_dir = env_home / "data" / "costmeter"
    assert (data_dir / "costmeter-simulated.db").exists()
    assert not (data_dir / "costmeter.db").exists()
    rep = costmeter("report", "--simulate", "--format", "json")
    assert len(json.loads(rep.stdout)["devices"]) == 1


def test_report_without_a_database_says_how_to_start(env_home: Path) -> None:
    rep = costmeter("report", "--db", str(env_home / "none.db"))
    assert rep.returncode == 1
    assert "no database" in rep.stderr and "costmeter record" in rep.stderr


def test_doctor_reports_missing_driver_and_database_health(env_home: Path) -> None:
    db = env_home / "doc.db"
    assert (
        costmeter("simulate", "--hours", "0.05", "--simulate", "2", "--db", str(db)).returncode == 0
    )
    doc = costmeter("doctor", "--db", str(db))
    assert "No NVIDIA driver" in doc.stdout
    assert "schema v" in doc.stdout and ": ok" in doc.stdout
    sim = costmeter("doctor", "--simulate", "a100,t4", "--db", str(db))
    assert "2 GPU(s)" in sim.stdout and "NVIDIA A100-SXM4-80GB" in sim.stdout
    assert sim.returncode == 0, sim.stdout


def test_version_and_bad_arguments_are_sentences(env_home: Path) -> None:
    out = costmeter("--version")
    assert out.returncode == 0 and out.stdout.startswith("costmeter ")
    bad = costmeter(
        "record", "--simulate", "a100:dancing", "--duration", "1", "--db", str(env_home / "y.db")
    )
    assert bad.returncode != 0 and "dancing" in bad.stderr and "Traceback" not in bad.stderr
    bad_dur = costmeter("report", "--since", "yesterday", "--db", str(env_home / "y.db"))
    assert bad_dur.returncode == 2 and "not a duration" in bad_dur.stderr
