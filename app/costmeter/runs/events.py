"""What the run queue reports: one ``RunEvent`` per change, carrying a ``RunInfo`` snapshot."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from costmeter.plugin_api import RunHandle, RunSpec, RunState


class EventKind(enum.StrEnum):
    QUEUED = "queued"
    STARTED = "started"  # submitted; the handle, GPUs and first status are known
    UPDATED = "updated"  # state, PIDs or GPUs changed
    OUTPUT = "output"  # ``text`` holds new output
    FINISHED = "finished"
    #: Sent by the run service (never by the queue) once a finished run's cost is stored.
    COSTED = "costed"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A snapshot of one run as the queue knows it."""

    key: int
    name: str
    spec: RunSpec
    backend: str
    state: RunState
    run_dir: Path
    gpu_indices: tuple[int, ...] = ()
    handle: RunHandle | None = None
    pids: tuple[int, ...] = ()
    node: str | None = None
    exit_code: int | None = None
    queued_at: float = 0.0
    submitted_at: float | None = None
    started: float | None = None
    ended: float | None = None
    #: When the queue saw the run end (``ended`` is the backend's own time).
    detected_at: float | None = None
    message: str = ""
    #: The scheduler's job id and the GPUs it allocated (``RunStatus.job``, plugin API 1.2).
    job: str | None = None
    allocated_gpus: int | None = None


@dataclass(frozen=True, slots=True)
class RunEvent:
    kind: EventKind
    run: RunInfo
    text: str = ""


Listener = Callable[[RunEvent], None]
#: Called on every poll of a running run; returns why it must be stopped, or None.
Check = Callable[[RunInfo], str | None]
