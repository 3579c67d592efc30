"""What the rules share: the GPUs to look at (alone or within a run), their targets, and the
memory a GPU's processes hold (from the process view, else from the board's memory used)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from costmeter.advice.facts import AdviceFacts, DeviceFacts, RunFacts, Series
from costmeter.advice.gpu_memory import reserved_estimate
from costmeter.advice.model import Target
from costmeter.advice.stats import (
    gib,
    known_percentile,
    percentile,
    step_s,
    stretches_of,
    within,
)
from costmeter.advice.thresholds import Thresholds

#: How "held" memory was measured, for the card's evidence line (short: it sits in a column).
FROM_PROCESSES = "its processes (NVML)"
FROM_REPORTED = "memory used - reserve"
FROM_ESTIMATE = "memory used - est. reserve"


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
        gpu = f"GPU {self.dev.index} ({short_name(self.dev.name)})"
        if self.run is None:
            return gpu
        return f"run {self.run.id} ({self.run.name}) on {gpu}"


def short_name(name: str) -> str:
    return name.replace("NVIDIA ", "").replace("GeForce ", "") or "unknown model"


def subjects(facts: AdviceFacts) -> Iterator[Subject]:
    window = max(1.0, facts.end - facts.start)
    for dev in facts.devices:
        yield Subject(dev, None, max(window, dev.seconds))
    for run in facts.runs:
        for dev in run.devices:
            yield Subject(dev, run, window)


def has_process_view(dev: DeviceFacts) -> bool:
    return bool(dev.held_mem.known())


def held_series(dev: DeviceFacts) -> Series:
    """Bytes held on the GPU at each sample: by its processes when they were sampled, else the
    board's memory used minus the driver's reserve (exporters and imported logs have no
    process view)."""
    if has_process_view(dev):
        return dev.held_mem
    reserved = dev.memory_reserved
    if reserved is None:
        reserved = reserved_estimate(dev.memory_total, dev.name)
    used = dev.mem_used

    def compute() -> Series:
        # max(0.0, v - reserved), unknown (NaN) kept: NaN is the one value unequal to itself.
        values = tuple(
            [(v - reserved if v - reserved > 0.0 else 0.0) if v == v else v for v in used.values]
        )
        return Series(used.ts, values)

    # One Series per reserve, so what is worked out from it is kept too (see Series.cached).
    return used.cached(("held", reserved), compute)


def held_basis(dev: DeviceFacts) -> str:
    """Which evidence "held" stands on, in words for the card: the processes' memory, or (no
    process view) the board's memory used minus the driver's reserve, reported or estimated."""
    if has_process_view(dev):
        return FROM_PROCESSES
    return FROM_REPORTED if dev.memory_reserved is not None else FROM_ESTIMATE


def held_gib(dev: DeviceFacts) -> float:
    """Median memory held, GiB (0 when nothing was sampled)."""
    held = held_series(dev)
    return gib(known_percentile(held, 50)) if held.known() else 0.0


def held_between(dev: DeviceFacts, spans: list[tuple[float, float]]) -> float:
    """Median memory held (GiB) during ``spans`` (0 when nothing was sampled then)."""
    s = held_series(dev)
    vals = [v for v, inside in zip(s.values, within(s.ts, spans), strict=True) if inside and v == v]
    return gib(percentile(vals, 50)) if vals else 0.0


def peak_held_gib(dev: DeviceFacts) -> float | None:
    values = held_series(dev).known()
    return gib(max(values)) if values else None


def in_use(dev: DeviceFacts, t: Thresholds) -> bool:
    """Something holds real memory on the GPU (more than a bare CUDA context)."""
    return held_gib(dev) * 1024.0 >= t.idle_held_mib


def peak_mem_pct(dev: DeviceFacts) -> float | None:
    if not dev.memory_total:
        return None
    values = dev.mem_used.known()
    return max(values) / dev.memory_total * 100.0 if values else None


def busy_share(dev: DeviceFacts, t: Thresholds) -> float:
    """Share of the utilisation samples at or above ``idle_util_pct``."""
    cut = t.idle_util_pct

    def compute() -> float:  # ``share`` with the test inlined: one comparison per sample
        data = dev.gpu_util.known()
        return sum([v >= cut for v in data]) / len(data) if data else 0.0

    return dev.gpu_util.cached(("busy_share", cut), compute)


def quiet_stretches(dev: DeviceFacts, t: Thresholds) -> list[tuple[float, float]]:
    cut = t.idle_util_pct
    util = dev.gpu_util
    quiet = util.cached(
        ("quiet", cut), lambda: tuple(stretches_of(util, [v < cut for v in util.values]))
    )
    return list(quiet)


def did_nothing(dev: DeviceFacts, t: Thresholds) -> bool:
    """The GPU did essentially nothing over its stretch (idle-gpu's test)."""
    return bool(dev.gpu_util.known()) and busy_share(dev, t) <= t.idle_max_busy_share


def is_bursty(dev: DeviceFacts, t: Thresholds) -> bool:
    """The GPU works in bursts: busy some of the time, with pauses of ``idle_minutes`` or
    more, holding memory throughout (a serving replica between requests), and its work has
    not ended (then it is kept-allocation's case)."""
    if did_nothing(dev, t) or not in_use(dev, t) or kept_span(dev, t) is not None:
        return False
    if busy_share(dev, t) > t.burst_max_busy_share:
        return False
    return any(b - a >= t.idle_minutes * 60.0 for a, b in quiet_stretches(dev, t))


def kept_span(dev: DeviceFacts, t: Thresholds) -> tuple[float, float] | None:
    """The quiet stretch that runs to the end of ``dev``'s samples when it marks the end of
    the work: at least ``kept_minutes`` long and ``kept_lull_factor`` times longer than every
    pause before it. None otherwise."""
    quiet = quiet_stretches(dev, t)
    if not quiet:
        return None
    a, b = quiet[-1]
    last = dev.gpu_util.ts[-1] if dev.gpu_util.ts else dev.end
    if b < last or b - a < t.kept_minutes * 60.0 or a <= dev.start + step_s(dev.gpu_util):
        return None  # not up to the end, too short, or quiet from the start (idle-gpu's case)
    before = max((y - x for x, y in quiet[:-1]), default=0.0)
    return (a, b) if b - a >= t.kept_lull_factor * before else None


def copies_that_fit(dev: DeviceFacts, t: Thresholds) -> int | None:
    """How many copies of what runs on the GPU its memory holds (peak held x the fit
    factor each); None when the board's size or the memory held is unknown."""
    peak = peak_held_gib(dev)
    board = dev.memory_gb
    if peak is None or board is None:
        return None
    return math.floor(board / max(peak * t.headroom_fit_factor, 1e-9))
