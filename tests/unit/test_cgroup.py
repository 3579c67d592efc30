"""The /proc/PID/cgroup parser: real files from Slurm, Docker and Kubernetes nodes, the path
shapes documented elsewhere, and fuzzing (it never raises and never guesses)."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmeter.sampling.cgroup import MAX_LINE_CHARS, MAX_LINES, CgroupOwner, parse_cgroup

DATA = Path(__file__).resolve().parents[1] / "data" / "attribution" / "cgroup"
EXPECTED: dict[str, dict[str, str]] = json.loads((DATA / "expected.json").read_text())
CID = "3de7a364f9de8d8665d657d82d6503fb3f0bc7b275609d3cf8fd53f17f18296b"
UID = "ccf19bc6-503b-4dd0-b33d-e5717fe6613c"


def test_every_data_file_has_an_expectation_and_back() -> None:
    assert sorted(p.name for p in DATA.glob("*.cgroup")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_files(name: str) -> None:
    """Files taken from real nodes (tests/data/attribution/PROVENANCE.md)."""
    want = EXPECTED[name]
    got = parse_cgroup((DATA / name).read_text())
    assert got == CgroupOwner(
        job_id=want.get("job_id"),
        container_id=want.get("container_id"),
        pod_uid=want.get("pod_uid"),
    )


# Path shapes from sources whose files cannot be copied here (figures only, see PROVENANCE.md).
SHAPES = [
    # CEEMS (GPL-3.0) pkg/collector/testdata/proc.ttar: a Slurm job cgroup, v1 job level.
    (
        "12:freezer:/slurm/uid_1000/job_4824887\n2:pids:/user.slice/user-118.slice/session-18.scope",
        CgroupOwner(job_id="4824887"),
    ),
    ("0::/system.slice/slurmstepd.scope/job_1320003/step_0/user/task_0", CgroupOwner("1320003")),
    # Slurm cgroup_v2.html: the extern and batch steps, the stepd itself, several slurmd.
    ("0::/system.slice/slurmstepd.scope/job_42/step_extern/user", CgroupOwner("42")),
    ("0::/system.slice/slurmstepd.scope/job_17/step_batch/user/task_0", CgroupOwner("17")),
    ("0::/system.slice/slurmstepd.scope/system", CgroupOwner()),
    ("0::/system.slice/node7_slurmstepd.scope/job_9/step_0/user/task_0", CgroupOwner("9")),
    ("4:memory:/slurm_node7/uid_1000/job_66583/step_0", CgroupOwner("66583")),
    # podman (libpod createUnitName("libpod", id)): rootful, its init sub-cgroup, rootless.
    (f"0::/machine.slice/libpod-{CID}.scope", CgroupOwner(container_id=CID)),
    (f"0::/machine.slice/libpod-{CID}.scope/container", CgroupOwner(container_id=CID)),
    (
        f"0::/user.slice/user-501.slice/user@501.service/user.slice/libpod-{CID}.scope",
        CgroupOwner(container_id=CID),
    ),
    # kind / kubelet in a systemd slice of its own; a guaranteed pod (no QoS part).
    (
        "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
        CgroupOwner(container_id=CID, pod_uid=UID),
    ),
    (
        f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope",
        CgroupOwner(container_id=CID, pod_uid=UID),
    ),
    (f"0::/kubepods/pod{UID}/{CID}", CgroupOwner(container_id=CID, pod_uid=UID)),
    # A pod's slice alone (the sandbox's own processes): the pod, no container.
    (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice",
        CgroupOwner(pod_uid=UID),
    ),
]


@pytest.mark.parametrize(("text", "want"), SHAPES)
def test_documented_shapes(text: str, want: CgroupOwner) -> None:
    assert parse_cgroup(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0::/",
        "0::/user.slice/user-1000.slice/session-3.scope",
        "random garbage\n",
        "/job_hello/\n",
        "0::/job_42/step_0",  # a job_ directory not under Slurm's own cgroup
        "0::/user.slice/job_42",
        "0::/system.slice/slurmstepd.scope/job_abc/step_0",
        "0::/system.slice/notslurmstepd.scope/job_5",
        "4:memory:/uid_1000/job_5",
        f"0::/machine.slice/libpod-conmon-{CID}.scope",  # podman's monitor, not the container
        f"0::/kubepods.slice/kubepods-besteffort.slice/crio-conmon-{CID}.scope",
        f"0::/system.slice/docker-{CID[:12]}.scope",  # a short id is not an id
        f"0::/system.slice/docker-{CID.upper()}.scope",
        "0::/kubepods/besteffort/pod1234/abc",  # not a UID
        f"0::/somewhere/pod{UID}/x",  # pod<uid> outside kubepods
        "x:cpu:/slurm/uid_1/job_2",  # not a hierarchy number
        "3:cpu:slurm/uid_1/job_2",  # not an absolute path
    ],
)
def test_unrecognised_gives_nothing(text: str) -> None:
    assert parse_cgroup(text) == CgroupOwner()


def test_lines_that_disagree_give_none_for_that_field() -> None:
    text = "5:cpu:/slurm/uid_1/job_7/step_0\n4:memory:/slurm/uid_1/job_8/step_0\n"
    assert parse_cgroup(text).job_id is None
    other = CID[::-1]
    both = f"3:pids:/docker/{CID}\n2:memory:/docker/{other}\n1:cpu:/slurm/uid_1/job_3"
    assert parse_cgroup(both) == CgroupOwner(job_id="3")


def test_uid_with_underscores_comes_back_with_dashes() -> None:
    text = f"0::/kubepods.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice"
    assert parse_cgroup(text).pod_uid == UID


def test_bounds_long_lines_and_many_lines_are_not_read() -> None:
    long_line = "0::/" + "a" * MAX_LINE_CHARS + "/slurmstepd.scope/job_5"
    assert parse_cgroup(long_line) == CgroupOwner()
    late = "0::/\n" * MAX_LINES + "0::/system.slice/slurmstepd.scope/job_5/step_0"
    assert parse_cgroup(late) == CgroupOwner()
    early = "0::/system.slice/slurmstepd.scope/job_5/step_0\n" + "0::/\n" * 10_000
    assert parse_cgroup(early).job_id == "5"


_PIECES = [
    "slurm",
    "uid_1000",
    "job_12",
    "job_x",
    "slurmstepd.scope",
    "a_slurmstepd.scope",
    "kubepods",
    "besteffort",
    f"pod{UID}",
    f"kubepods-burstable-pod{UID}.slice",
    f"docker-{CID}.scope",
    CID,
    f"x.slice:crio:{CID}",
    "..",
    "",
    ":",
    "\0",
    "\u202e",
    "é",
]


def _bounded(got: CgroupOwner) -> bool:
    return all(
        v is None or (isinstance(v, str) and len(v) <= 64)
        for v in (got.job_id, got.container_id, got.pod_uid)
    )


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=600))
def test_fuzz_any_text_never_raises(text: str) -> None:
    assert _bounded(parse_cgroup(text))


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["0", "1", "12", "x", ""]),
            st.sampled_from(["", "cpu", "name=systemd", "cpu,cpuacct"]),
            st.lists(st.sampled_from(_PIECES) | st.text(max_size=8), max_size=8),
        ),
        max_size=12,
    )
)
def test_fuzz_cgroup_like_lines(lines: list[tuple[str, str, list[str]]]) -> None:
    text = "\n".join(f"{h}:{c}:/{'/'.join(p)}" for h, c, p in lines)
    got = parse_cgroup(text)
    assert _bounded(got)
    if got.job_id is not None:
        assert got.job_id.isdigit()
    if got.container_id is not None:
        assert len(got.container_id) == 64
    if got.pod_uid is not None:
        assert "_" not in got.pod_uid


def test_seeded_random_bytes_10k() -> None:
    rng = random.Random(13)
    alphabet = string.printable + "\0\x7f/:_-é"
    for _ in range(10_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
        assert _bounded(parse_cgroup(text))
