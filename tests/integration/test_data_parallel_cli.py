"""Data-parallel runs as a user types them (subprocesses, real SQLite, real torch on the CPU):
``costmeter run --nproc-per-node 2`` starts the DDP example through torchrun over gloo, every
rank's line comes with its rank, both ranks' PIDs and CPU time are the run's, a rank that raises
fails the run with its error, and a sweep over N prints the scaling table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.store.runs import RunStore

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli_process import costmeter as run_costmeter  # noqa: E402
from cli_process import runs_json  # noqa: E402

PY = sys.executable
DDP = [PY, "-m", "costmeter.examples.digits_ddp", "--epochs", "2"]


def costmeter(*args: str, db: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_costmeter(*args, db=db, timeout=timeout)


def test_two_ranks_run_as_one_run_with_their_prefixes_pids_and_cost(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    db = tmp_path / "c.db"
    out = costmeter("run", "--interval", "0.2", "--nproc-per-node", "2", "--", *DDP, db=db)
    assert out.returncode == 0, out.stdout + out.stderr
    said = out.stdout + out.stderr
    ranks = dict(re.findall(r"\[rank(\d)\]:rank \d of 2 on cpu \(gloo\), pid (\d+)", said))
    assert ranks.keys() == {"0", "1"}, said
    assert re.search(r"\[rank0\]:epoch 2/2: loss [\d.]+, test accuracy", said)
    (row,) = runs_json(db)
    assert row["status"] == "succeeded"
    assert {int(p) for p in ranks.values()} <= set(row["pids"])  # both ranks attributed
    assert len(row["pids"]) >= 3  # ...and torchrun itself
    assert row["cost"] > 0 and row["cpu_seconds"] > 0
    log = (Path(_run_dir(db, row["id"])) / "output.log").read_text()
    assert "[rank1]:rank 1 of 2" in log  # the run's log keeps the prefixes too


def _run_dir(db: Path, run_id: int) -> str:
    with RunStore.open(db) as store:
        row = store.get(run_id)
    assert row is not None and row.run_dir
    return row.run_dir


BURN = """
import json, os, time
import psutil
start = time.process_time()
while time.process_time() - start < 1.0:
    pass
time.sleep(0.3)
me = psutil.Process().cpu_times()
parent = psutil.Process(os.getppid()).cpu_times()
print("CPU " + json.dumps({"rank": os.environ["RANK"], "self": me.user + me.system,
      "launcher": parent.user + parent.system}), flush=True)
time.sleep(1.5)  # idle: the run's last reading of its processes sees the final CPU time
"""


def test_the_run_is_charged_the_cpu_time_of_both_ranks(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    db = tmp_path / "c.db"
    (tmp_path / "burn.py").write_text(BURN)
    out = costmeter("run", "--interval", "0.2", "--nproc-per-node", "2", "--", PY, "burn.py",
                    db=db)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    found = [json.loads(m) for m in re.findall(r"\]:CPU (\{.*\})", out.stdout + out.stderr)]
    assert sorted(f["rank"] for f in found) == ["0", "1"]
    ranks = sum(f["self"] for f in found)
    launcher = max(f["launcher"] for f in found)
    (row,) = runs_json(db)
    # Each rank burnt at least 1 s: missing one would be a second short of this.
    assert ranks >= 2.0
    assert row["cpu_seconds"] == pytest.approx(ranks + launcher, abs=0.6)


FAIL = """
import os
import torch.distributed as dist
dist.init_process_group("gloo")
if os.environ["RANK"] == "1":
    raise RuntimeError("rank one ran out of data")
dist.barrier()
"""


def test_a_rank_that_raises_fails_the_run_with_its_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    db = tmp_path / "c.db"
    (tmp_path / "fail.py").write_text(FAIL)
    out = costmeter("run", "--interval", "0.2", "--nproc-per-node", "2", "--", PY, "fail.py",
                    db=db)  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    expected = "Rank 1 failed (exit code 1): RuntimeError: rank one ran out of data."
    assert expected in out.stderr
    (row,) = runs_json(db)
    assert row["status"] == "failed" and expected in row["message"]


@pytest.mark.parametrize(
    ("extra", "argv", "words"),
    [
        ([], ["bash", "-c", "true"], "write the command as 'python train.py ...'"),
        (["--simulate", "2", "--gpus", "1"], [PY, "x.py"], "asks for 1 GPU"),
    ],
)
def test_impossible_data_parallel_runs_are_refused_in_words(
    tmp_path: Path, extra: list[str], argv: list[str], words: str
) -> None:
    db = tmp_path / "c.db"
    out = costmeter("run", "--nproc-per-node", "2", *extra, "--", *argv, db=db)
    assert out.returncode != 0
    assert words in out.stderr
    assert "Traceback" not in out.stderr


def test_a_sweep_over_n_prints_its_scaling(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    db = tmp_path / "c.db"
    out = costmeter("sweep", "--interval", "0.2", "--grid", "n=1,2", "--nproc-per-node", "{n}",
                    "--", *DDP, db=db)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Scaling over --nproc-per-node (cost per unit of work: one step of progress" in (
        out.stdout
    )
    table = out.stdout[out.stdout.index("Scaling over") :]
    assert re.search(r"^1 +1 +[\d.]+ s +1\.00x", table, re.M)
    assert re.search(r"^2 procs: [\d.]+x (faster|slower) for [\d.]+x the cost$", table, re.M)
    rows = runs_json(db)
    assert sorted(r["name"] for r in rows) == ["digits_ddp[n=1]", "digits_ddp[n=2]"]
    advice = costmeter("advise", "--format", "json", db=db)
    assert advice.returncode == 0, advice.stderr
    found = [r for r in json.loads(advice.stdout) if r["rule"] == "scaling"]
    # The rule follows the table: it names the N whose step is cheaper by 5 % or more.
    ratio = float(re.findall(r"([\d.]+)x$", table.splitlines()[4])[0])  # N=2's cost vs N=1's
    if 0.95 < ratio < 1 / 0.95:
        assert not found
    else:
        (rec,) = found
        cheapest = "1 process" if ratio > 1 else "2 processes"
        assert f"with {cheapest}:" in rec["title"]
        assert rec["savings_per_month"]["once"] is True
