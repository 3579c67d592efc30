"""A run's processes on its node, so that a run is over only when all of them are.

The run's command leads a process group of its own, and every process it starts inherits the
marker ``COSTMETER_RUN_KEY=<run key>`` in its environment (unless it execs with a cleaned one):
the group finds background children, the marker finds ``setsid`` children and double-forked
daemons, and each found process brings its descendants. Linux only (``/proc``); elsewhere
nothing beyond the command itself is found. Zombies run nothing and do not count.

(Costmeter's local backend does the same; a plugin imports only ``costmeter.plugin_api``, so
the plugin has its own few lines of it.)
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

MARK_ENV = "COSTMETER_RUN_KEY"
PROC = Path("/proc")


def _stat(pid: str) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, None once it is gone."""
    try:
        raw = (PROC / pid / "stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None


def _marked(pid: str, needle: bytes) -> bool:
    try:
        env = (PROC / pid / "environ").read_bytes()
    except OSError:  # gone, or another user's
        return False
    return env.startswith(needle + b"\0") or (b"\0" + needle + b"\0") in env


def run_processes(pgid: int | None, key: str) -> list[int]:
    """The live processes of the run whose group is ``pgid`` (None: by marker only), in pid
    order."""
    if not PROC.is_dir():
        return []
    needle = f"{MARK_ENV}={key}".encode()
    stats = {}
    for name in os.listdir(PROC):
        if name.isdigit():
            st = _stat(name)
            if st is not None:
                stats[int(name)] = st
    members = {
        pid
        for pid, (state, _, group) in stats.items()
        if group == pgid or (state != "Z" and _marked(str(pid), needle))
    }
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(members)
    while todo:
        for kid in children.get(todo.pop(), ()):
            if kid not in members:
                members.add(kid)
                todo.append(kid)
    return sorted(p for p in members if stats[p][0] not in ("Z", "X"))


def signal_run(pgid: int | None, key: str, sig: int = signal.SIGTERM) -> bool:
    """``sig`` to the run's group and each of its processes; whether any process got it."""
    hit = False
    targets: list[tuple[bool, int]] = [(True, pgid)] if pgid else []
    targets += [(False, pid) for pid in run_processes(pgid, key)]
    for group, number in targets:
        try:
            if group:
                os.killpg(number, sig)
            else:
                os.kill(number, sig)
            hit = True
        except OSError:  # gone, or not ours
            continue
    return hit
