"""A run's duration and cost predicted from past runs of the same command family.

A *family* is a command with its numbers taken out: ``train.py --epochs 5 --lr 0.1`` and
``train.py --epochs 20 --lr 0.01`` are one family with the parameters ``epochs`` and ``lr``
(``--opt N``, ``--opt=N`` and positional numbers alike; a sweep's ``{grid}`` values are numbers
in its runs' commands). Runs on no GPU and runs on GPUs are different families; within the
latter the GPU count is a parameter, and so is ``--nproc-per-node``.

Over a family's past runs the model is a power law, fitted by least squares in log space::

    log(duration) = a + sum_i b_i log(x_i)  [+ one term per other GPU model]

over the parameters that vary between the runs. Which of them enter is chosen by the
leave-one-out error (PRESS) over every subset, so a seed that varies but does not matter drops
out. A fit needs at least ``k + 2`` runs for the ``k`` columns of the varying parameters (and
``MIN_RUNS``). The cost is fitted the same way with the same parameters (a direct fit, not a
price x the predicted time: the cost of a run also holds its energy and CPU time, which need not
scale like its wall time; and the range is then the cost's own). The range is the two-sided
90 % prediction interval from the residuals (Student's t from the table in ``least_squares``).

Beside the power law, ``time = a + b x`` (start-up + time per unit of one parameter,
``affine_model``) is tried for each varying parameter and kept when its leave-one-out error is
smaller. Runs that reported progress give a third model, start-up + steps x seconds per step
(``progress_model``), used instead when a parameter gives the steps, unless the power law
predicts the past runs clearly better (``PREFER_STEPS``): it stands on measured time per step,
where the power law may have dropped a parameter whose effect the past runs' range hid.

Fallbacks, each said in the basis: too few runs to fit -> the median of the past runs of the
exact same command, their min..max as the range -> nothing.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import shlex
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from costmeter.cost.affine_model import affine_fit
from costmeter.cost.least_squares import Fit, fit, fit_ones
from costmeter.cost.progress_model import StepRun, progress_fit

#: No fit on fewer runs than this, whatever the number of parameters.
MIN_RUNS = 3
#: At most this many varying parameters are tried (the ones with the most distinct values).
MAX_PARAMETERS = 8
#: The start-up + steps model is used unless the power law's leave-one-out RMS error is this
#: many times smaller.
PREFER_STEPS = 2.0
#: Where a number was in a family's command.
SLOT = "{#}"
FIT = "fit"
MEDIAN = "median"
NONE = "none"
MODEL = "GPU model"
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_GPUS = re.compile(r"^gpus=(\d+) ")


@dataclass(frozen=True, slots=True)
class Family:
    """A command's family key and its numeric parameters by name (shared: do not change)."""

    key: str
    values: Mapping[str, float]


@functools.lru_cache(maxsize=4096)
def command_family(command_key: str) -> Family:
    """The family of a command key (``costmeter.runs.commands.command_key``: ``gpus=N`` then
    the normalised argv): every token that is a number becomes ``{#}``, named after the option
    before it (``--epochs 5`` -> ``epochs``) or its position (``arg2``). The GPU count is the
    parameter ``gpus``; a run on no GPU is of another family than one on GPUs. Cached: a
    prediction asks for the same keys again and again."""
    m = _GPUS.match(command_key)
    gpus = int(m.group(1)) if m else 0
    rest = command_key[m.end() :] if m else command_key
    try:
        tokens = shlex.split(rest)
    except ValueError:
        tokens = rest.split()
    out = ["gpu" if gpus else "cpu"]
    values: dict[str, float] = {"gpus": float(gpus)} if gpus else {}
    for i, tok in enumerate(tokens):
        if i > 0 and _NUMBER.match(tok):
            prev = tokens[i - 1]
            name = prev.lstrip("-") if prev.startswith("-") and not _NUMBER.match(prev) else ""
            name = name or f"arg{i}"
            if name in values:
                name = f"{name}{i}"
            values[name] = float(tok)
            out.append(SLOT)
        else:
            out.append(tok)
    return Family(shlex.join(out), values)


