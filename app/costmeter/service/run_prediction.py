"""Predictions before launching: per run from the past runs of its command family
(``costmeter.cost.prediction``), and for a sweep the totals and the schedule's wall time.

Used by ``costmeter run/sweep --dry-run``, the sweep's ``--budget`` check, the run service (which
records each run's prediction at submit, to compare with its outcome) and the launch dialog.
Reads the database only.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import os
import socket
import stat
import statistics
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from costmeter import progress
from costmeter.cost.prediction import (
    PastRun,
    Prediction,
    Target,
    command_family,
    key_prefix,
    predict,
)
from costmeter.cost.pricing import Pricing
from costmeter.cost.run_cost import format_cost
from costmeter.plugin_api import RunSpec
from costmeter.runs.commands import command_key
from costmeter.store import Store
from costmeter.store.runs import PastRow, RunRow, RunStore

#: Past runs of a family read for one prediction, newest first.
PAST_LIMIT = 200
#: The progress files of at most this many of them (the newest) are read.
PROGRESS_LIMIT = 50


def predict_spec(
    store: RunStore, spec: RunSpec, pricing: Pricing, *, host: str | None = None
) -> Prediction:
    """The prediction for one run from the runs in ``store`` (of the same currency). The GPU
    model a run on GPUs will likely get is that of ``host`` (default: this machine) when the
    store knows it."""
    key = command_key(spec.argv, spec.gpus)
    family = command_family(key).key
    rows = store.family_runs(key_prefix(key), currency=pricing.currency, limit=PAST_LIMIT)
    rows = [r for r in rows if command_family(r.command_key).key == family]
    rates = [_STEP_RATES.get(r.run_dir) for r in rows[:PROGRESS_LIMIT]]
    model = None
    if spec.gpus and any(r.gpu_model for r in rows):
        model = store.gpu_model(host or socket.gethostname())
    return _PREDICTIONS.get(Target(key, model, spec.nproc_per_node), rows, rates)


def past_runs(
    rows: Sequence[PastRow], rates: Sequence[tuple[float | None, float | None]]
) -> list[PastRun]:
    """The runs a prediction stands on: ``rows`` with the step rates of the first of them."""
    past = []
    for i, r in enumerate(rows):
        steps, step_s = rates[i] if i < len(rates) else (None, None)
        past.append(
            PastRun(r.command_key, r.duration_s, r.cost, r.gpu_model, r.nproc, steps, step_s)
        )
    return past


def step_rate(run_dir: str | None) -> tuple[float | None, float | None]:
    """The steps a finished run made and its seconds per step, from its progress file (between
    its first and last report); None, None without two reports."""
    if not run_dir:
        return None, None
    points = progress.read_progress(Path(run_dir) / progress.FILE_NAME)
    if len(points) < 2 or points[-1].step <= points[0].step:
        return None, None
    first, last = points[0], points[-1]
    return float(last.step), (last.time - first.time) / (last.step - first.step)


#: A progress file last changed at least this long before it is looked at is kept read: a
#: later change gives it a newer change time, which tells it apart.
SETTLED_NS = 2_000_000_000


class StepRates:
    """``step_rate`` of past runs' progress files, read once while a file stays the same (its
    inode, size, modification and change times): a run service predicts every run it queues
    from up to ``PROGRESS_LIMIT`` past runs' files. A missing file has no rate, as
    ``step_rate`` finds; a file is read again when it changed, or changed too recently for its
    times to tell a later change apart."""

    MAX_FILES = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, tuple[tuple[int, ...], tuple[float | None, float | None]]] = {}

    def get(self, run_dir: str | None) -> tuple[float | None, float | None]:
        if not run_dir:
            return None, None
        path = os.path.join(run_dir, progress.FILE_NAME)
        now = time.time_ns()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None, None
        except OSError:
            return step_rate(run_dir)
        same = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[0] == same:
            return known[1]
        rate = step_rate(run_dir)
        if stat.S_ISREG(st.st_mode) and max(st.st_mtime_ns, st.st_ctime_ns) < now - SETTLED_NS:
            with self._lock:
                if len(self._known) >= self.MAX_FILES:
                    self._known.clear()
                self._known[path] = (same, rate)
        return rate


class Predictions:
    """``predict`` answers by their inputs (a pure function): runs queued while no run of their
    family was priced since the last one are predicted from the same past runs."""

    SIZE = 32

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: OrderedDict[_PredictionKey, Prediction] = OrderedDict()

    def get(
        self,
        target: Target,
        rows: Sequence[PastRow],
        rates: Sequence[tuple[float | None, float | None]],
    ) -> Prediction:
        """``predict(target, past_runs(rows, rates))``, computed once per distinct input."""
        # 0.0 and -0.0 are equal keys but not always the same answer (a median of costs).
        if any(r.cost == 0 and math.copysign(1.0, r.cost) < 0 for r in rows):
            return predict(target, past_runs(rows, rates))
        key = (target, tuple(rows), tuple(rates))
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
                return known
        pred = predict(target, past_runs(rows, rates))
        with self._lock:
            self._known[key] = pred
            while len(self._known) > self.SIZE:
                self._known.popitem(last=False)
        return pred


_PredictionKey = tuple[Target, tuple[PastRow, ...], tuple[tuple[float | None, float | None], ...]]
_STEP_RATES = StepRates()
_PREDICTIONS = Predictions()


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: its name, its grid values and its prediction."""

    name: str
    params: dict[str, str]
    prediction: Prediction

    def to_json(self) -> dict[str, object]:
        return {"params": dict(self.params), "predicted": self.prediction.to_json()}


