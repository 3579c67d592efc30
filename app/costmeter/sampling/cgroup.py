"""Who a process belongs to, as its ``/proc/PID/cgroup`` says: Slurm job, container, pod.

A pure parser of the file's text. Both layouts are read: cgroup v1 (one
``N:controller,...:/path`` line per hierarchy) and v2 (a single ``0::/path`` line). What is
recognised, per path component:

- Slurm: ``.../slurm/uid_N/job_N/...`` (v1; ``slurm_<node>`` with several slurmd on a host) and
  ``.../slurmstepd.scope/job_N/...`` (v2; ``<node>_slurmstepd.scope`` likewise);
- containers: ``docker-<id>.scope``, ``cri-containerd-<id>.scope``, ``crio-<id>.scope``,
  ``libpod-<id>.scope`` (systemd driver), ``<slice>:<runtime>:<id>`` (containerd 1.4's systemd
  notation), and a bare ``<id>`` component (cgroupfs driver: ``/docker/<id>``,
  ``/kubepods/<qos>/pod<uid>/<id>``), an id being 64 hex digits; the deepest one wins (a
  container in a container). ``crio-conmon-`` and ``libpod-conmon-`` scopes are the runtime's
  monitor, not the container, and are not taken;
- Kubernetes pods: ``...kubepods[-besteffort|-burstable]-pod<uid>.slice`` (systemd driver, the
  UID's ``-`` written ``_``) and ``pod<uid>`` below ``kubepods`` (cgroupfs driver). A UID is a
  UUID or, for static pods, 32 hex digits; it is given back with ``-``.

Anything else gives None: a field is never guessed. When two lines name different values for
one field, that field is None too. Input is bounded: at most ``MAX_LINES`` lines are read and a
line longer than ``MAX_LINE_CHARS`` is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Lines of the file read at most (a cgroup v1 host has about 13 hierarchies).
MAX_LINES = 64
#: A longer line is skipped (the kernel's cgroup paths are bounded by PATH_MAX, 4096).
MAX_LINE_CHARS = 4096

_HEX64 = r"[0-9a-f]{64}"
_RUNTIMES = r"(?:docker|cri-containerd|crio|libpod)"
_SCOPE = re.compile(rf"{_RUNTIMES}-({_HEX64})\.scope")
_BARE = re.compile(_HEX64)
# containerd 1.4 with the systemd driver: "kubepods-...-pod<uid>.slice:cri-containerd:<id>".
_COLON = re.compile(rf"[^:]*:{_RUNTIMES}:({_HEX64})")
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"
_POD_SLICE = re.compile(rf"(?:[a-z0-9]+-)*kubepods(?:-besteffort|-burstable)?-pod({_UID})\.slice")
_POD_DIR = re.compile(rf"pod({_UID})")
_JOB = re.compile(r"job_([0-9]{1,20})")
_SLURM_V1 = re.compile(r"slurm(?:_[^/]+)?")
_UID_DIR = re.compile(r"uid_[0-9]+")
_HIERARCHY = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class CgroupOwner:
    """What a cgroup file names; None where it names nothing (or lines disagree)."""

    job_id: str | None = None
    container_id: str | None = None
    pod_uid: str | None = None


def _paths(text: str) -> list[str]:
    """The cgroup path of each well-formed line (``ID:controllers:/path``)."""
    out = []
    for n, line in enumerate(text.splitlines()):
        if n >= MAX_LINES:
            break
        if len(line) > MAX_LINE_CHARS:
            continue
        parts = line.strip().split(":", 2)
        if len(parts) == 3 and _HIERARCHY.fullmatch(parts[0]) and parts[2].startswith("/"):
            out.append(parts[2])
    return out


def _job(parts: list[str]) -> str | None:
    for i in range(1, len(parts)):
        m = _JOB.fullmatch(parts[i])
        if m is None:
            continue
        before = parts[i - 1]
        if before == "slurmstepd.scope" or before.endswith("_slurmstepd.scope"):
            return m.group(1)
        if i >= 2 and _UID_DIR.fullmatch(before) and _SLURM_V1.fullmatch(parts[i - 2]):
            return m.group(1)
    return None


def _container(parts: list[str]) -> str | None:
    found = None
    for part in parts:
        m = _SCOPE.fullmatch(part) or _COLON.fullmatch(part) or _BARE.fullmatch(part)
        if m is not None:
            found = m.group(1) if m.groups() else m.group(0)
    return found


def _pod(parts: list[str]) -> str | None:
    found = None
    for i, part in enumerate(parts):
        slice_part = part.split(":", 1)[0]  # containerd 1.4: "<pod slice>:<runtime>:<id>"
        m = _POD_SLICE.fullmatch(slice_part)
        if m is None and "kubepods" in parts[:i]:
            m = _POD_DIR.fullmatch(part)
        if m is not None:
            found = m.group(1).replace("_", "-")
    return found


def _agree(values: list[str | None]) -> str | None:
    """The one value the lines name; None when none or when they disagree."""
    named = {v for v in values if v is not None}
    return named.pop() if len(named) == 1 else None


def parse_cgroup(text: str) -> CgroupOwner:
    """The Slurm job, container and pod a ``/proc/PID/cgroup`` text names. Never raises."""
    jobs: list[str | None] = []
    containers: list[str | None] = []
    pods: list[str | None] = []
    for path in _paths(text):
        parts = path.split("/")
        jobs.append(_job(parts))
        containers.append(_container(parts))
        pods.append(_pod(parts))
    return CgroupOwner(job_id=_agree(jobs), container_id=_agree(containers), pod_uid=_agree(pods))
