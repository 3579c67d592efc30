"""A batch scheduler's run priced from its job's samples on its node (issue 15), end to end with
real processes, a real ``costmeter agent`` and ``costmeter record``, and a fake scheduler
backend (plugin API 1.2) that reports the run's node, job id and allocated GPUs:

- remote node: a process with a Slurm job's environment runs beside an agent (simulated GPU 0
  shows it, ``--attach``) named by its FQDN; the scheduler calls the node by its short name.
  The run's cost is what the job used there, as ``report --by job`` splits it;
- no agent on the node: the cost is estimated (elapsed x GPUs x price), labelled so in
  ``costmeter runs`` and its JSON;
- the node is this machine: a job task that is not a child of the PID the scheduler reports
  (Slurm starts tasks from slurmstepd) is still sampled and charged to the run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from costmeter.config import Config
from costmeter.plugin_api import (
    BackendMetadata,
    Capability,
    LogChunk,
    Placement,
    Resources,
    RunHandle,
    RunSpec,
    RunState,
    RunStatus,
)
from costmeter.runs.registry import BackendInfo, GuardedBackend
from costmeter.service.chargeback import chargeback
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.service.runs import RunService, RunServiceOptions
from costmeter.store import Store
from costmeter.store.runs import JOB_END_SLACK_S

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import agent_process

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]
CONFIG = Config()
#: Spins for {s} seconds of CPU time (not wall time: a loaded machine gives it less of a core).
BUSY = "import time\nt=time.process_time()\nwhile time.process_time()-t<{s}: pass\n"


class FakeScheduler:
    """A batch scheduler as the plugin API 1.2 sees it: each run is job ``job`` on ``node``,
    from ``started`` to ``ended`` (whole seconds, as Slurm reports them), with ``pids``; it is
    running until ``done`` is set (at once when it is None)."""

    API_VERSION = "1.2"

    def __init__(
        self,
        *,
        node: str,
        job: str,
        started: float,
        ended: float | None,
        pids: tuple[int, ...] = (),
        allocated_gpus: int | None = 1,
        done: threading.Event | None = None,
    ) -> None:
        self.node, self.job, self.pids = node, job, pids
        self.started, self.ended = started, ended
        self.allocated_gpus = allocated_gpus
        self.done = done
        caps = frozenset({Capability.GPUS, Capability.PLACES_GPUS, Capability.MULTI_NODE})
        self._meta = BackendMetadata("fake-slurm", "1", "1.2", capabilities=caps)

    @property
    def metadata(self) -> BackendMetadata:
        return self._meta

    def resources(self) -> Resources:
        return Resources(gpus=8, cpus=64, nodes=(self.node,))

    def submit(
        self, spec: RunSpec, placement: Placement, env: Mapping[str, str], run_dir: Path
    ) -> RunHandle:
        return RunHandle("fake-slurm", self.job)

    def status(self, handle: RunHandle) -> RunStatus:
        running = self.done is not None and not self.done.is_set()
        ended = self.ended if self.ended is not None else math.ceil(time.time())
        return RunStatus(
            RunState.RUNNING if running else RunState.SUCCEEDED,
            exit_code=None if running else 0,
            started=self.started,
            ended=None if running else ended,
            pids=self.pids,
            node=self.node,
            job=self.job,
            allocated_gpus=self.allocated_gpus,
        )

    def cancel(self, handle: RunHandle, grace_s: float = 10.0) -> None:
        if self.done is not None:
            self.done.set()

    def read_logs(self, handle: RunHandle, offset: int = 0) -> LogChunk:
        return LogChunk("", offset, True)

    def close(self) -> None:
        pass


def service_for(backend: FakeScheduler, db: Path, monitor: Monitor | None = None) -> RunService:
    guarded = GuardedBackend(
        "fake-slurm", backend, backend.metadata, BackendInfo("fake-slurm", "tests:Fake")
    )
    options = RunServiceOptions(
        db_path=db,
        pricing=CONFIG.pricing(),
        monitor=monitor,
        poll_s=0.05,
        check_interval_s=0.1,
        grace_s=1.0,
        settle_s=0.1,
        on_message=lambda m: None,
    )
    return RunService(guarded, options)


def price_one(backend: FakeScheduler, db: Path, monitor: Monitor | None = None) -> int:
    service = service_for(backend, db, monitor)
    try:
        rid = service.submit(RunSpec(argv=("python", "train.py"), gpus=1, cpus=2))
        assert service.wait(60)
    finally:
        service.close()
    return rid


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*COSTMETER, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def runs_json(db: Path) -> list[dict[str, Any]]:
    return list(json.loads(cli("runs", "--format", "json", "--db", str(db)).stdout))


@pytest.fixture
def job_process() -> Iterator[subprocess.Popen[bytes]]:
    """A task of Slurm job 7301 on the remote node: spins until killed."""
    env = {**os.environ, "SLURM_JOB_ID": "7301", "SLURM_JOB_USER": "alice"}
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_a_slurm_run_on_a_recorded_node_costs_what_its_job_used_there(
    tmp_path: Path, job_process: subprocess.Popen[bytes]
) -> None:
    fqdn = "gpu-n3.cluster.example"
    started = math.floor(psutil.Process(job_process.pid).create_time())
    agent = agent_process.start_agent(
        tmp_path / "agent", "--simulate", "a100:train", "--interval", "0.5",
        "--name", fqdn, "--attach", f"{job_process.pid}:0",
    )  # fmt: skip
    try:
        config = tmp_path / "config.toml"
        config.write_text(f'[hosts."{fqdn}"]\nurl = "{agent.url}"\n', encoding="utf-8")
        db = tmp_path / "collector.db"
        rec = subprocess.Popen(
            [*COSTMETER, "record", "--no-local", "--interval", "0.5", "--duration", "7",
             "--db", str(db), "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(4)
            job_process.kill()
            job_process.wait(10)
            ended = math.ceil(time.time())
            _out, err = rec.communicate(timeout=120)
        finally:
            if rec.poll() is None:
                rec.kill()
                rec.wait(10)
        assert rec.returncode == 0, err + agent.stderr()
    finally:
        agent.stop()
    backend = FakeScheduler(
        node="gpu-n3", job="7301", started=started, ended=ended, pids=(4_000_000,)
    )
    rid = price_one(backend, db)
    (row,) = [r for r in runs_json(db) if r["id"] == rid]
    assert (row["job"], row["node"], row["allocated_gpus"]) == ("7301", "gpu-n3", 1)
    assert row["cost_basis"] == "measured"
    # The task started before the agent's first sample: the note may say how much is covered.
    assert row["cost_note"] is None or "of this run" in row["cost_note"]
    assert row["cost"] > 0 and row["gpu_hours"] > 0 and row["cpu_seconds"] > 0
    # What `report --by job` charges job 7301 over the run's window.
    with Store.open(db) as store:
        report = chargeback(store, CONFIG, started, ended + JOB_END_SLACK_S, ["job"])
    (group,) = [g for g in report.groups if g.key.get("job") == "7301"]
    assert row["cost"] == pytest.approx(group.amounts.cost, rel=0.01)
    assert row["gpu_hours"] == pytest.approx(group.amounts.gpu_hours, rel=0.01)
    # The CLI names the job too (over a wider window: the simulated GPU keeps showing the
    # task after it was killed, so the job's cost there is at least the run's).
    out = json.loads(cli("report", "--by", "job", "--format", "json", "--db", str(db)).stdout)
    (listed,) = [g for g in out["groups"] if g["key"].get("job") == "7301"]
    assert listed["cost"] >= row["cost"] * 0.99


def test_a_slurm_run_on_a_node_nobody_samples_is_estimated_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    Store.open(db).close()
    now = math.floor(time.time())
    backend = FakeScheduler(
        node="gpu-n9", job="7302", started=now - 1800, ended=now, allocated_gpus=2
    )
    rid = price_one(backend, db)
    (row,) = [r for r in runs_json(db) if r["id"] == rid]
    pricing = CONFIG.pricing()
    cheapest = min(r.hourly for r in pricing.gpu_rows)
    expected = 0.5 * 2 * cheapest + 0.5 * 2 * pricing.cpu_core_hour  # 2 reserved cores
    assert row["cost_basis"] == "estimated"
    assert row["cost"] == pytest.approx(expected)
    assert "gpu-n9" in row["cost_note"] and "2 GPU(s) allocated" in row["cost_note"]
    table = cli("runs", "--db", str(db)).stdout
    assert f"~${expected:.2f} est." in table


def test_a_jobs_task_outside_the_reported_process_tree_is_the_runs(tmp_path: Path) -> None:
    monitor = Monitor(
        MonitorOptions(db_path=tmp_path / "c.db", config=CONFIG, interval_s=0.1, simulate="1"),
        on_message=lambda m: None,
    )
    monitor.open()
    thread = threading.Thread(target=monitor.run_until, args=(None,), daemon=True)
    host = monitor.host_info.hostname  # type: ignore[union-attr]
    # Slurm's node name for this machine, spelt the other way (short name vs FQDN).
    node = host.split(".")[0] if "." in host else f"{host}.cluster.example"
    job = "7303"
    script = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    env = {**os.environ, "SLURM_JOB_ID": job}
    task: subprocess.Popen[bytes] | None = None
    done = threading.Event()
    try:
        thread.start()
        backend = FakeScheduler(
            node=node, job=job, started=math.floor(time.time()), ended=None,
            pids=(script.pid,), done=done,
        )  # fmt: skip
        service = service_for(backend, monitor.options.db_path, monitor)
        try:
            rid = service.submit(RunSpec(argv=("sbatch", "job.sh"), gpus=0, cpus=1))
            # The task Slurm starts from slurmstepd: a sibling of the batch script, not its child.
            task = subprocess.Popen([sys.executable, "-c", BUSY.format(s=1.5)], env=env)
            task.wait(60)
            time.sleep(0.5)  # its last samples
            done.set()
            assert service.wait(60)
            row = service.row(rid)
        finally:
            service.close()
    finally:
        done.set()
        for proc in (script, task):
            if proc is not None:
                proc.kill()
                proc.wait(10)
        monitor.stop()
        thread.join(10)
        monitor.close()
    assert row is not None and task is not None
    assert row.job == job and row.node == node and row.cost_basis == "measured"
    assert task.pid in row.pids and script.pid in row.pids
    # The task's CPU time (1.5 s spun; its last samples may miss the end) is the run's, though
    # it is not the script's child (the sleeping script itself uses next to none).
    assert row.cpu_seconds is not None and row.cpu_seconds >= 1.0


def test_an_agents_late_buffer_turns_the_estimate_into_the_measured_cost(
    tmp_path: Path, job_process: subprocess.Popen[bytes]
) -> None:
    """The collector was not pulling while the job ran (down, or the network was): the run is
    estimated; when ``costmeter record`` gets the agent's buffer, ``costmeter runs`` prices it
    again from the samples and says so."""
    fqdn = "gpu-n4.cluster.example"
    started = math.floor(psutil.Process(job_process.pid).create_time())
    agent = agent_process.start_agent(
        tmp_path / "agent", "--simulate", "a100:train", "--interval", "0.5",
        "--name", fqdn, "--attach", f"{job_process.pid}:0",
    )  # fmt: skip
    try:
        time.sleep(3)
        job_process.kill()
        job_process.wait(10)
        ended = math.ceil(time.time())
        db = tmp_path / "collector.db"
        Store.open(db).close()
        backend = FakeScheduler(node="gpu-n4", job="7301", started=started, ended=ended)
        rid = price_one(backend, db)
        (row,) = [r for r in runs_json(db) if r["id"] == rid]
        assert row["cost_basis"] == "estimated" and "gpu-n4" in row["cost_note"]
        time.sleep(max(0.0, ended + 1.5 - time.time()))  # the agent's samples past the end
        config = tmp_path / "config.toml"
        config.write_text(f'[hosts."{fqdn}"]\nurl = "{agent.url}"\n', encoding="utf-8")
        cli("record", "--no-local", "--interval", "0.5", "--duration", "3", "--db", str(db),
            "--config", str(config))  # fmt: skip
    finally:
        agent.stop()
    listed = cli("runs", "--db", str(db))
    assert f"run(s) {rid}: samples of their node arrived" in listed.stderr
    (row,) = [r for r in runs_json(db) if r["id"] == rid]
    assert row["cost_basis"] == "measured" and row["cost"] > 0
    with Store.open(db) as store:
        report = chargeback(store, CONFIG, started, ended + JOB_END_SLACK_S, ["job"])
    (group,) = [g for g in report.groups if g.key.get("job") == "7301"]
    assert row["cost"] == pytest.approx(group.amounts.cost, rel=0.01)