@dataclass(frozen=True)
class PlanTotal:
    """A plan's totals: run time (the runs' durations added), wall time, cost and range."""

    runs: int
    predicted_runs: int
    duration_s: float | None
    wall_s: float | None
    max_parallel: int
    cost: float | None
    low: float | None
    high: float | None
    basis: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PlanPrediction:
    """A sweep's (or one run's) predictions and their totals.

    The total's range is the sum of the runs' lows and highs: the runs of a sweep are predicted
    by one fitted model, so its errors move together rather than cancel (a sum assuming
    independent errors would be narrower and wrong when the model is off)."""

    runs: list[PlannedRun]
    currency: str
    max_parallel: int
    #: Wall time of the predicted runs scheduled K at once in launch order; None without any.
    wall_s: float | None
    unknown: list[str] = field(default_factory=list)

    @property
    def known(self) -> list[Prediction]:
        return [r.prediction for r in self.runs if r.prediction.known]

    def total(self) -> PlanTotal:
        known = self.known
        n = len(self.runs)
        if not known:
            basis = "no run could be predicted: no past run of these commands"
            return PlanTotal(n, 0, None, None, self.max_parallel, None, None, None, basis)
        basis = f"{len(known)} of {n} runs predicted; range: the sum of the runs' ranges"
        if self.unknown:
            basis += f"; not counted (no prediction): {', '.join(self.unknown)}"
        basis += f"; wall time with at most {self.max_parallel} at once"
        if self.max_parallel > 1:
            basis += " in launch order (free GPUs not checked)"
        return PlanTotal(
            runs=n,
            predicted_runs=len(known),
            duration_s=sum(p.duration_s or 0.0 for p in known),
            wall_s=self.wall_s,
            max_parallel=self.max_parallel,
            cost=sum(p.cost or 0.0 for p in known),
            low=sum(p.low or 0.0 for p in known),
            high=sum(p.high or 0.0 for p in known),
            basis=basis,
        )

    def to_json(self) -> dict[str, object]:
        return {"runs": [r.to_json() for r in self.runs], "total": self.total().to_json()}

    def over_budget(self, budget: float) -> tuple[list[str], list[str]]:
        """The runs whose predicted cost is over ``budget`` (refused), and those whose range
        only reaches over it (warned)."""
        refused = [r.name for r in self.runs if (r.prediction.cost or 0.0) > budget]
        warned = [
            r.name
            for r in self.runs
            if r.name not in refused and (r.prediction.high or 0.0) > budget
        ]
        return refused, warned


def schedule_wall(durations: Sequence[float], slots: int) -> float:
    """Wall time of ``durations`` run in order, each started on the first of ``slots`` to come
    free (the run queue's order: first in, first out)."""
    free = [0.0] * max(1, slots)
    end = 0.0
    for d in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + d)
        end = max(end, start + d)
    return end


def predict_plan(
    store: RunStore | None,
    points: Sequence[tuple[str, Mapping[str, str], RunSpec]],
    pricing: Pricing,
    *,
    max_parallel: int = 1,
    host: str | None = None,
) -> PlanPrediction:
    """Predictions for ``points`` (name, grid values, spec); ``store`` None: no database yet."""
    runs = []
    for name, params, spec in points:
        if store is None:
            pred = Prediction(None, None, None, None, "no past run of this command", 0, "none")
        else:
            pred = predict_spec(store, spec, pricing, host=host)
        runs.append(PlannedRun(name, dict(params), pred))
    durations = [r.prediction.duration_s or 0.0 for r in runs if r.prediction.known]
    wall = schedule_wall(durations, max_parallel) if durations else None
    unknown = [r.name for r in runs if not r.prediction.known]
    return PlanPrediction(runs, pricing.currency, max_parallel, wall, unknown)


