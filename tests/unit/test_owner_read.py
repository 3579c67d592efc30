"""Reading a process's owner from /proc: uid and name, the whitelisted variables only, the job
from the cgroup when the environment does not name it, and what could not be read."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from costmeter.core.owner import Owner
from costmeter.runs.tracking import MARK_ENV
from costmeter.sampling import owner as owner_mod
from costmeter.sampling.owner import (
    ENV_FIELDS,
    MAX_ENVIRON_BYTES,
    RUN_KEY_ENV,
    parse_environ,
    parse_status_uid,
    read_owner,
    user_name,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "attribution"
CID = "f33f47b0db740bb647cb3e7ac62d96c74966dbb99cbfaf4563bfd42d387e8b44"


def _proc(
    root: Path,
    pid: int,
    *,
    status: str | None = None,
    environ: bytes | None = None,
    cgroup: str | None = None,
) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    if status is not None:
        (d / "status").write_text(status)
    if environ is not None:
        (d / "environ").write_bytes(environ)
    if cgroup is not None:
        (d / "cgroup").write_text(cgroup)


def _env(**values: str) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in values.items())


def test_run_key_is_the_run_managers_marker() -> None:
    assert RUN_KEY_ENV == MARK_ENV
    assert ENV_FIELDS[MARK_ENV] == "run_key"


def test_real_status_files() -> None:
    """prometheus/procfs fixtures: a uid-1000 process and a root one."""
    assert parse_status_uid((DATA / "proc/26231/status").read_bytes()) == 1000
    assert parse_status_uid((DATA / "proc/26235/status").read_bytes()) == 0


def test_real_container_environment_keeps_nothing() -> None:
    """prometheus/procfs fixture: PATH, HOSTNAME, TERM, ... none of it is an owner field."""
    data = (DATA / "proc/26231/environ").read_bytes()
    assert b"HOSTNAME=" in data
    assert parse_environ(data) == {}
    got = read_owner(26231, str(DATA / "proc"))
    assert got.uid == 1000
    assert got.job_id is None and got.run_key is None and got.container_id is None
    assert got.unreadable == frozenset()


def test_slurm_task_environment_shape() -> None:
    """The variables of a Slurm task as CEEMS's fixtures show them (figures, GPL source): only
    the whitelisted ones come back; SLURM_JOB_UID, _NODELIST, _GPUS are not owner fields."""
    data = (
        b"PATH=/usr/bin\0HOME=/root\0SLURM_JOB_UID=1000\0SLURM_JOB_ID=1009248\0"
        b"SLURM_JOB_ACCOUNT=testacc\0SLURM_JOB_NODELIST=compute-[0-2]\0SLURM_JOB_GPUS=2,3\0"
        b"SLURM_JOB_USER=testusr\0SLURM_STEP_GPUS=1,4\0"
    )
    assert parse_environ(data) == {
        "job_id": "1009248",
        "account": "testacc",
        "job_user": "testusr",
    }


def test_every_field_and_nothing_else(tmp_path: Path) -> None:
    env = _env(
        SLURM_JOB_ID="77",
        SLURM_JOB_USER="alice",
        SLURM_JOB_ACCOUNT="cv-lab",
        SLURM_JOB_PARTITION="gpu",
        SLURM_ARRAY_JOB_ID="70",
        SLURM_ARRAY_TASK_ID="7",
        COSTMETER_RUN_KEY="abc123",
        AWS_SECRET_ACCESS_KEY="xyz-secret",
        SLURM_JOB_IDX="no",
    )
    _proc(
        tmp_path,
        10,
        status="Name:\tpython\nUid:\t0\t0\t0\t0\n",
        environ=env,
        cgroup="0::/system.slice/slurmstepd.scope/job_999/step_0/user/task_0\n",
    )
    got = read_owner(10, str(tmp_path))
    assert got == Owner(
        uid=0,
        user=pwd.getpwuid(0).pw_name,
        job_id="77",  # the environment wins over the cgroup
        job_user="alice",
        account="cv-lab",
        partition="gpu",
        array_job_id="70",
        array_task_id="7",
        run_key="abc123",
    )
    assert "xyz-secret" not in repr(got)


def test_job_from_the_cgroup_when_the_environment_has_none(tmp_path: Path) -> None:
    _proc(
        tmp_path,
        11,
        status="Uid:\t0\t0\t0\t0\n",
        environ=_env(HOME="/"),
        cgroup="13:freezer:/slurm/uid_7319/job_748468/step_0\n12:cpu:/system.slice/x\n",
    )
    assert read_owner(11, str(tmp_path)).job_id == "748468"
    _proc(
        tmp_path,
        12,
        status="Uid:\t0\t0\t0\t0\n",
        cgroup=(DATA / "cgroup/neuvector_k8s_crio_v2_burstable.cgroup").read_text(),
    )
    got = read_owner(12, str(tmp_path))
    assert got.container_id == CID
    assert got.pod_uid == "042efd86-1f3b-4f2f-8736-f31c58e95bbc"


def test_gone_process_is_unknown_not_unreadable(tmp_path: Path) -> None:
    got = read_owner(424242, str(tmp_path))
    assert got == Owner()
    assert not got.known


def test_permission_denied_sources_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _proc(
        tmp_path,
        13,
        status="Uid:\t1000\t1000\t1000\t1000\n",
        environ=_env(SLURM_JOB_ID="1"),
        cgroup="0::/system.slice/slurmstepd.scope/job_5/step_0\n",
    )
    real = owner_mod._read

    def refuse(path: str, limit: int) -> bytes:
        if path.endswith(("/environ", "/cgroup")):
            raise PermissionError(13, "Permission denied", path)
        return real(path, limit)

    monkeypatch.setattr(owner_mod, "_read", refuse)
    got = read_owner(13, str(tmp_path))
    assert got.uid == 1000
    assert got.job_id is None
    assert got.unreadable == frozenset({"environ", "cgroup"})


def test_text_is_bounded_and_cleaned() -> None:
    data = _env(
        SLURM_JOB_ID="1" * 65,  # an id cut short would be someone else's: dropped
        SLURM_JOB_ACCOUNT="a" * 128,
        SLURM_JOB_PARTITION="p" * 129,
        SLURM_JOB_USER="al\x1b[31mice\x07",
        SLURM_ARRAY_TASK_ID="",
    )
    got = parse_environ(data)
    assert got == {"account": "a" * 128, "job_user": "al[31mice"}
    assert parse_environ(b"SLURM_JOB_ID=\xff\xfe7\0")["job_id"] == "\ufffd\ufffd7"


def test_first_definition_wins_and_entries_without_equals_are_skipped() -> None:
    assert parse_environ(b"SLURM_JOB_ID=1\0junk\0SLURM_JOB_ID=2\0") == {"job_id": "1"}


def test_environ_over_the_bound_drops_the_cut_entry(tmp_path: Path) -> None:
    filler = b"X=" + b"y" * (MAX_ENVIRON_BYTES - 20) + b"\0"
    env = _env(SLURM_JOB_ID="5") + filler + b"COSTMETER_RUN_KEY=" + b"k" * 64 + b"\0"
    _proc(tmp_path, 14, status="Uid:\t0\t0\t0\t0\n", environ=env)
    got = read_owner(14, str(tmp_path))
    assert got.job_id == "5"
    assert got.run_key is None  # cut by the bound: never a partial key


def test_status_without_a_usable_uid() -> None:
    assert parse_status_uid(b"Name:\tx\n") is None
    assert parse_status_uid(b"Uid:\tabc\t0\n") is None
    assert parse_status_uid(b"Uid:\n") is None


def test_uid_without_a_name_is_not_a_name() -> None:
    free = next(u for u in range(60_000, 65_000) if not _has_name(u))
    owner_mod.clear_user_cache()
    assert user_name(free) is None
    assert user_name(0) == pwd.getpwuid(0).pw_name
    assert user_name(2**40) is None  # pwd's OverflowError


def _has_name(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_own_process_reads_everything_it_may() -> None:
    got = read_owner(os.getpid())
    assert got.uid == os.getuid()
    assert got.unreadable == frozenset()


def test_host_sampler_reads_again_only_for_a_new_process_on_the_same_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from costmeter.sampling import host as host_mod
    from costmeter.sampling.host import HostSampler
    from costmeter.sampling.rapl import RaplReader

    reads: list[int] = []

    def counting(pid: int, proc_root: str = "/proc") -> Owner:
        reads.append(pid)
        return Owner(uid=len(reads))

    monkeypatch.setattr(host_mod, "read_owner", counting)
    sampler = HostSampler(rapl=RaplReader(tmp_path / "none"))
    first = sampler._owner(77, 100.0)
    assert sampler._owner(77, 100.0) is first
    assert reads == [77]
    second = sampler._owner(77, 200.0)  # the pid was reused by a new process
    assert second != first and reads == [77, 77]


def test_fake_nvml_gives_the_owner_it_was_given() -> None:
    from costmeter.sampling.simulated import PID_BASE, make_fake_nvml

    fake = make_fake_nvml("a100:free,a100:free")
    given = Owner(uid=1000, user="alice", job_id="12", run_key="k1")
    fake.attach_process(0, PID_BASE + 5, "train", owner=given)
    fake.attach_process(1, PID_BASE + 5, "train", owner=given)
    fake.attach_process(1, PID_BASE + 6, "light", user="bob")
    five = fake.process_sample(PID_BASE + 5)
    six = fake.process_sample(PID_BASE + 6)
    assert five is not None and five.owner == given and five.user == "alice"
    assert six is not None and six.owner == Owner(user="bob") and six.user == "bob"
    fake.detach_process(0, PID_BASE + 5)
    still = fake.process_sample(PID_BASE + 5)  # still on GPU 1
    assert still is not None and still.owner == given
    fake.detach_process(1, PID_BASE + 5)
    fake.attach_process(0, PID_BASE + 5, "train")  # a new process: the old owner is gone
    again = fake.process_sample(PID_BASE + 5)
    assert again is not None and again.owner == Owner(user="sim")
