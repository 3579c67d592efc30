"""``costmeter run/sweep --tag`` as a user types them (in subprocesses): the tags reach every
run's row and ``costmeter runs``; a bad tag stops with exit 2 and a sentence; and the local
backend hands a run the Slurm variables of the environment it was started from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
PY = sys.executable


def costmeter(
    *args: str, db: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "costmeter", *args[:1], "--db", str(db), *args[1:]],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=db.parent,
        env=env,
    )


def runs_json(db: Path) -> list[dict[str, object]]:
    out = costmeter("runs", "--format", "json", db=db)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_run_and_sweep_tags_reach_each_run(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    one = costmeter(
        "run", "--tag", "team=vision", "--tag", "owner=alice", "--", PY, "-c", "pass", db=db
    )
    assert one.returncode == 0, one.stderr
    sweep = costmeter(
        "sweep", "--grid", "n=1,2", "--tag", "team=nlp", "--", PY, "-c", "print({n})", db=db
    )
    assert sweep.returncode == 0, sweep.stderr
    rows = runs_json(db)
    assert [r["tags"] for r in rows] == [
        {"team": "nlp"},
        {"team": "nlp"},
        {"owner": "alice", "team": "vision"},
    ]
    table = costmeter("runs", db=db)
    assert table.stdout.splitlines()[0].split()[-1] == "tags"
    assert "owner=alice, team=vision" in table.stdout


def test_a_bad_tag_stops_before_anything_runs(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    out = costmeter("run", "--tag", "team", "--", PY, "-c", "pass", db=db)
    assert out.returncode == 2
    assert "argument --tag: 'team' is not a tag; write KEY=VALUE" in out.stderr
    many = [x for i in range(33) for x in ("--tag", f"k{i}=v")]
    out = costmeter("sweep", "--grid", "n=1,2", *many, "--", PY, "-c", "print({n})", db=db)
    assert out.returncode == 2 and "33 tags on one run; at most 32" in out.stderr
    assert not db.exists() or runs_json(db) == []


def test_a_run_keeps_the_slurm_variables_it_was_started_with(tmp_path: Path) -> None:
    """Nothing between ``costmeter run`` and the run's process drops ``SLURM_*``: the owner
    reader finds the job in the run's ``/proc/PID/environ``."""
    db = tmp_path / "t.db"
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_USER": "alice",
        "SLURM_JOB_ACCOUNT": "cv-lab",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURM_ARRAY_JOB_ID": "4240",
        "SLURM_ARRAY_TASK_ID": "2",
    }
    show = (
        "import os, json; "
        "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('SLURM_')}))"
    )
    out = costmeter(
        "run", "--simulate", "a100", "--gpus", "1", "--", PY, "-c", show,
        db=db, env={**os.environ, **slurm},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert slurm.items() <= seen.items()