def predict_plan_in(
    db_path: str | os.PathLike[str],
    points: Sequence[tuple[str, Mapping[str, str], RunSpec]],
    pricing: Pricing,
    *,
    max_parallel: int = 1,
) -> PlanPrediction:
    """``predict_plan`` on a database file; one that does not exist is not created."""
    if not Path(db_path).exists():
        return predict_plan(None, points, pricing, max_parallel=max_parallel)
    with RunStore.open(db_path) as store:
        return predict_plan(store, points, pricing, max_parallel=max_parallel)


def launch_predictions(
    store: Store,
    named_argvs: Sequence[tuple[str, Sequence[str]]],
    gpus: int,
    pricing: Pricing,
    *,
    max_parallel: int = 1,
) -> PlanPrediction:
    """``predict_plan`` for a launch form's runs (name, argv), through an open store (the
    launch dialog's reader thread)."""
    points: list[tuple[str, Mapping[str, str], RunSpec]] = [
        (name, {}, RunSpec(argv=tuple(argv), gpus=gpus)) for name, argv in named_argvs
    ]
    return predict_plan(store.runs(), points, pricing, max_parallel=max_parallel)


def describe_plan(plan: PlanPrediction) -> str:
    """The launch dialog's words: one run's prediction, or a sweep's total and wall time."""
    cur = plan.currency
    if len(plan.runs) == 1:
        pred = plan.runs[0].prediction
        if not pred.known:
            return f"Predicted: nothing yet ({pred.basis})."
        return f"Predicted: {describe(pred, cur)}."
    total = plan.total()
    if not total.predicted_runs:
        return f"Predicted: nothing yet ({total.basis})."
    money = format_cost(total.cost or 0.0, cur)
    span = f"{format_cost(total.low or 0.0, cur)} to {format_cost(total.high or 0.0, cur)}"
    first = next(r.prediction for r in plan.runs if r.prediction.known)
    text = (
        f"Predicted: {money} (range {span}) for {total.predicted_runs} of {total.runs} runs, "
        f"{seconds(total.wall_s or 0.0)} wall time with at most {plan.max_parallel} at once"
    )
    if plan.unknown:
        text += f" (no prediction for {', '.join(plan.unknown)})"
    return text + f"; the first: {first.basis}."


def describe(pred: Prediction, currency: str) -> str:
    """``12 s, $0.0012 (range $0.0010 to $0.0014); fitted on ...``, or the basis alone."""
    if not pred.known:
        return pred.basis
    money = format_cost(pred.cost or 0.0, currency)
    span = f"{format_cost(pred.low or 0.0, currency)} to {format_cost(pred.high or 0.0, currency)}"
    return f"{seconds(pred.duration_s or 0.0)}, {money} (range {span}); {pred.basis}"


def seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


@dataclass(frozen=True)
class Calibration:
    """How past predictions fared: the share of actual costs inside the predicted range and the
    median absolute error of the central prediction, in percent of the actual cost."""

    runs: int
    inside: float | None
    median_abs_pct: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "runs": self.runs,
            "inside_range": self.inside,
            "median_abs_error_pct": self.median_abs_pct,
        }

    def describe(self) -> str:
        if not self.runs:
            return "calibration: no finished run had a prediction yet."
        return (
            f"calibration over {self.runs} finished runs with a prediction: "
            f"{self.inside:.0%} of actual costs inside the predicted range, "
            f"median error {self.median_abs_pct:.1f} %."
        )


def calibration(pairs: Sequence[tuple[float, float, float, float]]) -> Calibration:
    """From (actual, predicted, low, high) costs; actual costs of 0 count for the range only."""
    if not pairs:
        return Calibration(0, None, None)
    inside = sum(1 for a, _, lo, hi in pairs if lo <= a <= hi) / len(pairs)
    errors = [abs(p - a) / a * 100 for a, p, _, _ in pairs if a > 0]
    return Calibration(len(pairs), inside, statistics.median(errors) if errors else None)


def calibration_of(rows: Sequence[RunRow]) -> Calibration:
    """The calibration of the finished, priced runs among ``rows`` that had a prediction."""
    pairs = [
        (r.cost, r.predicted_cost, r.predicted_low, r.predicted_high)
        for r in rows
        if r.status == "succeeded"
        and r.cost is not None
        and r.predicted_cost is not None
        and r.predicted_low is not None
        and r.predicted_high is not None
    ]
    return calibration(pairs)