def key_prefix(command_key: str) -> str:
    """The part of a command key after ``gpus=N`` up to its first number: every key of the
    same family starts with it (for the store to narrow its search)."""
    m = _GPUS.match(command_key)
    rest = command_key[m.end() :] if m else command_key
    try:
        tokens = shlex.split(rest)
    except ValueError:
        return ""
    head = []
    for i, tok in enumerate(tokens):
        if i > 0 and _NUMBER.match(tok):
            break
        head.append(tok)
    return shlex.join(head)


@dataclass(frozen=True, slots=True)
class PastRun:
    """A finished run as the prediction sees it."""

    command_key: str
    duration_s: float
    cost: float
    gpu_model: str | None = None
    nproc: int = 1
    #: From its progress file, when it wrote one: the steps it made and seconds per step.
    steps: float | None = None
    step_s: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The run to predict: its command key, the GPU model it will likely run on (None: the one
    most past runs used), its processes per node."""

    command_key: str
    gpu_model: str | None = None
    nproc: int = 1


@dataclass(frozen=True, slots=True)
class Prediction:
    """The predicted duration and cost, the cost's range, and what they stand on."""

    duration_s: float | None
    cost: float | None
    low: float | None
    high: float | None
    basis: str
    #: Past runs it stands on.
    runs: int
    #: ``fit``, ``median`` or ``none``.
    method: str
    duration_low: float | None = None
    duration_high: float | None = None

    @property
    def known(self) -> bool:
        return self.method != NONE and self.cost is not None

    def to_json(self) -> dict[str, object]:
        """What ``--dry-run --format json`` prints as a run's ``predicted``."""
        return {
            "duration_s": self.duration_s,
            "cost": self.cost,
            "low": self.low,
            "high": self.high,
            "basis": self.basis,
        }


@dataclass(frozen=True, slots=True)
class _Group:
    """A parameter as columns of the design matrix (one for a number, one per other level for
    the GPU model), and those columns for the target."""

    name: str
    columns: tuple[tuple[float, ...], ...]
    target: tuple[float, ...]
    #: The parameter it stands for ("" for the GPU model).
    key: str = ""


def predict(target: Target, past: Sequence[PastRun]) -> Prediction:
    """The prediction for ``target`` from ``past`` (runs of any command: those of its family
    are used; cost in one currency)."""
    family = command_family(target.command_key)
    same = [
        r
        for r in past
        if r.duration_s > 0
        and math.isfinite(r.duration_s)
        and r.cost >= 0
        and math.isfinite(r.cost)
        and command_family(r.command_key).key == family.key
    ]
    fitted, why = _fit_family(target, family, same)
    if fitted is not None:
        return fitted
    exact = [r for r in same if r.command_key == target.command_key and r.nproc == target.nproc]
    if exact:
        costs = [r.cost for r in exact]
        durations = [r.duration_s for r in exact]
        n = len(exact)
        what = "the one past run" if n == 1 else f"the median of {n} past runs"
        span = "its cost" if n == 1 else "their lowest to highest cost"
        return Prediction(
            duration_s=statistics.median(durations),
            cost=statistics.median(costs),
            low=min(costs),
            high=max(costs),
            basis=f"{what} of this exact command ({why}); range: {span}",
            runs=n,
            method=MEDIAN,
            duration_low=min(durations),
            duration_high=max(durations),
        )
    basis = "no past run of this command"
    if same:
        basis += f" with these values ({why})"
    return Prediction(None, None, None, None, basis, 0, NONE)


def _fit_family(
    target: Target, family: Family, runs: Sequence[PastRun]
) -> tuple[Prediction | None, str]:
    """The fitted prediction (the power law, or start-up + steps from the runs' progress when
    that predicts the past runs better), or None and the words why not."""
    n = len(runs)
    if n < MIN_RUNS:
        return None, _too_few(n, MIN_RUNS)
    wanted = {**family.values, "nproc": float(target.nproc)}
    seen = [{**command_family(r.command_key).values, "nproc": float(r.nproc)} for r in runs]
    power, why = _power_law(target, runs, wanted, seen)
    step_runs = [
        StepRun(r.duration_s, r.cost, r.steps, r.step_s, v)
        for r, v in zip(runs, seen, strict=True)
        if r.steps and r.step_s and r.step_s > 0
    ]
    steps = progress_fit(step_runs, wanted, MIN_RUNS)
    # The steps model stands on measured seconds per step, so it is kept unless the power law
    # predicts the past runs clearly better (a leave-one-out RMS error under half of its).
    if steps is not None and (power is None or steps.mean_press <= PREFER_STEPS**2 * power[1]):
        pred = Prediction(
            duration_s=steps.duration_s,
            cost=steps.cost,
            low=steps.low,
            high=steps.high,
            basis=steps.basis,
            runs=steps.runs,
            method=FIT,
            duration_low=steps.duration_low,
            duration_high=steps.duration_high,
        )
        return pred, ""
    return (power[0], "") if power is not None else (None, why)


