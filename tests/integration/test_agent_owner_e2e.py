"""Remote agents send the owner fields: a real process started with a Slurm job's environment
runs beside a real ``costmeter agent`` (simulated GPU 0 shows it, ``--attach``); ``costmeter
record`` pulls the agent through a ``[hosts.X]`` entry, and the collector's database holds the
process with its owner, read from /proc on the agent's side and carried on the wire."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from costmeter.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import agent_process

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]
SLURM = {
    "SLURM_JOB_ID": "81234",
    "SLURM_JOB_USER": "alice",
    "SLURM_JOB_ACCOUNT": "cv-lab",
    "SLURM_JOB_PARTITION": "gpu-a100",
    "SLURM_ARRAY_JOB_ID": "81230",
    "SLURM_ARRAY_TASK_ID": "4",
}
SECRET = "do-not-store-this-3f9a"


@pytest.fixture
def job() -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **SLURM, "WANDB_API_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_a_slurm_jobs_owner_reaches_the_collectors_database(
    tmp_path: Path, job: subprocess.Popen[bytes]
) -> None:
    agent = agent_process.start_agent(
        tmp_path / "agent", "--simulate", "a100:train", "--interval", "0.5",
        "--name", "slurm-node-3", "--attach", f"{job.pid}:0",
    )  # fmt: skip
    try:
        config = tmp_path / "config.toml"
        config.write_text(f'[hosts.node3]\nurl = "{agent.url}"\n', encoding="utf-8")
        db = tmp_path / "collector.db"
        start = time.time() - 1
        rec = subprocess.run(
            [*COSTMETER, "record", "--no-local", "--interval", "0.5", "--duration", "4",
             "--db", str(db), "--config", str(config)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert rec.returncode == 0, rec.stderr + agent.stderr()
    finally:
        agent.stop()
    with Store.open(db) as store:
        att = store.attribution(start, time.time() + 5)
    (record,) = [r for r in att.processes.values() if r.pid == job.pid]
    assert record.host == "node3"  # the [hosts.X] name
    owner = record.owner
    assert (owner.job_id, owner.job_user, owner.account, owner.partition) == (
        "81234",
        "alice",
        "cv-lab",
        "gpu-a100",
    )
    assert (owner.array_job_id, owner.array_task_id) == ("81230", "4")
    assert owner.uid == os.getuid() and owner.user == getpass.getuser()
    assert not owner.unreadable
    # Only the identifiers are kept, never the rest of the environment.
    kept = [getattr(owner, f.name) for f in fields(owner)]
    assert all(SECRET not in str(v) for v in (*kept, record.name, record.cmdline))
    # The job is charged its share of the simulated A100 it shares with the GPU's stand-in.
    mine = [s for s in att.shares if s.proc_id == record.proc_id]
    assert mine and sum(s.busy_s + s.held_idle_s for s in mine) > 0.5


def test_attach_without_simulate_is_refused_in_words(tmp_path: Path) -> None:
    out = agent_process.run_agent(
        tmp_path, "--attach", f"{os.getpid()}:0", "--db", str(tmp_path / "buffer.db")
    )
    assert out.returncode == 2
    assert "--attach" in out.stderr and "--simulate" in out.stderr


@pytest.mark.parametrize(
    ("arg", "needle"),
    [("12x:0", "PID:GPU"), ("{pid}:7", "GPUs 0 to 0"), ("99999999:0", "no running")],
)
def test_a_bad_attach_is_refused_in_words(tmp_path: Path, arg: str, needle: str) -> None:
    out = agent_process.run_agent(
        tmp_path, "--simulate", "1", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "b.db"),
        "--attach", arg.format(pid=os.getpid()),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr
