"""A real Slurm job priced from its samples (issue 15): ``costmeter run --backend slurm`` on a
throwaway single-node cluster (``tests/slurm_cluster.py``, this machine with simulated A100s).
The run's cost is measured, not estimated, and ``report --by job`` charges the job the same."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slurm_cluster import SlurmCluster

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]
#: Three seconds of wall time spinning on the CPU.
BUSY_3S = "import time\nt=time.time()\nwhile time.time()-t<3: pass\n"


def _why_not() -> str | None:
    if importlib.util.find_spec("costmeter_slurm") is None:
        return "the Slurm backend plugin (plugins/costmeter-slurm) is not installed"
    return SlurmCluster.available()


def _json(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run(
        [*COSTMETER, *args, "--format", "json"], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_a_slurm_run_is_measured_and_report_by_job_agrees(tmp_path: Path) -> None:
    with SlurmCluster(tmp_path, gpus=2) as cluster:
        env = {**os.environ, **cluster.env}
        db = tmp_path / "c.db"
        run = subprocess.run(
            [*COSTMETER, "run", "--simulate", "a100:train", "--backend", "slurm", "--gpus", "1",
             "--db", str(db), "--", sys.executable, "-c", BUSY_3S],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        (row,) = _json(env, "runs", "--db", str(db))
        report = _json(env, "report", "--by", "job", "--db", str(db))
    assert row["backend"] == "slurm" and row["status"] == "succeeded"
    assert row["job"] and row["allocated_gpus"] == 1 and row["node"] == cluster.node
    assert row["cost_basis"] == "measured", row["cost_note"]
    assert row["cost"] > 0 and row["gpu_hours"] > 0
    (group,) = [g for g in report["groups"] if g["key"].get("job") == row["job"]]
    assert group["cost"] == pytest.approx(row["cost"], rel=0.01), json.dumps([report, row])
    assert f"job {row['job']}" in run.stderr and "est." not in run.stderr