def _power_law(
    target: Target,
    runs: Sequence[PastRun],
    wanted: dict[str, float],
    seen: Sequence[dict[str, float]],
) -> tuple[tuple[Prediction, float] | None, str]:
    """The power law's prediction and its mean squared leave-one-out error, or why not."""
    n = len(runs)
    varying = [k for k in sorted(wanted) if len({v.get(k) for v in seen}) > 1]
    usable = [k for k in varying if wanted[k] >= 0 and all(v.get(k, -1) >= 0 for v in seen)]
    notes = [f"{k} is ignored (below 0 in a run)" for k in varying if k not in usable]
    usable.sort(key=lambda k: -len({v[k] for v in seen}))
    groups = [_number_group(k, wanted, seen) for k in usable[:MAX_PARAMETERS]]
    model_group, model_note = _model_group(target, runs)
    if model_group is not None:
        groups.append(model_group)
    if model_note:
        notes.append(model_note)
    columns = sum(len(g.target) for g in groups)
    needed = max(MIN_RUNS, columns + 2)
    if n < needed:
        names = ", ".join(g.name for g in groups)
        return None, _too_few(n, needed) + f" for what varies: {names}"
    best: tuple[Fit, tuple[_Group, ...]] | None = None
    log_d = [math.log(r.duration_s) for r in runs]
    for size in range(len(groups) + 1):
        for chosen in itertools.combinations(groups, size):
            f = fit(_rows(chosen, n), log_d) if chosen else fit_ones(log_d)
            if f is None:
                continue
            if best is None or f.press < best[0].press * (1 - 1e-9):
                best = (f, chosen)
    if best is None:
        return None, "the runs' values do not allow a fit"
    dur_fit, chosen = best
    x0 = (1.0, *(v for g in chosen for v in g.target))
    centre, lo, hi = dur_fit.interval(x0)
    duration = math.exp(centre)
    rows = _rows(chosen, n) if chosen else None
    cost, low, high = _cost(runs, rows, x0, duration, math.exp(lo), math.exp(hi))
    basis = _basis(n, chosen, varying, dur_fit, wanted, seen, notes)
    pred = Prediction(duration, cost, low, high, basis, n, FIT, math.exp(lo), math.exp(hi))
    found = (pred, dur_fit.press / n)
    for k in usable[:MAX_PARAMETERS]:
        affine = _affine(runs, k, wanted, seen, notes)
        if affine is not None and affine[1] < found[1] * (1 - 1e-9):
            found = affine
    return found, ""


def _affine(
    runs: Sequence[PastRun],
    name: str,
    wanted: dict[str, float],
    seen: Sequence[dict[str, float]],
    notes: list[str],
) -> tuple[Prediction, float] | None:
    """The start-up + time per unit of ``name`` form (``affine_model``) and its error."""
    xs = [v[name] for v in seen]
    d = affine_fit(xs, [r.duration_s for r in runs], wanted[name])
    if d is None:
        return None
    paid = [i for i, r in enumerate(runs) if r.cost > 0]
    c = affine_fit([xs[i] for i in paid], [runs[i].cost for i in paid], wanted[name])
    if not paid:
        cost, low, high = 0.0, 0.0, 0.0
    elif c is not None:
        cost, low, high = c.centre, c.low, c.high
    else:
        rate = statistics.median(r.cost / r.duration_s for r in runs)
        cost, low, high = rate * d.centre, rate * d.low, rate * d.high
    n = len(runs)
    text = (
        f"fitted on {n} past runs of this command: time = {d.intercept:.3g} s + "
        f"{d.slope:.3g} s x {name}"
    )
    lo, hi = min(xs), max(xs)
    extra = [x for x in notes if not x.startswith("extrapolated")]
    if not lo <= wanted[name] <= hi:
        extra.append(f"extrapolated: {name} {wanted[name]:g} is outside {lo:g}..{hi:g}")
    basis = "; ".join([text, *extra])
    pred = Prediction(d.centre, cost, low, high, basis, n, FIT, d.low, d.high)
    return pred, d.mean_press


