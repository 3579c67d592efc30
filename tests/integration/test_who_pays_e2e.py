"""Who pays, end to end as a user drives it: ``costmeter run`` with Slurm variables in its
environment and ``--tag``, real busy processes placed on simulated GPUs (the simulated driver
lists their real PIDs, so owners are read from their real ``/proc/PID/environ``), one real
database, then ``costmeter report --by job|tag:team|run|user|project,user --format json``.

Each run's job, tag and run id must get the GPU-hours and the cost ``costmeter runs`` says the
run had (within ``TOLERANCE``), ``[attribution]`` rules and a ``project`` tag must name the
projects, and groups + unattributed + idle must add up to the total within 1 %. A second Unix
user (created here as root, removed at the end) runs one workload: ``--by user`` names it.

Every ``costmeter run`` records its own samples (``--simulate`` needs a recording of its own, so
a concurrent ``costmeter record`` on the same file is refused); the runs go one after another
into the same database, and the report reads them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
PY = sys.executable
#: Two A100s: the run takes one, the other stays idle (machine idle, nobody's).
SIMULATE = "a100:idle,a100:idle"
#: Seconds each workload keeps a CPU busy.
BUSY_S = 3.0
BUSY = f"import time\nt = time.time()\nwhile time.time() - t < {BUSY_S}:\n    pass\n"
#: A group's GPU-hours and cost against what ``costmeter runs`` says of its run.
TOLERANCE = 0.15
CONFIG = """
[attribution]
[[attribution.rules]]
project = "vision"
accounts = ["cv-*"]
[[attribution.rules]]
project = "shared"
users = ["costmeter-e2e-*"]
"""
JOB_A = {
    "SLURM_JOB_ID": "1001",
    "SLURM_JOB_USER": "alice",
    "SLURM_JOB_ACCOUNT": "cv-lab",
    "SLURM_JOB_PARTITION": "gpu",
}
#: The same account as job A (the rule says "vision"), but the run's project tag says "nlp".
JOB_B = {
    "SLURM_JOB_ID": "1002",
    "SLURM_JOB_USER": "bob",
    "SLURM_JOB_ACCOUNT": "cv-lab",
    "SLURM_JOB_PARTITION": "gpu",
}


def _clean_env(home: Path) -> dict[str, str]:
    """This process's environment without Slurm variables of its own, and with data and config
    dirs of the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["XDG_DATA_HOME"] = str(home / "data")
    env["XDG_CONFIG_HOME"] = str(home / "config")
    return env


class Bench:
    """One database and config, and the ``costmeter`` commands run against them."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.db = home / "who.db"
        self.config = home / "costmeter.toml"
        self.config.write_text(CONFIG)

    def costmeter(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [PY, "-m", "costmeter", args[0], "--db", str(self.db), "--config", str(self.config)]
        return subprocess.run(
            [*cmd, *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.cwd,
            env={**_clean_env(self.home), **(env or {})},
        )

    def run(self, tags: list[str], env: dict[str, str], argv: list[str]) -> None:
        tag_args = [x for t in tags for x in ("--tag", t)]
        out = self.costmeter(
            "run", "--simulate", SIMULATE, "--gpus", "1", "--interval", "0.2", *tag_args,
            "--", *argv, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr

    def runs(self) -> dict[str, dict[str, Any]]:
        """``costmeter runs --format json`` by run id (as text, as report keys have it)."""
        out = self.costmeter("runs", "--format", "json")
        assert out.returncode == 0, out.stderr
        return {str(r["id"]): r for r in json.loads(out.stdout)}

    def report(self, by: str) -> dict[str, Any]:
        out = self.costmeter("report", "--since", "1h", "--by", by, "--format", "json")
        assert out.returncode == 0, out.stderr
        report: dict[str, Any] = json.loads(out.stdout)
        assert report["by"] == by.split(",")
        _adds_up(report)
        return report


def _adds_up(report: dict[str, Any]) -> None:
    """groups + unattributed + idle == total within 1 %, for every amount."""
    total = report["total"]
    assert total["gpu_hours"] > 0 and total["cost"] > 0
    for amount in ("gpu_hours", "energy_kwh", "cost", "carbon_kg"):
        parts = sum(g[amount] for g in report["groups"])
        parts += report["unattributed"][amount] + report["idle"][amount]
        assert parts == pytest.approx(total[amount], rel=0.01), (amount, report)


class Groups(dict[tuple[str | None, ...], dict[str, Any]]):
    """A report's groups by key; compared with a set of keys, a mismatch shows the report."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__((tuple(g["key"][d] for d in report["by"]), g) for g in report["groups"])
        self.report = report

    def keys_are(self, *keys: tuple[str | None, ...]) -> None:
        assert set(self) == set(keys), json.dumps(self.report, indent=1)


def _groups(report: dict[str, Any]) -> Groups:
    return Groups(report)


def _matches_run(group: dict[str, Any], run: dict[str, Any]) -> None:
    """A group that is exactly one run's processes was charged what the run cost."""
    assert run["status"] == "succeeded", run
    assert group["gpu_hours"] == pytest.approx(run["gpu_hours"], rel=TOLERANCE), (group, run)
    assert group["cost"] == pytest.approx(run["cost"], rel=TOLERANCE), (group, run)
    # The run held one GPU for about as long as it lasted: held-idle time is in its group.
    assert group["gpu_hours"] * 3600 == pytest.approx(run["duration_s"], rel=TOLERANCE)


