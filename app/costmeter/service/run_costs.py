"""Glue between the run rows, their samples and the cost formula; and estimates before a run.

``cost_of_run`` reads what the store attributes to a run and prices it with
``costmeter.cost.run_cost``; ``estimate_for`` is what ``costmeter run`` prints before it starts
and what the desktop app's launch dialog shows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from costmeter import progress
from costmeter.cost.pricing import Pricing
from costmeter.cost.run_cost import (
    Estimate,
    GpuTick,
    RunCost,
    RunDeviceUse,
    RunUsage,
    estimate_cost,
    forecast_total,
    format_cost,
    price_run,
)
from costmeter.cost.run_estimate import estimate_allocation
from costmeter.runs.commands import command_key
from costmeter.store import Store
from costmeter.store.runs import ESTIMATED, MEASURED, RunRow, RunSamples, RunStore


def usage_from_samples(samples: RunSamples, cpu_seconds: float, duration_s: float) -> RunUsage:
    devices = tuple(
        RunDeviceUse(d.host, d.index, d.uuid, d.name, tuple(GpuTick(*r) for r in d.rows))
        for d in samples.devices
    )
    return RunUsage(
        duration_s=duration_s,
        devices=devices,
        cpu_seconds=cpu_seconds,
        cpu_count=samples.cpu_count,
        host=samples.host,
    )


def cost_of_run(
    store: RunStore,
    row: RunRow,
    pricing: Pricing,
    *,
    tracked_cpu_s: float | None = None,
    now: float | None = None,
) -> RunCost:
    """The run's cost from its start to its end (or to ``now`` while it runs).

    CPU time is the larger of what the recorder sampled and what the launcher measured itself
    (both read the same counters; each may miss the last moments). When neither could read the
    run's processes at all (it ended before the first reading), the run is charged the cores it
    reserved (``spec.cpus``) for its duration rather than nothing.

    A scheduler's job (``row.job``, a Slurm run) is charged what the job's processes used on
    its node; when no sample of that node covers the run at all, the cost is an estimate from
    its elapsed time, allocated GPUs and their price (``costmeter.cost.run_estimate``).
    """
    end = now if row.ended is None and now is not None else row.ended
    samples = store.samples(row, end)
    duration = max(0.0, samples.end - samples.start)
    if row.job and (samples.sampled_s <= 0 or samples.processes == 0):
        return _estimate(store, row, samples, duration, pricing)
    measured = [v for v in (samples.cpu_seconds, tracked_cpu_s) if v is not None]
    reserved = duration * _reserved_cpus(row)
    cpu = max(measured) if measured else reserved
    cost = price_run(usage_from_samples(samples, cpu, duration), pricing)
    if row.job and duration > 0 and samples.sampled_s < PARTLY_SAMPLED * duration:
        where = samples.hostname or row.node or row.host
        cost = replace(
            cost,
            note=(
                f"Samples of {where} cover {samples.sampled_s / duration:.0%} of this run: "
                "its cost counts what they show."
            ),
        )
    return cost


#: A job's run whose node's samples cover less than this share of it gets a note saying so.
PARTLY_SAMPLED = 0.9


def _reserved_cpus(row: RunRow) -> float:
    try:
        return float(row.spec.get("cpus", 1.0) or 1.0)
    except (TypeError, ValueError):
        return 1.0


def _estimate(
    store: RunStore, row: RunRow, samples: RunSamples, elapsed: float, pricing: Pricing
) -> RunCost:
    node = row.node or row.host or "its node"
    hostname = samples.hostname
    if hostname is None:
        why = (
            f"no Costmeter agent, exporter or Prometheus source reports node {node}, so no "
            f"sample shows what job {row.job} used there."
        )
    elif samples.sampled_s <= 0:
        why = (
            f"no sample of {hostname} covers this run (its agent or source did not report "
            f"while job {row.job} ran)."
        )
    else:
        why = (
            f"the samples of {hostname} cover this run but show no process of job {row.job} "
            "(its source reports no processes, or the job ran none on a GPU there)."
        )
    said = row.allocated_gpus is not None
    gpus = row.allocated_gpus if row.allocated_gpus is not None else _requested_gpus(row)
    return estimate_allocation(
        elapsed_s=elapsed,
        gpus=gpus,
        gpus_said=said,
        gpu_name=store.gpu_model(hostname) if hostname is not None else None,
        cpus=_reserved_cpus(row),
        node=node,
        why=why,
        pricing=pricing,
    )


def _requested_gpus(row: RunRow) -> int:
    value = row.spec.get("gpus", 0)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return len(row.gpus)


def cost_columns(cost: RunCost) -> dict[str, object]:
    """The run row's columns for a priced run (``RunStore.update``)."""
    return {
        "cost": cost.cost,
        "energy_kwh": cost.energy_kwh,
        "gpu_seconds": cost.gpu_seconds,
        "cpu_seconds": cost.cpu_seconds,
        "currency": cost.currency,
        "cost_basis": ESTIMATED if cost.estimated else MEASURED,
        "cost_note": cost.note,
    }