def _number_group(name: str, wanted: dict[str, float], seen: Sequence[dict[str, float]]) -> _Group:
    """log(x), or log(x + 1) when a value is 0 (a seed 0, a count of 0 warm-up steps)."""
    shift = 1.0 if wanted[name] == 0 or any(v[name] == 0 for v in seen) else 0.0
    label = f"({name}+1)" if shift else name
    return _Group(
        label,
        tuple((math.log(v[name] + shift),) for v in seen),
        (math.log(wanted[name] + shift),),
        name,
    )


def _too_few(n: int, needed: int) -> str:
    return f"too few to fit: {n} past run{'s' if n != 1 else ''} of this command, {needed} needed"


def _rows(chosen: Sequence[_Group], n: int) -> list[tuple[float, ...]]:
    return [(1.0, *(v for g in chosen for v in g.columns[i])) for i in range(n)]


def _model_group(target: Target, runs: Sequence[PastRun]) -> tuple[_Group | None, str]:
    """The GPU model as a factor when the runs differ in it (the target's model is the base
    level, so its columns are all 0); and a note when the target's model is a guess."""
    models = [r.gpu_model or "an unknown GPU" for r in runs]
    counts = Counter(models)
    if len(counts) < 2:
        return None, ""
    note = ""
    base = target.gpu_model
    if base not in counts:
        common = counts.most_common(1)[0][0]
        note = (
            f"as on {common}, the GPU most past runs used"
            if base is None
            else f"{base} never ran it: as on {common}, the GPU most past runs used"
        )
        base = common
    levels = sorted(m for m in counts if m != base)
    columns = tuple(tuple(1.0 if m == lvl else 0.0 for lvl in levels) for m in models)
    return _Group(MODEL, columns, tuple(0.0 for _ in levels)), note


def _cost(
    runs: Sequence[PastRun],
    rows: list[tuple[float, ...]] | None,
    x0: tuple[float, ...],
    duration: float,
    d_low: float,
    d_high: float,
) -> tuple[float, float, float]:
    """The cost fitted like the duration (same columns) on the runs that cost something; when
    too few did, their median cost per second x the predicted duration and its range. ``rows``
    None: the intercept alone."""
    paid = [i for i, r in enumerate(runs) if r.cost > 0]
    if not paid:
        return 0.0, 0.0, 0.0
    log_c = [math.log(runs[i].cost) for i in paid]
    f = fit_ones(log_c) if rows is None else fit([rows[i] for i in paid], log_c)
    if f is not None:
        centre, lo, hi = f.interval(x0)
        return math.exp(centre), math.exp(lo), math.exp(hi)
    rate = statistics.median(r.cost / r.duration_s for r in runs)
    return rate * duration, rate * d_low, rate * d_high


def _basis(
    n: int,
    chosen: Sequence[_Group],
    varying: Sequence[str],
    f: Fit,
    wanted: dict[str, float],
    seen: Sequence[dict[str, float]],
    notes: list[str],
) -> str:
    head = f"fitted on {n} past runs of this command: "
    if chosen:
        parts, col = [], 1
        for g in chosen:
            parts.append(g.name if g.name == MODEL else f"{g.name}^{f.coef[col]:.2f}")
            col += len(g.target)
        terms = " x ".join(parts)
        text = head + f"time ∝ {terms}"
        if f.r2 is not None:
            text += f" (R² {f.r2:.2f})"
    elif varying:
        text = head + f"its time does not follow {', '.join(varying)} (their typical time)"
    else:
        text = head + "the same command each time (their typical time)"
    for g in chosen:
        if g.key:
            lo = min(v[g.key] for v in seen)
            hi = max(v[g.key] for v in seen)
            if not lo <= wanted[g.key] <= hi:
                notes.append(f"extrapolated: {g.key} {wanted[g.key]:g} is outside {lo:g}..{hi:g}")
    return "; ".join([text, *notes])
