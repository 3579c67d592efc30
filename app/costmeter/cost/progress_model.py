"""A run's duration from its progress: start-up + steps x seconds per step.

Runs that report progress (``costmeter.progress``) say how many steps they made and how fast.
When a parameter of the command gives the number of steps (``total`` is ``epochs`` or a fixed
multiple of it in every past run), or every run made the same number, the new run's steps are
known before it starts, and its duration is::

    duration = start-up + steps x seconds per step

with the start-up (the run's time outside its steps: imports, data loading) and the seconds per
step the medians over the past runs (robust to one slow run). Its error is measured by leaving
each run out in turn (the fit is then compared with the power law on the same footing), and the
range is Student's t x that error in log space, widened by the spread of the runs' time per step
in proportion to the share of the new run that its steps take. The cost is the past runs'
median cost per second x the duration, its range from the same leave-one-out errors of the
cost.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from costmeter.cost.least_squares import t_quantile

#: Steps and a parameter are "proportional" when their ratio varies less than this.
_SAME_RATIO = 1e-3
#: Parameters that say how a run is spread, never how many steps it makes.
_NOT_STEPS = frozenset({"gpus", "nproc"})


@dataclass(frozen=True, slots=True)
class StepRun:
    """A past run with its progress: duration, cost, steps made, seconds per step."""

    duration_s: float
    cost: float
    steps: float
    step_s: float
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class ProgressFit:
    duration_s: float
    duration_low: float
    duration_high: float
    cost: float
    low: float
    high: float
    #: Mean squared leave-one-out error of log(duration), to compare with the power law.
    mean_press: float
    runs: int
    basis: str


def steps_for(runs: Sequence[StepRun], wanted: dict[str, float]) -> tuple[float, str] | None:
    """The new run's steps and how they were found, or None when no parameter gives them."""
    steps = [r.steps for r in runs]
    for name in sorted(wanted):
        if name in _NOT_STEPS or wanted[name] <= 0:
            continue
        if any(r.values.get(name, 0) <= 0 for r in runs):
            continue
        ratios = [r.steps / r.values[name] for r in runs]
        if len({r.values[name] for r in runs}) > 1 and max(ratios) - min(ratios) <= (
            _SAME_RATIO * max(ratios)
        ):
            ratio = statistics.median(ratios)
            how = (
                f"steps = {name}" if abs(ratio - 1) < _SAME_RATIO else f"steps = {ratio:g} x {name}"
            )
            return ratio * wanted[name], how
    if max(steps) - min(steps) <= _SAME_RATIO * max(steps):
        return statistics.median(steps), "the same steps in every run"
    return None


def progress_fit(
    runs: Sequence[StepRun], wanted: dict[str, float], min_runs: int
) -> ProgressFit | None:
    """The start-up + steps model, or None with too few runs or no way to know the steps."""
    n = len(runs)
    if n < min_runs:
        return None
    found = steps_for(runs, wanted)
    if found is None:
        return None
    steps, how = found
    startup = [r.duration_s - r.steps * r.step_s for r in runs]
    per_step = [r.step_s for r in runs]
    rates = [r.cost / r.duration_s for r in runs]
    d_err, c_err = [], []
    for i, r in enumerate(runs):
        rest = [j for j in range(n) if j != i]
        guess = statistics.median(startup[j] for j in rest) + r.steps * statistics.median(
            per_step[j] for j in rest
        )
        if guess <= 0:
            return None
        d_err.append(math.log(r.duration_s) - math.log(guess))
        if r.cost > 0:
            c_err.append(
                math.log(r.cost) - math.log(statistics.median(rates[j] for j in rest) * guess)
            )
    t = t_quantile(max(1, n - 2))
    duration = statistics.median(startup) + steps * statistics.median(per_step)
    if duration <= 0:
        return None
    press = sum(e * e for e in d_err) / n
    # The past runs' own errors, plus the spread of their time per step scaled to the share of
    # the new run its steps take (a run of 400 steps extrapolated from runs of 2 to 8).
    share = steps * statistics.median(per_step) / duration
    spread = share**2 * statistics.variance(math.log(x) for x in per_step) * (1 + 1 / n)
    half = t * math.sqrt(press + spread)
    rate = statistics.median(rates)
    cost = rate * duration
    c_half = t * math.sqrt(sum(e * e for e in c_err) / len(c_err) + spread) if c_err else 0.0
    basis = (
        f"from the progress of {n} past runs of this command: {statistics.median(startup):.1f} s "
        f"start-up + {steps:g} steps ({how}) x {statistics.median(per_step):.3g} s per step"
    )
    return ProgressFit(
        duration_s=duration,
        duration_low=duration * math.exp(-half),
        duration_high=duration * math.exp(half),
        cost=cost,
        low=cost * math.exp(-c_half),
        high=cost * math.exp(c_half),
        mean_press=press,
        runs=n,
        basis=basis,
    )
