"""What the rules share: the GPUs to look at (alone or within a run) and their targets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from costmeter.advice.facts import AdviceFacts, DeviceFacts, RunFacts
from costmeter.advice.model import Target
from costmeter.advice.stats import gib, percentile
from costmeter.advice.thresholds import Thresholds


@dataclass(frozen=True, slots=True)
class Subject:
    """One GPU over a stretch: alone (``run`` None) or as one of a run's GPUs."""

    dev: DeviceFacts
    run: RunFacts | None
    #: The time the savings are scaled from: the whole window (cut to the recorded history),
    #: for a GPU as for a run: a one-hour run, or a GPU seen for one hour, in a day's window
    #: counts as an hour a day.
    window_s: float

    @property
    def target(self) -> Target:
        d, r = self.dev, self.run
        return Target(
            host=d.host,
            device=d.index,
            uuid=d.uuid,
            device_name=d.name,
            run=r.id if r else None,
            run_name=r.name if r else None,
            sweep=r.sweep if r else None,
        )

    @property
    def about(self) -> str:
        """Words for titles: "run 12 (train) on GPU 0 (A100)" or "GPU 0 (A100)"."""
        gpu = f"GPU {self.dev.index} ({_short(self.dev.name)})"
        if self.run is None:
            return gpu
        return f"run {self.run.id} ({self.run.name}) on {gpu}"


def _short(name: str) -> str:
    return name.replace("NVIDIA ", "").replace("GeForce ", "") or "unknown model"


def subjects(facts: AdviceFacts) -> Iterator[Subject]:
    window = max(1.0, facts.end - facts.start)
    for dev in facts.devices:
        yield Subject(dev, None, max(window, dev.seconds))
    for run in facts.runs:
        for dev in run.devices:
            yield Subject(dev, run, window)


def held_gib(dev: DeviceFacts) -> float:
    """Median memory held by processes, GiB (0 when no process was sampled)."""
    values = dev.held_mem.known()
    return gib(percentile(values, 50)) if values else 0.0


def in_use(dev: DeviceFacts, t: Thresholds) -> bool:
    """Some process holds real memory on the GPU (more than a bare CUDA context)."""
    return held_gib(dev) * 1024.0 >= t.idle_held_mib


def peak_mem_pct(dev: DeviceFacts) -> float | None:
    if not dev.memory_total:
        return None
    values = dev.mem_used.known()
    return max(values) / dev.memory_total * 100.0 if values else None
