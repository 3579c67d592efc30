"""``costmeter sweep --grid lr=0.1,0.01 --max-parallel 2 -- python train.py --lr {lr}``.

Every combination of the grids' values is one run (``{NAME}`` in the command is replaced by the
value); up to ``--max-parallel`` run at once, at most ``--per-gpu`` on one GPU. Output lines are
prefixed with the run's name; a table of all runs closes it. Exit code: 0 when every run
succeeded, 1 when one did not, 130 after Ctrl-C, 2 when the sweep could not start.
"""

from __future__ import annotations

import argparse
import time

from costmeter.cli.common import load_config_from, resolve_db, say
from costmeter.cli.dry_run import check_budget, check_format, dry_run
from costmeter.cli.run_cmd import energy_text, seconds_text
from costmeter.cli.run_session import (
    UsageError,
    _Reported,
    command_of,
    gpus_problem,
    open_session,
    refuse,
    wait_with_signals,
)
from costmeter.cli.scaling_table import scaling_text
from costmeter.cli.sweep_points import sweep_specs
from costmeter.cli.table import render
from costmeter.core import CostmeterError
from costmeter.cost.run_cost import format_cost
from costmeter.plugin_api import RunSpec, RunState
from costmeter.runs.commands import default_name
from costmeter.store.runs import RunRow


def run(args: argparse.Namespace) -> int:
    try:
        argv = command_of(args)
        if not args.grid:
            raise UsageError("Give at least one --grid NAME=V1,V2,... for the sweep to vary.")
        if args.max_parallel < 1:
            raise UsageError(f"--max-parallel must be at least 1, not {args.max_parallel}.")
        if args.per_gpu < 1:
            raise UsageError(f"--per-gpu must be at least 1, not {args.per_gpu}.")
        base = args.name or default_name(argv)
        points, specs = sweep_specs(args, argv, base)
        check_format(args)
    except (UsageError, CostmeterError) as exc:
        say(str(exc))
        return 2
    sweep = f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    problem = gpus_problem(args)
    planned = [(p.name, dict(p.values), s) for p, s in zip(points, specs, strict=True)]
    if args.dry_run:
        if problem is not None:
            say(problem)
            return 2
        return dry_run(args, planned, max_parallel=args.max_parallel)
    if problem is None and not check_budget(
        args, planned, backend=args.backend or "local", sweep=sweep, max_parallel=args.max_parallel
    ):
        return 2
    if problem is not None:
        db = resolve_db(args, load_config_from(args))
        for spec in specs:
            refuse(db, spec, args.backend or "local", problem, sweep=sweep)
        return 2
    try:
        session = open_session(
            args,
            first_spec=specs[0],
            max_parallel=args.max_parallel,
            per_gpu=args.per_gpu,
            stop_on_failure=args.stop_on_failure,
            prefix_output=True,
        )
    except _Reported:
        return 2
    except CostmeterError as exc:
        say(str(exc))
        return 2
    try:
        say(
            f"sweep {sweep}: {len(specs)} runs, at most {args.max_parallel} at once"
            f"{_per_gpu(args, specs)}."
        )
        ids = [session.service.submit(spec, sweep=sweep) for spec in specs]
        wait_with_signals(session)
        rows = [session.service.row(i) for i in ids]
        seen = session.service.queue.pool.max_runs_per_gpu
        parallel = session.service.queue.max_parallel_seen
    finally:
        session.close()
    done = [r for r in rows if r is not None]
    currency = session.config.pricing().currency
    print(summary_table(done, currency))
    total = sum(r.cost or 0.0 for r in done)
    ok = sum(1 for r in done if r.status == RunState.SUCCEEDED)
    say(
        f"{ok} of {len(done)} runs succeeded; total cost {format_cost(total, currency)}"
        f"; at most {parallel} ran at once" + (f", {seen} on one GPU." if seen else ".")
    )
    for r in done:
        if r.status != RunState.SUCCEEDED and r.message:
            say(f"[{r.name}] {r.message}")
    scaling = scaling_text(done, currency) if isinstance(args.nproc_per_node, str) else None
    if scaling is not None:
        print(scaling)
    if session.interrupted:
        return 130
    return 0 if ok == len(done) else 1


def _per_gpu(args: argparse.Namespace, specs: list[RunSpec]) -> str:
    if not specs or specs[0].gpus == 0:
        return ""
    n = specs[0].gpus
    return f", {n} GPU{'s' if n != 1 else ''} each, at most {args.per_gpu} per GPU"


def summary_table(rows: list[RunRow], currency: str) -> str:
    headers = ("id", "name", "status", "exit", "duration", "on GPUs", "energy", "cost")
    body = []
    for r in rows:
        body.append(
            (
                str(r.id),
                r.name,
                r.status,
                "" if r.exit_code is None else str(r.exit_code),
                "" if r.duration_s is None else seconds_text(r.duration_s),
                ",".join(f"#{i}" for i in r.gpus) or "-",
                "" if r.energy_kwh is None else energy_text(r.energy_kwh),
                "" if r.cost is None else format_cost(r.cost, currency),
            )
        )
    return render(headers, body, numeric={0, 3, 4, 6, 7})