def reprice_estimated(store: RunStore, pricing: Pricing) -> list[int]:
    """Price again every finished run whose cost is an estimate; those whose node's samples
    now cover them (an agent that sent its buffer late, a source backfilled) get the measured
    cost. Returns their ids. Called where runs are listed or managed (``costmeter runs``, the
    run service as it starts)."""
    done = []
    for row in store.estimated_runs():
        if row.currency not in (None, pricing.currency):
            continue  # priced in another currency: leave it as it was
        cost = cost_of_run(store, row, pricing)
        if not cost.estimated:
            store.update(row.id, **cost_columns(cost))
            done.append(row.id)
    return done


def estimate_for(
    store: RunStore, argv: Sequence[str], gpus: int, pricing: Pricing, *, limit: int = 20
) -> Estimate:
    """The expected cost of a run of ``argv`` from the last ``limit`` succeeded runs of the same
    command (same normalised argv and GPU count)."""
    costs = store.past_costs(command_key(argv, gpus), currency=pricing.currency, limit=limit)
    return estimate_cost(costs, pricing.currency)


def launch_estimates(
    store: Store, argvs: Sequence[Sequence[str]], gpus: int, pricing: Pricing
) -> list[Estimate]:
    """``estimate_for`` each command of a launch form (one per sweep point)."""
    runs = store.runs()
    return [estimate_for(runs, argv, gpus, pricing) for argv in argvs]


def estimate_run_cost(
    db_path: str | os.PathLike[str], argv: Sequence[str], gpus: int, pricing: Pricing
) -> Estimate:
    """``estimate_for`` on a database file (opened and closed here): for a launch dialog."""
    with RunStore.open(db_path) as store:
        return estimate_for(store, argv, gpus, pricing)


#: The budget is checked against the forecast only from this fraction done on (start-up costs
#: make earlier forecasts too high).
FORECAST_FROM = 0.2


@dataclass
class LiveRun:
    """A run's figures for a progress display: cost so far, progress, ETA, forecast."""

    run_id: int
    elapsed_s: float
    cost: RunCost
    #: Share done (0..1) from its progress reports, or None without them.
    fraction: float | None = None
    eta_s: float | None = None
    forecast: float | None = None
    step: int | None = None
    total: int | None = None


def live_figures(
    store: RunStore,
    row: RunRow,
    pricing: Pricing,
    *,
    tracked_cpu_s: float | None = None,
    now: float | None = None,
) -> LiveRun:
    now = time.time() if now is None else now
    cost = cost_of_run(store, row, pricing, tracked_cpu_s=tracked_cpu_s, now=now)
    out = LiveRun(row.id, row.duration_s or 0.0, cost)
    if row.started is not None and row.ended is None:
        out.elapsed_s = max(0.0, now - row.started)
    if row.run_dir:
        points = progress.read_progress(Path(row.run_dir) / progress.FILE_NAME)
        if points:
            last = points[-1]
            out.step, out.total, out.fraction = last.step, last.total, last.fraction
            out.eta_s = progress.eta(points, now) if row.ended is None else 0.0
            out.forecast = forecast_total(cost.cost, out.fraction)
    return out


def budget_reason(figures: LiveRun, budget: float, currency: str) -> str | None:
    """Why a run must stop for its budget (cost so far, or forecast from FORECAST_FROM done)."""

    def money(v: float) -> str:
        return format_cost(v, currency)

    if figures.cost.cost > budget:
        return (
            f"Stopped: its cost so far, {money(figures.cost.cost)}, passed its budget of "
            f"{money(budget)}."
        )
    frac = figures.fraction
    forecast = figures.forecast
    if forecast is not None and frac is not None and frac >= FORECAST_FROM and forecast > budget:
        return (
            f"Stopped: at {frac:.0%} done it is on course to cost {money(forecast)}, "
            f"over its budget of {money(budget)}."
        )
    return None
