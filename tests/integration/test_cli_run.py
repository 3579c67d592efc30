"""``costmeter run``, ``sweep`` and ``runs`` as a user types them (in subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli_process import costmeter, runs_json  # noqa: E402

PY = sys.executable


def test_run_passes_exit_code_output_and_summary(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    script = (
        "import sys, os; print('args', sys.argv[1:], os.environ['CUDA_VISIBLE_DEVICES']); "
        "sys.exit(3)"
    )
    args = ("run", "--simulate", "a100:train", "--gpus", "1", "--interval", "0.1")
    out = costmeter(*args, "--", PY, "-c", script, "--flag", "x", db=db)
    assert out.returncode == 3, out.stderr
    assert "args ['--flag', 'x'] 0" in out.stdout
    assert "estimated cost: no estimate yet" in out.stderr
    assert "failed with exit code 3" in out.stderr
    assert "GPU-hours" in out.stderr and "cost $" in out.stderr
    ok = costmeter(*args, "--name", "fine", "--", PY, "-c", "print('hi')", db=db)
    assert ok.returncode == 0, ok.stderr
    rows = runs_json(db)
    assert [r["name"] for r in rows] == ["fine", "python3" if "python3" in PY else rows[1]["name"]]
    keys = {"id", "name", "backend", "status", "exit_code", "started", "duration_s", "gpus",
            "energy_kwh", "cost"}  # fmt: skip
    assert keys <= set(rows[0])
    assert rows[0]["status"] == "succeeded" and rows[0]["gpus"] == [0]
    assert rows[1]["status"] == "failed" and rows[1]["exit_code"] == 3
    assert isinstance(rows[0]["cost"], float) and rows[0]["cost"] > 0
    table = costmeter("runs", db=db)
    assert "fine" in table.stdout and "succeeded" in table.stdout


def test_bad_requests_are_clear_and_recorded(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    unknown = costmeter("run", "--backend", "nope", "--", PY, "-c", "pass", db=db)
    assert unknown.returncode == 2
    assert "no backend named 'nope'" in unknown.stderr
    zero = costmeter("run", "--gpus", "0", "--", PY, "-c", "pass", db=db)
    assert zero.returncode == 2 and "--gpus 0" in zero.stderr
    many = costmeter("run", "--simulate", "t4", "--gpus", "2", "--", PY, "-c", "pass", db=db)
    assert many.returncode == 2 and "has only 1" in many.stderr
    missing = costmeter("run", "--", "no-such-command-costmeter", db=db)
    assert missing.returncode == 2 and "command not found" in missing.stderr
    nothing = costmeter("run", db=db)
    assert nothing.returncode == 2 and "Give the command" in nothing.stderr
    rows = runs_json(db)
    assert [r["status"] for r in rows] == ["failed"] * 4
    assert rows[-1]["backend"] == "nope"


def test_sweep_k2_over_four_runs_on_two_gpus(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    out = costmeter(
        "sweep", "--simulate", "2", "--interval", "0.1", "--gpus", "1", "--max-parallel", "2",
        "--grid", "x=1,2,3,4", "--", PY, "-c", "import time; print('x={x}'); time.sleep(0.3)",
        db=db,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for x in "1234":
        assert f"[python3[x={x}]] x={x}" in out.stdout or f"] x={x}" in out.stdout
    assert "4 of 4 runs succeeded" in out.stderr
    assert "at most 2 ran at once, 1 on one GPU" in out.stderr
    bad = costmeter("sweep", "--grid", "y=1", "--", PY, "-c", "pass", db=db)
    assert bad.returncode == 2 and "'y' is not used" in bad.stderr


def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    proc = subprocess.Popen(
        [PY, "-m", "costmeter", "run", "--db", str(db), "--", PY, "-c",
         "import time; print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 15
    rows = runs_json(db)
    assert rows[0]["status"] == "cancelled"
    assert rows[0]["message"] == "Cancelled with Ctrl-C."
    assert os.path.exists(db)
