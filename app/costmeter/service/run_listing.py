"""The Runs page's table, read on a worker thread: the newest rows, live figures of runs other
processes launched, and a note for those nobody watches any more."""

from __future__ import annotations

import psutil

from costmeter.cost.pricing import Pricing
from costmeter.service.run_costs import LiveRun, live_figures
from costmeter.store import Store
from costmeter.store.runs import UNFINISHED, RunRow

UNWATCHED = (
    "No Costmeter process is watching this run any more (its launcher exited), so its end "
    "was not recorded."
)
#: Live figures of runs other processes launched: at most this many running ones.
OTHERS_LIVE_LIMIT = 20


def alive(row: RunRow, hostname: str) -> bool:
    """Whether an unfinished row's process still runs (local runs on this machine only)."""
    pid = row.handle_data.get("pid") if row.handle_data else None
    if row.backend != "local" or row.host != hostname or not pid:
        return True  # cannot tell from here
    try:
        proc = psutil.Process(int(pid))
        created = float(row.handle_data.get("create_time", "0") or 0)
        if created and abs(proc.create_time() - created) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.Error:
        return True


def load_runs(
    store: Store, limit: int, ours: frozenset[int], pricing: Pricing, hostname: str
) -> tuple[list[RunRow], dict[int, LiveRun], dict[int, str]]:
    """The newest ``limit`` rows, the live figures of unfinished runs not in ``ours`` (other
    processes launched them), and a note for those whose process is gone."""
    runs = store.runs()
    rows = runs.list_runs(limit)
    live: dict[int, LiveRun] = {}
    notes: dict[int, str] = {}
    others = [r for r in rows if r.status in UNFINISHED and r.id not in ours]
    for row in others[:OTHERS_LIVE_LIMIT]:
        if not alive(row, hostname):
            notes[row.id] = UNWATCHED
        elif row.started is not None:
            live[row.id] = live_figures(runs, row, pricing)
    return rows, live, notes
