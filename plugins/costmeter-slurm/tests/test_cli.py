"""``costmeter run --backend slurm`` as a user types it, on the test cluster."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EarlyRun

from slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PY = sys.executable


def costmeter(
    cluster: SlurmCluster, *args: str, db: Path, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    options = [
        "--backend-option",
        f"slurm_conf={cluster.conf_path}",
        "--backend-option",
        f"partition={cluster.partition}",
    ]
    return subprocess.run(
        [PY, "-m", "costmeter", *args[:1], "--db", str(db), *options, *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=db.parent,
        env=cluster.env,
    )


def test_a_slurm_run_on_simulated_gpus_ends_with_a_cost(
    slurm_cluster: SlurmCluster, time_limit_run: EarlyRun, tmp_path: Path
) -> None:
    """(``time_limit_run`` only starts the slow time-limit job now, see conftest.py.)"""
    db = tmp_path / "c.db"
    script = (
        "import os, sys, time; time.sleep(1.5); "
        "print('job', os.environ['SLURM_JOB_ID'], os.environ['CUDA_VISIBLE_DEVICES']); "
        "sys.exit(0)"
    )
    args = ("run", "--simulate", "a100:train,a100:train", "--backend", "slurm", "--gpus", "1")
    out = costmeter(slurm_cluster, *args, "--interval", "0.1", "--", PY, "-c", script, db=db)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "job " in out.stdout
    assert "cost $" in out.stderr, out.stderr
    runs = subprocess.run(
        [PY, "-m", "costmeter", "runs", "--db", str(db), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (row,) = json.loads(runs.stdout)
    assert row["backend"] == "slurm" and row["status"] == "succeeded", row
    assert isinstance(row["cost"], float) and row["cost"] > 0, row
    # The job ran here: the run is local, its processes sampled on the simulated GPU Slurm gave.
    assert row["node"] == socket.gethostname() and row["job"] is not None, row
    assert row["gpus"] == [int(out.stdout.split("job ")[1].split()[1])], (row, out.stdout)
