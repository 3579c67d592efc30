"""Who holds a database: the Costmeter recorder named in its lock file, else any process that has
the file open (found through ``/proc`` on Linux). Used only to word a "locked" message."""

from __future__ import annotations

import os
from pathlib import Path

from costmeter.store.lock import lock_holder

#: At most this many other processes are named.
MAX_NAMED = 3


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:120]


def processes_with_open(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(PID, command line) of other processes that have ``path`` (or its -wal/-shm) open."""
    target = os.path.realpath(path)
    names = {target, f"{target}-wal", f"{target}-shm"}
    found: list[tuple[int, str]] = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    me = os.getpid()
    for pid in sorted(pids):
        if pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link in names:
                found.append((pid, _command_of(pid)))
                break
    return found


def describe_holders(path: str | os.PathLike[str]) -> str:
    """``the recorder PID 12, `costmeter record``` or ``PID 34, `sqlite3 x.db``` or ''."""
    try:
        recorder = lock_holder(path)
    except OSError:  # the lock file cannot be read: name the processes alone
        recorder = None
    others = processes_with_open(path)
    parts = [f"the Costmeter recorder {recorder}"] if recorder else []
    recorder_pid = recorder.split(",")[0].removeprefix("PID ").strip() if recorder else ""
    for pid, command in others[:MAX_NAMED]:
        if str(pid) == recorder_pid:
            continue
        parts.append(f"PID {pid}, `{command}`" if command else f"PID {pid}")
    if len(others) > MAX_NAMED:
        parts.append(f"{len(others) - MAX_NAMED} more")
    return "; ".join(parts)
