"""``costmeter run -- CMD ARGS...``: run a command, sample the machine meanwhile, say its cost.

Prints the estimate from past runs of the same command first, streams the run's output, and at
the end a summary (duration, GPU-hours, energy, cost beside the estimate). Exits with the run's
exit code (128 + N when a signal N ended it), 130 after Ctrl-C, 2 when it could not be queued.
"""

from __future__ import annotations

import argparse

from costmeter.advice.rules.storage import size_text
from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.dry_run import check_format, dry_run
from costmeter.cli.run_session import (
    Session,
    UsageError,
    _Reported,
    command_of,
    gpus_problem,
    open_session,
    refuse,
    spec_from,
    wait_with_signals,
)
from costmeter.core import CostmeterError
from costmeter.core.units import format_duration, format_energy_kwh
from costmeter.cost.prediction import FIT
from costmeter.cost.run_cost import format_cost
from costmeter.plugin_api import RunState
from costmeter.runs.commands import default_name
from costmeter.runs.messages import shell_exit_code
from costmeter.service.run_prediction import describe
from costmeter.store.runs import RunRow


def run(args: argparse.Namespace) -> int:
    try:
        argv = command_of(args)
        spec = spec_from(args, argv)
        check_format(args)
    except UsageError as exc:
        say(str(exc))
        return 2
    problem = gpus_problem(args)
    if args.dry_run:
        if problem is not None:
            say(problem)
            return 2
        return dry_run(args, [(spec.name or default_name(spec.argv), {}, spec)])
    if problem is not None:
        refuse(resolve_db(args, load_config_from(args)), spec, args.backend or "local", problem)
        return 2
    try:
        session = open_session(args, first_spec=spec)
    except _Reported:
        return 2
    except CostmeterError as exc:
        say(str(exc))
        return 2
    try:
        estimate = session.service.estimate(spec.argv, spec.gpus)
        say(f"estimated cost: {estimate.describe()}.")
        predicted = session.service.predict(spec)
        if predicted.method == FIT:
            say(f"predicted: {describe(predicted, session.service.pricing.currency)}.")
        run_id = session.service.submit(spec)
        wait_with_signals(session)
        row = session.service.row(run_id)
    finally:
        session.close()
    if row is None:  # pragma: no cover - the row was written at submit
        return 1
    for line in summary_lines(session, row, estimate.describe()):
        say(line)
    if session.interrupted and row.status == RunState.CANCELLED:
        return 130
    if row.exit_code is None and row.status != RunState.SUCCEEDED:
        return 2 if row.started is None else 1
    return shell_exit_code(row.exit_code)


def summary_lines(session: Session, row: RunRow, estimate: str) -> list[str]:
    currency = row.currency or session.config.pricing().currency
    how = {
        "succeeded": "succeeded",
        "failed": "failed",
        "cancelled": "was cancelled",
        "lost": "was lost",
    }.get(row.status, row.status)
    head = f"run {row.id} ({row.name}) {how}"
    if row.exit_code is not None:
        head += f" with exit code {row.exit_code}"
    lines = [head + "."]
    if row.message:
        lines.append(row.message)
    if row.started is None:
        return lines
    gpus = (
        ("on GPU " if len(row.gpus) == 1 else "on GPUs ") + ", ".join(f"#{i}" for i in row.gpus)
        if row.gpus
        else "no GPU placed"
    )
    lines.append(f"  duration {seconds_text(row.duration_s or 0.0)}, {gpus}")
    if row.cost is None:
        lines.append("  its cost could not be worked out (see the messages above).")
        return lines
    lines.append(
        f"  GPU-hours {(row.gpu_seconds or 0.0) / 3600:.4f}; "
        f"CPU time {seconds_text(row.cpu_seconds or 0.0)}; "
        f"energy {energy_text(row.energy_kwh or 0.0)}"
    )
    money = format_cost(row.cost, currency)
    if row.estimated:
        lines.append(f"  cost ~{money} est.; estimated before: {estimate}")
    else:
        lines.append(f"  cost {money}; estimated before: {estimate}")
    if row.job:
        lines.append(f"  job {row.job}" + (f" on {row.node}" if row.node else ""))
    if row.cost_note:
        lines.append(f"  {row.cost_note}")
    if row.storage_bytes is not None:
        keep = format_cost(row.storage_cost or 0.0, currency)
        lines.append(
            f"  outputs {size_text(row.storage_bytes)} in {row.storage_files or 0} files: "
            f"{keep}/month to keep (storage, apart from the cost above)"
        )
    return lines


def seconds_text(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else format_duration(s)


def energy_text(kwh: float) -> str:
    """Three significant digits below 1 kWh, in Wh or mWh (a short run uses a fraction of a Wh)."""
    if kwh >= 1:
        return format_energy_kwh(kwh)
    if kwh >= 1e-4 or kwh == 0:
        return f"{kwh * 1000:.3g} Wh"
    return f"{kwh * 1e6:.3g} mWh"
