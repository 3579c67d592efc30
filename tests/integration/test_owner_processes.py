"""Owners of real processes: Slurm variables and a run key read from a real environment, a
secret beside them never kept, a second Unix user named by the sampler, and that user unable
to read root's environment (so it says so instead of guessing). The simulated driver shows the
real PIDs on its GPUs, so the sampler runs the path it runs on a real machine."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from costmeter.core.owner import Owner
from costmeter.sampling import host as host_mod
from costmeter.sampling.host import HostSampler
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.owner import read_owner
from costmeter.sampling.rapl import RaplReader
from costmeter.sampling.simulated import make_fake_nvml

pytestmark = pytest.mark.integration
SECRET = "xyz-" + uuid.uuid4().hex
SLURM_ENV = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_USER": "alice",
    "SLURM_JOB_ACCOUNT": "cv-lab",
    "SLURM_JOB_PARTITION": "gpu",
    "SLURM_ARRAY_JOB_ID": "4240",
    "SLURM_ARRAY_TASK_ID": "2",
    "COSTMETER_RUN_KEY": "run-" + uuid.uuid4().hex[:8],
}
WANT = Owner(
    job_id="4242",
    job_user="alice",
    account="cv-lab",
    partition="gpu",
    array_job_id="4240",
    array_task_id="2",
    run_key=SLURM_ENV["COSTMETER_RUN_KEY"],
)


@pytest.fixture
def no_rapl(tmp_path: Path) -> RaplReader:
    return RaplReader(tmp_path / "no-powercap")


@contextlib.contextmanager
def sleeping(env: dict[str, str], argv_prefix: tuple[str, ...] = ()) -> Iterator[int]:
    """A real ``sleep`` with ``env`` (plus the secret) as its environment; killed at the end."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_SECRET_ACCESS_KEY": SECRET, **env}
    proc = subprocess.Popen([*argv_prefix, "sleep", "120"], env=full)
    try:
        _wait_exec(proc.pid)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _wait_exec(pid: int) -> None:
    """Until the child has exec'd sleep and its new environment is in place (during exec the
    name changes before the kernel records where the environment lies: it reads empty)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (
                Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
                and b"AWS_SECRET_ACCESS_KEY=" in Path(f"/proc/{pid}/environ").read_bytes()
            ):
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never became sleep")


def _fields(owner: Owner) -> Owner:
    """The owner without uid/user/unreadable (compared on their own)."""
    return Owner(
        **{
            k: getattr(owner, k)
            for k in (
                "job_id",
                "job_user",
                "account",
                "partition",
                "array_job_id",
                "array_task_id",
                "container_id",
                "pod_uid",
                "run_key",
            )
        }
    )


def test_read_owner_of_a_real_process_keeps_only_the_whitelist() -> None:
    with sleeping(SLURM_ENV) as pid:
        got = read_owner(pid)
    assert _fields(got) == WANT
    assert got.uid == os.getuid()
    assert got.user == pwd.getpwuid(os.getuid()).pw_name
    assert got.unreadable == frozenset()
    assert SECRET not in repr(got)


def test_host_sampler_puts_the_owner_on_every_sample_read_once(
    no_rapl: RaplReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []

    def counting(pid: int, proc_root: str = "/proc") -> Owner:
        reads.append(pid)
        return read_owner(pid, proc_root)

    monkeypatch.setattr(host_mod, "read_owner", counting)
    fake = make_fake_nvml("8")
    gpu = NvmlSampler(fake)
    gpu.open()
    sampler = HostSampler(rapl=no_rapl, process_fallback=fake.process_sample)
    with sleeping(SLURM_ENV) as pid, sleeping({"SLURM_JOB_ID": "5"}) as other:
        fake.attach_process(0, pid, "train", name="sleep")
        fake.attach_process(3, other, "bursty", name="sleep")
        for _ in range(3):
            tracked = {p.pid for d in gpu.sample() for p in d.processes}
            assert {pid, other} <= tracked
            by_pid = {p.pid: p for p in sampler.sample(tracked).processes}
            mine = by_pid[pid]
            assert mine.owner is not None and _fields(mine.owner) == WANT
            assert mine.user == psutil.Process(pid).username() == mine.owner.user
            theirs = by_pid[other].owner
            assert theirs is not None and theirs.job_id == "5"
            simulated = [p for p in by_pid.values() if p.pid not in (pid, other)]
            # the fake's own processes: the owner it gives, not /proc's
            assert len(simulated) == len(set(fake.simulated_pids()) - {pid, other}) > 0
            assert all(p.owner == Owner(user="sim") for p in simulated)
            assert SECRET not in repr(by_pid)
        assert sorted(reads) == sorted([pid, other])  # once per process, not per tick
        fake.detach_process(3, other)
    sampler.sample({pid})
    assert other not in sampler._owners  # dropped with the process


def test_read_owners_switch_off_keeps_the_old_path(no_rapl: RaplReader) -> None:
    with sleeping(SLURM_ENV) as pid:
        sample = HostSampler(rapl=no_rapl, read_owners=False).sample({pid}).processes[0]
    assert sample.owner is None
    assert sample.user == pwd.getpwuid(os.getuid()).pw_name


# -- a second Unix user ---------------------------------------------------------------------


@pytest.fixture
def second_user() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip(
            "needs root to create a user: useradd and running a process as another "
            "uid are what this test checks"
        )
    name = f"costmeter-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _as_user(user: pwd.struct_passwd) -> tuple[str, ...]:
    return ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups")


def _read_owner_as(user: pwd.struct_passwd, pid: int) -> dict[str, object]:
    """``read_owner(pid)`` in a child process that has become ``user`` (no capabilities left).
    A fork, because this interpreter lives under /root, which the user cannot enter."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
            os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
            got = read_owner(pid)
            out = {
                f: getattr(got, f)
                for f in ("uid", "user", "job_id", "run_key", "account", "container_id")
            }
            out["unreadable"] = sorted(got.unreadable)
            out["me"] = os.getuid()
            os.write(w, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, object] = json.loads(data)
    return result


def test_a_second_users_process_is_named_and_cannot_read_roots_environment(
    second_user: pwd.struct_passwd, no_rapl: RaplReader
) -> None:
    sampler = HostSampler(rapl=no_rapl)
    with sleeping(SLURM_ENV, _as_user(second_user)) as theirs, sleeping(SLURM_ENV) as roots:
        assert psutil.Process(theirs).uids().real == second_user.pw_uid
        by_pid = {p.pid: p for p in sampler.sample({theirs, roots}).processes}
        sample = by_pid[theirs]
        assert sample.owner is not None
        assert sample.owner.uid == second_user.pw_uid
        assert sample.owner.user == second_user.pw_name == sample.user
        assert _fields(sample.owner) == WANT  # root reads everyone's environment
        root_owner = by_pid[roots].owner
        assert root_owner is not None and root_owner.user == "root"

        seen = _read_owner_as(second_user, roots)
        assert seen["me"] == second_user.pw_uid
        assert seen["uid"] == 0 and seen["user"] == "root"
        assert seen["unreadable"] == ["environ"]
        assert seen["job_id"] is None and seen["run_key"] is None and seen["account"] is None
        own = _read_owner_as(second_user, theirs)  # its own process: all of it
        assert own["unreadable"] == [] and own["job_id"] == "4242"
