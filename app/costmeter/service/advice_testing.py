"""Simulated histories with runs, for the advice tests and the accuracy benchmark.

``write_history`` records hours of simulated GPUs into a database the way ``costmeter
simulate`` does; ``add_run`` then inserts a run row over some of those GPUs, with the PIDs of
the simulated processes on them (so run attribution and costs work as for a real run).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costmeter.config import Config
from costmeter.sampling.simulated import PID_BASE
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.store.runs import RunStore

#: The host name simulated samples carry.
SIM_HOST = "sim-host"


@dataclass(frozen=True, slots=True)
class History:
    db: Path
    start: float
    end: float
    #: The --simulate spec, one "model:profile" per GPU index.
    spec: tuple[str, ...]


def write_history(
    db: Path,
    spec: list[str] | tuple[str, ...],
    *,
    hours: float,
    interval_s: float = 10.0,
    seed: int = 0,
    end: float | None = None,
) -> History:
    """``hours`` of history for the GPUs in ``spec`` ("a100:idle", ...) ending at ``end`` (now)."""
    stop = math.floor((time.time() if end is None else end) / interval_s) * interval_s
    start = stop - hours * 3600.0
    monitor = Monitor(
        MonitorOptions(
            db_path=db,
            config=Config(),
            interval_s=interval_s,
            simulate=",".join(spec),
            seed=seed,
            simulated_start=start,
        ),
        on_message=lambda _m: None,
    )
    monitor.open()
    try:
        monitor.run_until(stop)
    finally:
        monitor.close()
    return History(db, start, stop, tuple(spec))


def sim_pid(index: int) -> int:
    """The PID of the simulated process on GPU ``index`` (see ``fake_nvml``)."""
    return PID_BASE + 100 * index + 1


@dataclass
class RunPlan:
    """A run to add over a history: which GPUs, its lifetime (offsets from the history's start,
    in seconds; ``end`` None = still running) and what its row says."""

    name: str
    gpus: tuple[int, ...]
    begin: float = 0.0
    end: float | None = None
    sweep: str | None = None
    status: str = "succeeded"
    exit_code: int | None = 0
    message: str = ""
    spec: dict[str, Any] = field(default_factory=dict)


def add_run(history: History, plan: RunPlan) -> int:
    started = history.start + plan.begin
    ended = None if plan.end is None else history.start + plan.end
    status = "running" if ended is None else plan.status
    with RunStore.open(history.db) as runs:
        return runs.insert(
            name=plan.name,
            backend="local",
            spec={"argv": ["python", f"{plan.name}.py"], "gpus": len(plan.gpus), **plan.spec},
            status=status,
            created=started,
            started=started,
            ended=ended,
            exit_code=None if ended is None else plan.exit_code,
            gpus=list(plan.gpus),
            pids=[sim_pid(i) for i in plan.gpus],
            host=SIM_HOST,
            message=plan.message,
            sweep=plan.sweep,
        )
