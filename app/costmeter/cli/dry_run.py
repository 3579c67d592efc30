"""``costmeter run/sweep --dry-run``: the predicted duration, cost and range of each run and of
the whole, launching nothing (no backend, no GPU, no recorder: the database is only read); and
the sweep's ``--budget`` check before launching.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.run_session import UsageError
from costmeter.cli.table import render
from costmeter.core import CostmeterError
from costmeter.cost.run_cost import format_cost
from costmeter.plugin_api import RunSpec
from costmeter.service.run_prediction import PlanPrediction, predict_plan_in, seconds
from costmeter.service.run_support import record_refused
from costmeter.store.runs import RunStore

Point = tuple[str, Mapping[str, str], RunSpec]


def check_format(args: argparse.Namespace) -> None:
    """``--format json`` only means something with ``--dry-run``."""
    if getattr(args, "format", "text") == "json" and not args.dry_run:
        raise UsageError("--format json goes with --dry-run (a launched run prints its output).")


def dry_run(args: argparse.Namespace, points: Sequence[Point], *, max_parallel: int = 1) -> int:
    """Print the predictions; exit code 0 (2 when the database cannot be read)."""
    config = load_config_from(args)
    db = resolve_db(args, config)
    pricing = config.pricing()
    try:
        plan = predict_plan_in(db, points, pricing, max_parallel=max_parallel)
    except CostmeterError as exc:
        say(str(exc))
        return 2
    budget = points[0][2].budget if points else None
    if args.format == "json":
        out = plan.to_json()
        if budget is not None:
            refused, warned = plan.over_budget(budget)
            out["total"] = {
                **plan.total().to_json(),
                "budget": budget,
                "over_budget": refused,
                "may_exceed_budget": warned,
            }
        print(json.dumps(out, indent=2))
        return 0
    say(f"dry run: nothing launched; predicted from the past runs in {db}.")
    print(plan_table(plan))
    for run in plan.runs:
        say(f"[{run.name}] {run.prediction.basis}")
    for line in total_lines(plan):
        say(line)
    if budget is not None:
        for line in budget_lines(plan, budget):
            say(line)
    return 0


def plan_table(plan: PlanPrediction) -> str:
    cur = plan.currency
    body = []
    for r in plan.runs:
        p = r.prediction
        known = p.known
        body.append(
            (
                r.name,
                seconds(p.duration_s or 0.0) if known else "-",
                format_cost(p.cost or 0.0, cur) if known else "-",
                f"{format_cost(p.low or 0.0, cur)} to {format_cost(p.high or 0.0, cur)}"
                if known
                else "-",
                p.method,
            )
        )
    return render(("run", "duration", "cost", "range", "from"), body, numeric={1, 2})


def total_lines(plan: PlanPrediction) -> list[str]:
    total = plan.total()
    cur = plan.currency
    if not total.predicted_runs:
        return [f"total: {total.basis}."]
    return [
        f"total: {format_cost(total.cost or 0.0, cur)} (range "
        f"{format_cost(total.low or 0.0, cur)} to {format_cost(total.high or 0.0, cur)}) for "
        f"{total.predicted_runs} of {total.runs} runs; {seconds(total.duration_s or 0.0)} of "
        f"run time, {seconds(total.wall_s or 0.0)} wall time with at most {plan.max_parallel} "
        "at once.",
        f"  ({total.basis})",
    ]


def budget_lines(plan: PlanPrediction, budget: float) -> list[str]:
    refused, warned = plan.over_budget(budget)
    money = format_cost(budget, plan.currency)
    lines = []
    if refused:
        lines.append(f"over the budget of {money} as predicted: {', '.join(refused)}.")
    if warned:
        lines.append(f"may pass the budget of {money} (the range reaches over it): "
                     f"{', '.join(warned)}.")  # fmt: skip
    return lines


def check_budget(
    args: argparse.Namespace,
    points: Sequence[Point],
    *,
    backend: str,
    sweep: str,
    max_parallel: int,
) -> bool:
    """Before a sweep with ``--budget`` launches: False (after saying which runs and recording
    each as refused) when a run's central predicted cost is over the budget; a warning only
    when just the high end of its range is."""
    budget = points[0][2].budget if points else None
    if budget is None:
        return True
    config = load_config_from(args)
    db = resolve_db(args, config)
    plan = predict_plan_in(db, points, config.pricing(), max_parallel=max_parallel)
    refused, warned = plan.over_budget(budget)
    money = format_cost(budget, plan.currency)
    by_name = {r.name: r.prediction for r in plan.runs}
    if refused:
        detail = "; ".join(
            f"{n}: {format_cost(by_name[n].cost or 0.0, plan.currency)}" for n in refused
        )
        message = (
            f"Refused: {len(refused)} run(s) of the sweep are predicted to cost more than the "
            f"budget of {money} each ({detail}). Nothing was launched; raise --budget or "
            "shrink the grid (costmeter sweep --dry-run shows the predictions)."
        )
        say(message)
        _record(db, [p[2] for p in points], backend, message, sweep)
        return False
    if warned:
        say(
            f"warning: the predicted range of {', '.join(warned)} reaches over the budget of "
            f"{money}; such a run is stopped once it passes it."
        )
    return True


def _record(db: Path, specs: Sequence[RunSpec], backend: str, message: str, sweep: str) -> None:
    try:
        with RunStore.open(db) as store:
            for spec in specs:
                record_refused(store, spec, backend, message, sweep=sweep)
    except CostmeterError as exc:
        say(str(exc))
