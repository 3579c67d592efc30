"""Scaling of a sweep over ``--nproc-per-node``: per N, duration, speed-up, cost and cost per
unit of work, from the sweep's finished runs (Qt-free: the CLI prints it, the app may show it,
the ``scaling`` advice rule reads the same points).

Work is what a run reported through ``costmeter.progress`` as its total (epochs or steps: the
last report's ``total``, else its last step); a run that reported nothing is one unit. Runs with
the same N (a grid that also varies something else) count by their medians. Only succeeded runs
with a cost count: a failed run did not do the work.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from costmeter import progress
from costmeter.advice.facts import ScalePoint, SweepScaling
from costmeter.cost.run_cost import format_cost
from costmeter.plugin_api import RunState
from costmeter.store.runs import RunRow


@dataclass(frozen=True)
class ScaleLine:
    """One N of the table, beside the smallest N (the baseline)."""

    point: ScalePoint
    speedup: float
    cost_ratio: float


def nproc_of(row: RunRow) -> int:
    spec = row.spec if isinstance(row.spec, dict) else {}
    try:
        return max(1, int(spec.get("nproc_per_node") or 1))
    except (TypeError, ValueError):
        return 1


def work_of(row: RunRow) -> tuple[float, str]:
    """Units of work the run did and their name, from its progress file."""
    if row.run_dir:
        last = progress.latest(Path(row.run_dir) / progress.FILE_NAME)
        if last is not None:
            done = last.total if last.total else last.step
            if done and done > 0:
                return float(done), "steps"
    return 1.0, "run"


def points_of(rows: Iterable[RunRow]) -> tuple[ScalePoint, ...]:
    """One point per N over the succeeded, priced runs of ``rows``, smallest N first."""
    groups: dict[int, list[tuple[RunRow, float, str]]] = {}
    for row in rows:
        if row.status != RunState.SUCCEEDED or row.cost is None or row.duration_s is None:
            continue
        work, unit = work_of(row)
        groups.setdefault(nproc_of(row), []).append((row, work, unit))
    points = []
    for n in sorted(groups):
        members = groups[n]
        units = {u for _, _, u in members}
        unit = units.pop() if len(units) == 1 else "run"
        works = [w for _, w, _ in members] if unit != "run" else [1.0]
        points.append(
            ScalePoint(
                nproc=n,
                gpus=max(len(r.gpus) for r, _, _ in members),
                runs=len(members),
                duration_s=statistics.median(r.duration_s or 0.0 for r, _, _ in members),
                cost=statistics.median(r.cost or 0.0 for r, _, _ in members),
                work=statistics.median(works),
                unit=unit,
            )
        )
    return _same_unit(points)


def _same_unit(points: list[ScalePoint]) -> tuple[ScalePoint, ...]:
    """Cost per unit compares only in one unit: when the Ns disagree, a run is the unit."""
    if len({p.unit for p in points}) > 1:
        points = [
            ScalePoint(p.nproc, p.gpus, p.runs, p.duration_s, p.cost, 1.0, "run") for p in points
        ]
    return tuple(points)


def lines_of(points: Sequence[ScalePoint]) -> list[ScaleLine]:
    """Speed-up and cost ratio of each N against the smallest one."""
    if not points:
        return []
    base = points[0]
    out = []
    for p in points:
        speedup = base.duration_s / p.duration_s if p.duration_s > 0 else 0.0
        ratio = p.cost_per_unit / base.cost_per_unit if base.cost_per_unit > 0 else 0.0
        out.append(ScaleLine(p, speedup, ratio))
    return out


def sweep_scaling(rows: Sequence[RunRow]) -> list[SweepScaling]:
    """Every sweep in ``rows`` whose succeeded runs used two or more values of N."""
    by_sweep: dict[str, list[RunRow]] = {}
    for row in rows:
        if row.sweep:
            by_sweep.setdefault(row.sweep, []).append(row)
    found = []
    for sweep, members in sorted(by_sweep.items()):
        points = points_of(members)
        if len(points) < 2:
            continue
        dearest = max(points, key=lambda p: p.cost_per_unit).nproc
        target = next((r.id for r in members if nproc_of(r) == dearest), None)
        found.append(
            SweepScaling(
                sweep=sweep,
                host=next((r.node or r.host or "" for r in members), ""),
                start=min(r.started or r.created or 0.0 for r in members),
                end=max(r.ended or 0.0 for r in members),
                points=points,
                run_id=target,
            )
        )
    return found


def processes_text(p: ScalePoint) -> str:
    """How many: "2 GPUs" for a run on GPUs, "2 procs" for processes on the CPU."""
    if p.gpus > 0:
        return f"{p.nproc} GPU{'s' if p.nproc != 1 else ''}"
    return f"{p.nproc} proc{'s' if p.nproc != 1 else ''}"


def sentence(line: ScaleLine) -> str:
    """The ratios in words: "2 procs: 1.70x faster for 1.18x the cost" (per unit of work)."""
    pace = (
        f"{line.speedup:.2f}x faster"
        if line.speedup >= 1
        else f"{1 / line.speedup:.2f}x slower"
        if line.speedup > 0
        else "of unknown speed"
    )
    return f"{processes_text(line.point)}: {pace} for {line.cost_ratio:.2f}x the cost"


def table_rows(points: Sequence[ScalePoint], currency: str) -> list[tuple[str, ...]]:
    """Rows of the CLI's table: N, runs, duration, speed-up, cost, cost per unit."""
    out: list[tuple[str, ...]] = []
    for line in lines_of(points):
        p = line.point
        out.append(
            (
                str(p.nproc),
                str(p.runs),
                f"{p.duration_s:.1f} s",
                f"{line.speedup:.2f}x",
                format_cost(p.cost, currency),
                f"{format_cost(p.cost_per_unit, currency)}/{p.unit.rstrip('s')}",
                f"{line.cost_ratio:.2f}x",
            )
        )
    return out


def headers(points: Sequence[ScalePoint]) -> tuple[str, ...]:
    base = points[0].nproc if points else 1
    return ("N", "runs", "duration", "speed-up", "cost", "cost per unit", f"vs N={base}")
