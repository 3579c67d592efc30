"""Runs whose row says "running" though nothing runs them any more.

When Costmeter is killed (or the machine restarts) while a local run goes on, nobody writes the
run's end: its row stays "running" forever, the Runs page shows it going, and advice forecasts its
budget from a run that ended long ago. ``reconcile_stale_runs`` finds local runs of this machine
whose processes are all gone and marks them ``lost``, ended when they were last sampled. A run
owned by a live service is never touched: its processes are alive, and the update only applies to
rows still unfinished, so the owner's own end wins.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import psutil

from costmeter.plugin_api import RunState
from costmeter.runs.tracking import RunProcesses
from costmeter.store.runs import CREATE_SLACK_S, RunRow, RunStore

LOST_MESSAGE = (
    "Costmeter stopped while this run was going and its processes are gone; it ended at the "
    "latest when it was last sampled."
)


def process_alive(pid: int, created: float, started: float) -> bool:
    """Whether ``pid`` is still the process the run started (created between the run's queueing
    and its start: not a PID reused since, not a zombie)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return created - CREATE_SLACK_S <= proc.create_time() <= started + CREATE_SLACK_S
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # it exists; another user's process: leave it alone


def marked_alive(key: str) -> bool:
    """Whether a process carrying the local run ``key``'s marker still runs: processes its
    command left running (started later than it, so not told apart from a reused PID by
    their start time) keep the run going."""
    return bool(RunProcesses(0, key, by_group=False).scan())


def is_stale(
    run: RunRow,
    host: str,
    alive: Callable[[int, float, float], bool],
    marked: Callable[[str], bool] = marked_alive,
) -> bool:
    if run.backend != "local" or run.host not in (None, host):
        return False  # other backends and machines are not ours to judge
    if run.status not in (RunState.STARTING, RunState.RUNNING) or not run.pids:
        return False  # a queued run has no processes yet
    started = run.started if run.started is not None else run.created
    if started is None:
        return False
    created = min(run.created, started) if run.created is not None else started
    if any(alive(pid, created, started) for pid in run.pids):
        return False
    return not (run.handle_key and marked(run.handle_key))


def reconcile_stale_runs(
    runs: RunStore,
    *,
    host: str | None = None,
    now: float | None = None,
    alive: Callable[[int, float, float], bool] = process_alive,
) -> list[int]:
    """Mark this machine's abandoned local runs lost; returns their ids."""
    host = host or socket.gethostname()
    now = time.time() if now is None else now
    lost = []
    for run in runs.unfinished():
        if not is_stale(run, host, alive):
            continue
        seen = runs.last_sampled(run)
        start = run.started if run.started is not None else now
        ended = min(now, max(start, seen if seen is not None else start))
        if runs.mark_lost(run.id, ended=ended, message=LOST_MESSAGE):
            lost.append(run.id)
    return lost


def reconcile_at_start(
    runs: RunStore, *, host: str | None = None, say: Callable[[str], None] | None = None
) -> list[int]:
    """``reconcile_stale_runs`` where runs are managed (a run service starting), telling ``say``
    which runs were marked lost. Never raises: runs still start when this housekeeping fails."""
    try:
        lost = reconcile_stale_runs(runs, host=host)
    except Exception as exc:  # sqlite3's errors may only be named in costmeter.store
        if say is not None:
            say(f"Runs left running by a Costmeter that stopped could not be checked: {exc}.")
        return []
    if lost and say is not None:
        ids = ", ".join(str(i) for i in lost)
        say(f"Run(s) {ids} had no process left since Costmeter stopped: now marked lost.")
    return lost