@contextlib.contextmanager
def _world_readable_dir() -> Iterator[Path]:
    """A working directory every user can enter (pytest's tmp dirs are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="costmeter-e2e-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """Two runs, one after the other: job 1001 tagged team=vision; job 1002 tagged team=nlp
    and project=nlp."""
    home = tmp_path_factory.mktemp("who-pays")
    bench = Bench(home, home)
    bench.run(["team=vision"], JOB_A, [PY, "-c", BUSY])
    bench.run(["team=nlp", "project=nlp"], JOB_B, [PY, "-c", BUSY])
    yield bench


def test_each_job_tag_and_run_gets_what_its_run_cost(two_jobs: Bench) -> None:
    runs = two_jobs.runs()
    assert sorted(runs) == ["1", "2"]
    assert runs["1"]["tags"] == {"team": "vision"}
    assert runs["2"]["tags"] == {"project": "nlp", "team": "nlp"}

    by_job = _groups(two_jobs.report("job"))
    by_job.keys_are(("1001",), ("1002",))
    _matches_run(by_job[("1001",)], runs["1"])
    _matches_run(by_job[("1002",)], runs["2"])

    by_tag = _groups(two_jobs.report("tag:team"))
    by_tag.keys_are(("vision",), ("nlp",))
    _matches_run(by_tag[("vision",)], runs["1"])
    _matches_run(by_tag[("nlp",)], runs["2"])

    by_run = _groups(two_jobs.report("run"))
    by_run.keys_are(("1",), ("2",))
    for (run_id,), job in (("1", "1001"), ("2", "1002")):
        _matches_run(by_run[(run_id,)], runs[run_id])
        for amount in ("gpu_hours", "energy_kwh", "cost", "idle_cost"):  # one run, one job
            assert by_run[(run_id,)][amount] == pytest.approx(by_job[(job,)][amount])


def test_the_idle_gpu_is_nobodys_and_nothing_is_unattributed(two_jobs: Bench) -> None:
    report = two_jobs.report("job")
    runs = two_jobs.runs()
    # The second GPU ran nothing while each run held the first: machine idle, about as long
    # as the runs lasted together (the recording starts a moment before each run).
    lasted = sum(r["duration_s"] for r in runs.values())
    assert report["idle"]["gpu_hours"] * 3600 >= lasted * (1 - TOLERANCE)
    assert report["idle"]["idle_cost"] == pytest.approx(report["idle"]["cost"])
    # Root reads every process's owner: no GPU time is left without one.
    assert report["unattributed"]["gpu_hours"] == pytest.approx(0.0, abs=1e-9)
    assert report["unattributed"]["cost"] < 0.05 * report["total"]["cost"]


def test_users_and_projects_follow_the_rules_and_the_project_tag(two_jobs: Bench) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    runs = two_jobs.runs()
    by_user = _groups(two_jobs.report("user"))
    # The Unix user of the processes, not SLURM_JOB_USER (which is what the job says).
    by_user.keys_are((me,))
    both = by_user[(me,)]
    assert both["gpu_hours"] == pytest.approx(
        runs["1"]["gpu_hours"] + runs["2"]["gpu_hours"], rel=TOLERANCE
    )
    by_project = _groups(two_jobs.report("project,user"))
    # Job 1001: account cv-lab -> the rule's "vision"; job 1002: its project tag wins.
    by_project.keys_are(("vision", me), ("nlp", me))
    _matches_run(by_project[("vision", me)], runs["1"])
    _matches_run(by_project[("nlp", me)], runs["2"])
    by_account = _groups(two_jobs.report("account"))
    by_account.keys_are(("cv-lab",))


# -- a second Unix user -------------------------------------------------------------------------


@pytest.fixture
def second_user() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip(
            "needs root: the test creates a Unix user (useradd) and runs a workload as that "
            "user, which is what it checks; run it as root to cover it"
        )
    if shutil.which("setpriv") is None or not Path("/bin/bash").exists():
        pytest.skip("needs setpriv (util-linux) and /bin/bash to run a workload as another user")
    name = f"costmeter-e2e-{os.getpid() % 100000}-{uuid.uuid4().hex[:4]}"
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_a_second_users_workload_is_charged_to_that_user(
    second_user: pwd.struct_passwd, tmp_path: Path
) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    with _world_readable_dir() as cwd:
        bench = Bench(tmp_path, cwd)
        # setpriv execs the workload in place: the run's PID (the one on the GPU) is theirs.
        as_them = [
            "setpriv", f"--reuid={second_user.pw_uid}", f"--regid={second_user.pw_gid}",
            "--clear-groups", "/bin/bash", "-c", f"while [ $SECONDS -lt {BUSY_S:.0f} ]; do :; done",
        ]  # fmt: skip
        bench.run(["team=ops"], {"SLURM_JOB_ID": "2001"}, as_them)
        bench.run(["team=vision"], JOB_A, [PY, "-c", BUSY])
        runs = bench.runs()
        by_user = _groups(bench.report("user"))
        by_user.keys_are((second_user.pw_name,), (me,))
        _matches_run(by_user[(second_user.pw_name,)], runs["1"])
        _matches_run(by_user[(me,)], runs["2"])
        by_project = _groups(bench.report("project,user"))
        by_project.keys_are(("shared", second_user.pw_name), ("vision", me))
        by_job = _groups(bench.report("job,tag:team"))
        by_job.keys_are(("2001", "ops"), ("1001", "vision"))
