"""A sweep's runs: the grid's values put into the command and into ``--nproc-per-node {n}``.

``costmeter sweep --grid n=1,2 --nproc-per-node {n} -- python -m costmeter.examples.digits_ddp``
varies the number of processes, an option rather than part of the command: the placeholder is
expanded with the command's (a grid must be used in one or the other), and each value is checked
like the option's own.
"""

from __future__ import annotations

import argparse

from costmeter.cli.run_session import UsageError, spec_from
from costmeter.core.bounds import NPROC, BoundError
from costmeter.plugin_api import RunSpec
from costmeter.runs.commands import GridPoint, expand_grid, parse_grid


def sweep_specs(
    args: argparse.Namespace, argv: list[str], base: str
) -> tuple[list[GridPoint], list[RunSpec]]:
    """Every point of the sweep and its RunSpec (UsageError / GridError for bad input)."""
    grids = [parse_grid(g) for g in args.grid]
    nproc = getattr(args, "nproc_per_node", None)
    if not isinstance(nproc, str):
        points = expand_grid(argv, grids, prefix=base)
        return points, [spec_from(args, list(p.argv), name=p.name) for p in points]
    # The option's placeholder rides along as a last argument, then comes off again.
    expanded = expand_grid([*argv, nproc], grids, prefix=base)
    points, specs = [], []
    for point in expanded:
        value = point.argv[-1]
        try:
            n = int(NPROC.parse(value, "--nproc-per-node"))
        except BoundError as exc:
            raise UsageError(str(exc)) from None
        run_argv = list(point.argv[:-1])
        point_args = argparse.Namespace(**{**vars(args), "nproc_per_node": n})
        points.append(GridPoint(point.name, tuple(run_argv), point.values))
        specs.append(spec_from(point_args, run_argv, name=point.name))
    return points, specs
