"""Read who a process belongs to, from ``/proc/PID/{status,environ,cgroup}``.

Called once per process (the host sampler caches the answer for the process's life), never on
every tick. Only the whitelisted variables of ``ENV_FIELDS`` are taken from the environment;
the rest of it is never kept. A source that exists but cannot be read (another user's
``environ`` without privilege) is named in ``Owner.unreadable`` instead of being guessed.
"""

from __future__ import annotations

import os
import pwd
import time

from costmeter.core.owner import Owner
from costmeter.sampling.cgroup import parse_cgroup

#: The Costmeter run's marker (``costmeter.runs.tracking.MARK_ENV``; sampling cannot import
#: runs, a test holds the two equal).
RUN_KEY_ENV = "COSTMETER_RUN_KEY"
#: Environment variable -> ``Owner`` field: the only variables ever kept.
ENV_FIELDS: dict[str, str] = {
    "SLURM_JOB_ID": "job_id",
    "SLURM_JOB_USER": "job_user",
    "SLURM_JOB_ACCOUNT": "account",
    "SLURM_JOB_PARTITION": "partition",
    "SLURM_ARRAY_JOB_ID": "array_job_id",
    "SLURM_ARRAY_TASK_ID": "array_task_id",
    RUN_KEY_ENV: "run_key",
}
#: Fields that hold names (longer bound) rather than identifiers.
_NAME_FIELDS = frozenset({"user", "job_user", "account", "partition"})
MAX_ID_CHARS = 64
MAX_NAME_CHARS = 128
#: Bytes of ``environ`` read at most; an entry cut by the bound is dropped.
MAX_ENVIRON_BYTES = 256 * 1024
MAX_CGROUP_BYTES = 64 * 1024
MAX_STATUS_BYTES = 16 * 1024
#: How long a uid's name is trusted (users are created and removed while Costmeter runs).
USER_CACHE_S = 600.0
_USER_CACHE_MAX = 4096
_user_cache: dict[int, tuple[str | None, float]] = {}


def clean_text(value: str, limit: int) -> str | None:
    """``value`` without control characters; None when empty or longer than ``limit`` (a cut
    identifier would name someone else)."""
    text = "".join(ch for ch in value if ch.isprintable()).strip()
    if not text or len(text) > limit:
        return None
    return text


def _bounded(field: str, value: str) -> str | None:
    return clean_text(value, MAX_NAME_CHARS if field in _NAME_FIELDS else MAX_ID_CHARS)


def user_name(uid: int) -> str | None:
    """The account name of ``uid``, or None when it has none (a uid is not a name)."""
    now = time.monotonic()
    cached = _user_cache.get(uid)
    if cached is not None and now - cached[1] < USER_CACHE_S:
        return cached[0]
    try:
        name = clean_text(pwd.getpwuid(uid).pw_name, MAX_NAME_CHARS)
    except (KeyError, OverflowError):
        name = None
    if len(_user_cache) >= _USER_CACHE_MAX:
        _user_cache.clear()
    _user_cache[uid] = (name, now)
    return name


def clear_user_cache() -> None:
    _user_cache.clear()


def _read(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path``; ``OSError`` as raised by the kernel."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def parse_status_uid(data: bytes) -> int | None:
    """The real uid on the ``Uid:`` line of a ``/proc/PID/status`` text."""
    for line in data.split(b"\n"):
        if line.startswith(b"Uid:"):
            fields = line[4:].split()
            if fields and fields[0].isdigit() and len(fields[0]) <= 10:
                return int(fields[0])
            return None
    return None


def parse_environ(data: bytes, *, truncated: bool = False) -> dict[str, str]:
    """The whitelisted variables (``ENV_FIELDS``) of a NUL-separated environment, by field
    name. ``truncated``: the data was cut by a bound, so its last entry is dropped."""
    entries = data.split(b"\0")
    if truncated and entries:
        entries.pop()
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition(b"=")
        if not sep:
            continue
        field = ENV_FIELDS.get(name.decode("ascii", errors="replace"))
        if field is None or field in out:
            continue
        text = _bounded(field, value.decode("utf-8", errors="replace"))
        if text is not None:
            out[field] = text
    return out


def read_owner(pid: int, proc_root: str = "/proc") -> Owner:
    """Who process ``pid`` belongs to. Never raises for a missing or unreadable process: what
    could not be read is None, and a source that refused is named in ``unreadable``."""
    base = f"{proc_root}/{pid}"
    unreadable: set[str] = set()
    uid = None
    try:
        uid = parse_status_uid(_read(f"{base}/status", MAX_STATUS_BYTES))
    except PermissionError:
        unreadable.add("uid")
    except OSError:
        pass
    env: dict[str, str] = {}
    try:
        data = _read(f"{base}/environ", MAX_ENVIRON_BYTES + 1)
        env = parse_environ(data[:MAX_ENVIRON_BYTES], truncated=len(data) > MAX_ENVIRON_BYTES)
    except PermissionError:
        unreadable.add("environ")
    except OSError:
        pass
    cgroup = None
    try:
        text = _read(f"{base}/cgroup", MAX_CGROUP_BYTES).decode("utf-8", errors="replace")
        cgroup = parse_cgroup(text)
    except PermissionError:
        unreadable.add("cgroup")
    except OSError:
        pass
    job_id = env.get("job_id")
    if job_id is None and cgroup is not None:
        job_id = cgroup.job_id
    return Owner(
        uid=uid,
        user=user_name(uid) if uid is not None else None,
        job_id=job_id,
        job_user=env.get("job_user"),
        account=env.get("account"),
        partition=env.get("partition"),
        array_job_id=env.get("array_job_id"),
        array_task_id=env.get("array_task_id"),
        container_id=cgroup.container_id if cgroup is not None else None,
        pod_uid=cgroup.pod_uid if cgroup is not None else None,
        run_key=env.get("run_key"),
        unreadable=frozenset(unreadable),
    )
