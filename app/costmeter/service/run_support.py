"""Helpers of the run service: CPU time read between samples, runs on simulated GPUs, run
directories, and rows for runs refused before they were queued."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from costmeter.plugin_api import RunSpec, RunState
from costmeter.runs.commands import command_key, default_name
from costmeter.sampling.simulated import FakeNvml
from costmeter.store.runs import RunStore

#: A run's simulated workload when neither --profile nor its GPU's --simulate profile says.
DEFAULT_PROFILE = "train"


@dataclass
class CpuTracker:
    """CPU seconds of a run's process tree, read directly (between the recorder's samples).

    At each reading the tree's total is each live process's own time plus what it reaped of
    its children (``children_user/system``): a process's time is counted either in itself or in
    its parent, never both. The largest total seen is kept.
    """

    seconds: float | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[int, psutil.Process] = {}

    def read(self, pids: Iterable[int]) -> float | None:
        total = 0.0
        seen = False
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = psutil.Process(pid)
                    self._procs[pid] = proc
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                self._procs.pop(pid, None)
                continue
            seen = True
            total += t.user + t.system + t.children_user + t.children_system
        with self._lock:
            if seen and (self.seconds is None or total > self.seconds):
                self.seconds = total
            return self.seconds


class SimulatedRuns:
    """Puts runs' PIDs on simulated GPUs (``FakeNvml.attach_process``) and takes them off.

    A run's workload profile is ``profile`` when given, else the profile its GPU had in the
    ``--simulate`` spec. With ``runs_only`` the GPUs' own stand-in processes are taken off at
    once, so the runs are the only workload (``costmeter run`` does that).
    """

    def __init__(self, fake: FakeNvml, *, profile: str | None, runs_only: bool) -> None:
        self.fake = fake
        self.profile = profile
        self._lock = threading.Lock()
        self._profiles: dict[int, str] = {}
        for dev in fake.devices:
            procs = list(dev.processes)
            if procs:
                self._profiles[dev.index] = procs[0].profile.name
            if runs_only:
                for p in procs:
                    fake.detach_process(dev.index, p.pid)

    def attach(self, pid: int, gpus: Sequence[int], argv: Sequence[str]) -> list[tuple[int, int]]:
        done = []
        with self._lock:
            for idx in gpus:
                if not 0 <= idx < len(self.fake.devices):
                    continue
                profile = self.profile or self._profiles.get(idx, DEFAULT_PROFILE)
                self.fake.attach_process(
                    idx, pid, profile, name=default_name(argv), cmdline=" ".join(argv)
                )
                done.append((idx, pid))
        return done

    def detach(self, attached: Iterable[tuple[int, int]]) -> None:
        with self._lock:
            for idx, pid in attached:
                self.fake.detach_process(idx, pid)


def spec_dict(spec: RunSpec) -> dict[str, object]:
    # Its fields are plain values (no nested dataclass), so no deep copy (``asdict``) is needed.
    d = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    d["argv"] = list(spec.argv)
    d["env"] = dict(spec.env)
    d["tags"] = dict(spec.tags)
    return d


def record_refused(
    store: RunStore, spec: RunSpec, backend: str, message: str, *, sweep: str | None = None
) -> int:
    """A row for a run refused before it could be queued (an unknown backend, a bad request),
    so that it shows in ``costmeter runs`` with its reason."""
    now = time.time()
    return store.insert(
        name=spec.name or default_name(spec.argv),
        backend=backend,
        spec=spec_dict(spec),
        status=RunState.FAILED.value,
        created=now,
        ended=now,
        host=socket.gethostname(),
        command_key=command_key(spec.argv, spec.gpus),
        sweep=sweep,
        tags=dict(spec.tags),
        gpus=[],
        pids=[],
        message=message,
    )


def fresh_dir(root: Path, run_id: int) -> Path:
    """``<root>/<id>-<time>``: ids start again in a new database, directories must not."""
    base = f"{run_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = root / base
    n = 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    return path
