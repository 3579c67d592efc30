"""A batch job's cost when no sample of its node covers it: elapsed time x the GPUs the scheduler
allocated x the GPU's hourly price, plus the cores it reserved at the core-hour price.

Used for a Slurm run on a node where no Costmeter agent, exporter or Prometheus source reports
(or none did while it ran). The result is marked ``estimated`` with the words why, and is
replaced by the measured cost once samples of that window arrive (``service.run_costs``).
Energy is not estimated: the note says so.
"""

from __future__ import annotations

from dataclasses import replace

from costmeter.core.model import DeviceUsage
from costmeter.core.units import format_duration
from costmeter.cost.ledger import format_money, price_device
from costmeter.cost.pricing import Pricing
from costmeter.cost.run_cost import RunCost


def estimate_allocation(
    *,
    elapsed_s: float,
    gpus: int,
    gpus_said: bool,
    gpu_name: str | None,
    cpus: float,
    node: str,
    why: str,
    pricing: Pricing,
) -> RunCost:
    """The estimate, priced like a GPU used the whole time: the price row of ``gpu_name`` (the
    node's GPU model, when the store knows it); else the price table's price for an unknown GPU
    when it is above 0, else the table's cheapest GPU (a lower bound), named in the note.

    ``gpus_said``: the scheduler said how many GPUs it allocated (else ``gpus`` is what the run
    asked for). ``why``: the sentence that says why no samples apply.
    """
    elapsed = max(0.0, elapsed_s)
    count = max(0, gpus)
    cur = pricing.currency
    hourly, priced = gpu_hourly(gpu_name, pricing)
    device = price_device(
        DeviceUsage(
            host=node,
            index=-1,
            uuid="",
            name=gpu_name or "",
            seconds=elapsed * count,
            idle_seconds=0.0,
            avg_util=None,
            energy_j=0.0,
            energy_measured_j=0.0,
        ),
        pricing,
    )
    hours = elapsed * count / 3600.0
    device = replace(device, hourly_price=hourly, asset_cost=hours * hourly, price_source=priced)
    cores = max(0.0, cpus)
    cpu_s = elapsed * cores
    cpu_cost = cpu_s / 3600.0 * pricing.cpu_core_hour
    counted = (
        "allocated" if gpus_said else "requested (the scheduler did not say what it allocated)"
    )
    note = (
        f"Estimated: {why} So the cost is {format_duration(elapsed)} elapsed x {count} GPU(s) "
        f"{counted} at {format_money(hourly, cur)}/h ({priced}), plus {cores:g} reserved "
        f"core(s) at {format_money(pricing.cpu_core_hour, cur)}/core-hour; energy is not "
        "included. "
        "Samples of the node for this time, when they arrive, replace it."
    )
    return RunCost(
        currency=cur,
        devices=(device,) if count else (),
        gpu_seconds=elapsed * count,
        cpu_seconds=cpu_s,
        cpu_cost=cpu_cost,
        cpu_energy_kwh=0.0,
        estimated=True,
        note=note,
    )


def gpu_hourly(gpu_name: str | None, pricing: Pricing) -> tuple[float, str]:
    """The hourly price an estimate uses for one GPU, and the words for where it comes from."""
    price = pricing.gpu_price(gpu_name or "")
    if price.row is not None:
        return price.hourly, f"the {price.row.model} row of the price table"
    what = f"{gpu_name} has no price row" if gpu_name else "the node's GPU model is unknown"
    if pricing.unknown_gpu_hourly > 0 or not pricing.gpu_rows:
        return pricing.unknown_gpu_hourly, f"{what}; the price for an unknown GPU"
    cheapest = min(pricing.gpu_rows, key=lambda r: (r.hourly, r.model))
    return cheapest.hourly, (
        f"{what}; the price table's cheapest GPU, {cheapest.model}, so at least this"
    )
