"""``scaling``: a sweep over ``--nproc-per-node`` shows which N does a unit of work cheapest.

From the sweep's finished runs (``SweepScaling``: per N the median duration, cost and work),
the N with the lowest cost per unit of work is named, with the saving against the dearest N:
per run of the sweep's size, a one-off (the difference in cost per unit x the units one run
does). More processes finish sooner but pay for more hardware and for talking between ranks;
on a machine whose cores are already busy N = 2 can even be slower.
"""

from __future__ import annotations

from costmeter.advice.facts import AdviceFacts, ScalePoint, SweepScaling
from costmeter.advice.model import Action, Evidence, Recommendation, Savings, Target
from costmeter.advice.thresholds import Thresholds


def _who(p: ScalePoint) -> str:
    noun = "GPU" if p.gpus > 0 else "process"
    plural = "es" if noun == "process" else "s"
    return f"{p.nproc} {noun}{plural if p.nproc != 1 else ''}"


def scaling(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    out = []
    for sweep in facts.scaling:
        rec = _recommend(facts, sweep, t)
        if rec is not None:
            out.append(rec)
    return out


def _recommend(facts: AdviceFacts, s: SweepScaling, t: Thresholds) -> Recommendation | None:
    if len(s.points) < 2:
        return None
    cheapest = min(s.points, key=lambda p: p.cost_per_unit)
    dearest = max(s.points, key=lambda p: p.cost_per_unit)
    if dearest.cost_per_unit <= 0:
        return None
    share = 1.0 - cheapest.cost_per_unit / dearest.cost_per_unit
    if share < t.scaling_min_saving:
        return None
    unit = dearest.unit.rstrip("s")
    per_unit = dearest.cost_per_unit - cheapest.cost_per_unit
    work = dearest.work
    c = facts.currency
    savings = Savings(
        money_per_month=per_unit * work,
        currency=c,
        kwh_per_month=0.0,
        formula=(
            f"({dearest.cost_per_unit:.3g} - {cheapest.cost_per_unit:.3g}) {c}/{unit} x "
            f"{work:g} {unit}{'s' if work != 1 else ''} per run"
        ),
        once=True,
    )
    base = s.points[0]
    lines = []
    for p in s.points:
        speedup = base.duration_s / p.duration_s if p.duration_s > 0 else 0.0
        lines.append(
            (
                f"N = {p.nproc}",
                f"{p.duration_s:.1f} s ({speedup:.2f}x), {p.cost:.3g} {c}, "
                f"{p.cost_per_unit:.3g} {c}/{unit} over {p.runs} run{'s' if p.runs != 1 else ''}",
            )
        )
    values = {f"cost_per_unit_n{p.nproc}": p.cost_per_unit for p in s.points}
    values.update({"cheapest_n": float(cheapest.nproc), "saving_share": share})
    runs = sum(p.runs for p in s.points)
    return Recommendation(
        rule="scaling",
        title=(
            f"Run sweep {s.sweep} with {_who(cheapest)}: {share:.0%} less per {unit} than "
            f"with {_who(dearest)}"
        ),
        target=Target(host=s.host, sweep=s.sweep, run=s.run_id),
        evidence=Evidence(start=s.start, end=s.end, facts=tuple(lines), values=values),
        savings=savings,
        # Medians of the sweep's own runs, but often one run per N: timing noise on a shared
        # machine is of the order of the threshold.
        confidence=min(0.9, 0.4 + 0.1 * runs),
        action=Action(
            text=f"Use --nproc-per-node {cheapest.nproc} for this work.",
            kind="none",
        ),
        detail=(
            f"Measured on the sweep's {runs} finished runs: with {_who(cheapest)} a {unit} of "
            f"work costs {cheapest.cost_per_unit:.3g} {c}, with {_who(dearest)} "
            f"{dearest.cost_per_unit:.3g} {c}."
        ),
    )
