"""The per-run cost formula: GPU shares, the whole GPU, CPU time, forecasts and estimates."""

from __future__ import annotations

import dataclasses

import pytest

from costmeter.core.model import HostUsage
from costmeter.cost.pricing import load_default_pricing
from costmeter.cost.run_cost import (
    Estimate,
    GpuTick,
    RunDeviceUse,
    RunUsage,
    estimate_cost,
    forecast_total,
    gpu_share,
    price_run,
)

GIB = 1 << 30
A100 = "NVIDIA A100-SXM4-80GB"


def tick(**kw: object) -> GpuTick:
    base: dict[str, object] = dict(
        dt_s=1.0,
        energy_j=300.0,
        energy_measured=True,
        run_procs=1,
        run_mem=10 * GIB,
        run_sm=None,
        other_procs=0,
        other_mem=0,
        other_sm=None,
        holders=1,
    )
    base.update(kw)
    return GpuTick(**base)  # type: ignore[arg-type]


def owned_pricing():  # an owned GPU: energy is charged on top of the hourly price
    p = load_default_pricing()
    rows = tuple(dataclasses.replace(r, includes_energy=False) for r in p.gpu_rows)
    return p.replace(gpu_rows=rows, tariff_per_kwh=0.30, cpu_core_hour=0.05, cpu_tdp_w=100.0)


def test_whole_gpu_when_alone() -> None:
    assert gpu_share(tick()) == 1.0
    # Not on the GPU yet, nobody else there: reserved for this run (split between holders).
    assert gpu_share(tick(run_procs=0, run_mem=0)) == 1.0
    assert gpu_share(tick(run_procs=0, run_mem=0, holders=2)) == 0.5
    # Not placed on this GPU and not on it: nothing.
    assert gpu_share(tick(run_procs=0, run_mem=0, holders=0)) == 0.0
    # Not on it while others use it: nothing.
    assert gpu_share(tick(run_procs=0, run_mem=0, other_procs=1, other_mem=GIB)) == 0.0


def test_shared_gpu_by_memory_and_sm() -> None:
    by_memory = tick(run_mem=3 * GIB, other_procs=1, other_mem=1 * GIB)
    assert gpu_share(by_memory) == pytest.approx(0.75)
    with_sm = tick(run_mem=3 * GIB, other_procs=1, other_mem=1 * GIB, run_sm=20.0, other_sm=60.0)
    assert gpu_share(with_sm) == pytest.approx((0.75 + 0.25) / 2)
    unknown = tick(run_mem=None, other_procs=3, other_mem=None)
    assert gpu_share(unknown) == pytest.approx(0.25)


def test_price_run_whole_vs_shared_gpu() -> None:
    pricing = owned_pricing()
    hourly = pricing.gpu_price(A100).hourly
    whole = RunUsage(3600.0, (RunDeviceUse("h", 0, "u0", A100, (tick(dt_s=3600.0,
                     energy_j=3.6e6),)),), cpu_seconds=0.0, cpu_count=8)  # fmt: skip
    cost = price_run(whole, pricing)
    assert cost.gpu_hours == pytest.approx(1.0)
    # One hour of the GPU plus 1 kWh at the tariff.
    assert cost.gpu_cost == pytest.approx(hourly + 0.30)
    shared_tick = tick(dt_s=3600.0, energy_j=3.6e6, run_mem=GIB, other_procs=1, other_mem=3 * GIB)
    shared = dataclasses.replace(whole, devices=(RunDeviceUse("h", 0, "u0", A100, (shared_tick,)),))
    half = price_run(shared, pricing)
    assert half.gpu_hours == pytest.approx(0.25)
    assert half.gpu_cost == pytest.approx((hourly + 0.30) * 0.25)
    assert half.energy_kwh == pytest.approx(0.25)


def test_rental_price_does_not_charge_energy_twice() -> None:
    pricing = load_default_pricing()  # the shipped rows are rentals that include electricity
    use = RunUsage(3600.0, (RunDeviceUse("h", 0, "u0", A100, (tick(dt_s=3600.0,
                   energy_j=3.6e6),)),), cpu_seconds=0.0, cpu_count=8)  # fmt: skip
    cost = price_run(use, pricing)
    assert cost.gpu_cost == pytest.approx(pricing.gpu_price(A100).hourly)
    assert cost.energy_kwh == pytest.approx(1.0)


def test_cpu_only_run_costs_more_than_zero() -> None:
    pricing = owned_pricing()
    host = HostUsage("h", 8, 100.0, busy_core_seconds=200.0, cpu_energy_j=10_000.0,
                     cpu_energy_measured_j=10_000.0)  # fmt: skip
    use = RunUsage(100.0, (), cpu_seconds=50.0, cpu_count=8, host=host)
    cost = price_run(use, pricing)
    assert cost.gpu_cost == 0.0
    assert cost.cost > 0
    # 50 core-seconds at the core-hour price, plus a quarter of the host's CPU energy.
    energy_kwh = 10_000.0 / 4 / 3.6e6
    assert cost.cpu_energy_kwh == pytest.approx(energy_kwh)
    assert cost.cost == pytest.approx(50 / 3600 * 0.05 + energy_kwh * 0.30)
    # Without host energy, the TDP estimate: 50 core-s of 8 cores at 100 W.
    no_host = price_run(dataclasses.replace(use, host=None), pricing)
    assert no_host.cpu_energy_kwh == pytest.approx(100.0 * 50 / 8 / 3.6e6)


def test_forecast_and_estimate() -> None:
    assert forecast_total(1.0, 0.25) == pytest.approx(4.0)
    assert forecast_total(1.0, None) is None
    assert forecast_total(1.0, 0.0) is None
    est = estimate_cost([0.40, 0.42, 5.0], "USD")
    assert est == Estimate(0.42, 3, "USD")
    assert est.describe() == "about $0.42 (median of 3 past runs)"
    assert estimate_cost([0.0031], "USD").describe() == "about $0.0031 (from 1 past run)"
    assert estimate_cost([2.5], "USD").describe() == "about $2.50 (from 1 past run)"
    assert "no estimate" in estimate_cost([], "USD").describe()


def test_format_cost_keeps_two_significant_digits() -> None:
    from costmeter.cost.run_cost import format_cost

    assert format_cost(4.3, "USD") == "$4.30"
    assert format_cost(0.42, "USD") == "$0.42"
    assert format_cost(0.0031, "USD") == "$0.0031"
    assert format_cost(0.0000384, "USD") == "$0.000038"
    assert format_cost(0.0, "USD") == "$0.00"
