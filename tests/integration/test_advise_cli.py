"""``costmeter advise`` as a user runs it: ``costmeter simulate`` writes the history, a real
process reads it; JSON, table, and the sentences for a missing or damaged database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.service.advice import advise, dismiss
from costmeter.store import Store

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]


def costmeter(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COSTMETER, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sim_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("advise") / "sim.db"
    spec = "a100:idle,h100:train,t4:input-bound,t4:light,a10g:free"
    done = costmeter(
        "simulate", "--hours", "0.75", "--simulate", spec, "--interval", "10", "--db", str(db)
    )
    assert done.returncode == 0, done.stderr
    return db


def test_json_lists_the_expected_rules(sim_db: Path) -> None:
    done = costmeter("advise", "--db", str(sim_db), "--format", "json", "--since", "2h")
    assert done.returncode == 0, done.stderr
    recs = json.loads(done.stdout)
    found = {(r["rule"], r["target"]["device"]) for r in recs}
    assert found == {
        ("idle-gpu", 0),
        ("cheaper-gpu", 1),  # the table's H100 NVL: the same train for 25 % less
        ("input-bound", 2),
        ("underused-gpu", 3),
        ("memory-headroom", 3),
    }
    for r in recs:
        assert r["target"]["host"] == "sim-host" and r["target"]["run"] is None
        assert r["savings_per_month"]["currency"] == "USD"
        assert r["evidence"]["series"] and r["evidence"]["facts"]
    money = [r["savings_per_month"]["money"] for r in recs]
    assert money == sorted(money, reverse=True)


def test_table_and_total(sim_db: Path) -> None:
    done = costmeter("advise", "--db", str(sim_db), "--since", "2h")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["RULE", "TARGET"]
    assert any(line.startswith("idle-gpu") and "sim-host GPU 0" in line for line in lines)
    assert "Total: $" in done.stdout and "per month" in done.stdout


def test_missing_database_is_a_sentence(tmp_path: Path) -> None:
    done = costmeter("advise", "--db", str(tmp_path / "none.db"))
    assert done.returncode == 3
    assert "there is no database" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "none.db").exists()


def test_damaged_database_is_a_sentence_and_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not a database" * 100)
    done = costmeter("advise", "--db", str(db))
    assert done.returncode == 3
    assert "damaged" in done.stderr and "Traceback" not in done.stderr
    assert db.read_bytes().startswith(b"this is not a database")  # not moved aside


def test_bad_threshold_key_names_the_line(sim_db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[advice]\nidle_util_pct = 3\nidle_minuts = 20\n")
    done = costmeter("advise", "--db", str(sim_db), "--config", str(cfg))
    assert done.returncode == 2
    assert "line 3" in done.stderr and "idle_minutes" in done.stderr


def test_dismissed_are_listed_only_with_all(sim_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(sim_db, db)
    with Store.open(db) as store:
        top = advise(store, Config(), since_s=7200).recommendations[0]
        dismiss(store, top.key, top.rule)
    plain = json.loads(costmeter("advise", "--db", str(db), "--format", "json").stdout)
    assert top.key not in {r["key"] for r in plain}
    every = json.loads(costmeter("advise", "--db", str(db), "--format", "json", "--all").stdout)
    assert {r["key"] for r in every if r["hidden"]} == {top.key}
    table = costmeter("advise", "--db", str(db), "--all").stdout
    assert f"{top.rule} (hidden)" in table
