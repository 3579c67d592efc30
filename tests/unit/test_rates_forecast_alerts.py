"""Money per hour now, the month-end projection, and the alert watchers (all Qt-free)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from costmeter.core.model import DeviceSample, GpuProcess
from costmeter.cost.forecast import project_month_end
from costmeter.cost.pricing import load_default_pricing
from costmeter.cost.rates import gpu_state, gpu_states, rate_now
from costmeter.service.alerts import BudgetWatch, IdleAllocatedWatch
from costmeter.store.testing import device_infos, host_info, make_tick


def test_rate_now_adds_gpu_prices_energy_and_cores() -> None:
    pricing = load_default_pricing().replace(tariff_per_kwh=0.2)
    infos = {d.uuid: d for d in device_infos(n=2)}
    tick = make_tick(1000.0, devices=2, util=50.0, power_w=300.0, cpu_percent=25.0)
    assert tick.host_sample is not None
    rate = rate_now(infos, tick.devices, host_info(cpu_count=8), tick.host_sample, pricing)
    a100 = pricing.gpu_price("NVIDIA A100-SXM4-80GB")
    energy = 0.0 if a100.row is not None and a100.row.includes_energy else 300 * 0.2 / 1000
    host = 8 * pricing.cpu_core_hour + pricing.cpu_tdp_w * 0.25 * 0.2 / 1000
    assert rate.gpu_per_hour == pytest.approx(2 * (a100.hourly + energy))
    assert rate.host_per_hour == pytest.approx(host)
    assert rate.per_hour == pytest.approx(rate.gpu_per_hour + rate.host_per_hour)
    # busy GPUs are not idle; 75% of the cores are
    assert rate.idle_per_hour == pytest.approx(8 * pricing.cpu_core_hour * 0.75)
    assert rate.power_w == pytest.approx(600 + pricing.cpu_tdp_w * 0.25)


def test_idle_gpus_count_their_whole_rate_as_idle_and_lost_ones_nothing() -> None:
    pricing = load_default_pricing()
    infos = {d.uuid: d for d in device_infos(n=2)}
    tick = make_tick(1000.0, devices=2, util=1.0, power_w=60.0, lost=frozenset({1}))
    rate = rate_now(infos, tick.devices, None, None, pricing)
    assert rate.idle_per_hour == pytest.approx(rate.gpu_per_hour)
    assert rate.gpu_per_hour == pytest.approx(
        rate_now(infos, tick.devices[:1], None, None, pricing).per_hour
    )


def test_gpu_states() -> None:
    base = DeviceSample(uuid="u", index=0, ts=0.0, gpu_util=80.0)
    held = (GpuProcess(pid=1, used_memory=1),)
    assert gpu_state(base) == "busy"
    assert gpu_state(dataclasses.replace(base, gpu_util=2.0)) == "idle"
    assert gpu_state(dataclasses.replace(base, gpu_util=2.0, processes=held)) == "idle-allocated"
    assert gpu_state(dataclasses.replace(base, gpu_util=None)) == "idle"
    assert gpu_state(DeviceSample(uuid="u", index=0, ts=0.0, lost=True)) == "lost"
    counts = gpu_states([base, dataclasses.replace(base, gpu_util=0.0, processes=held)])
    assert counts == {"busy": 1, "idle": 0, "idle-allocated": 1, "lost": 0}


def test_month_projection_extends_the_daily_average() -> None:
    now = datetime(2026, 11, 21, 12, 0)  # 9.5 days left in November
    p = project_month_end(now, month_to_date=100.0, trailing_cost=70.0, trailing_days_observed=7)
    assert p.per_day == pytest.approx(10.0)
    assert p.month_end == pytest.approx(100.0 + 10.0 * 9.5)
    empty = project_month_end(now, 0.0, 0.0, 0.0)
    assert empty.month_end == 0.0 and empty.per_day == 0.0


def test_idle_allocated_watch_alerts_once_per_episode() -> None:
    watch = IdleAllocatedWatch(after_s=60)
    held = (GpuProcess(pid=42, used_memory=1),)
    idle = DeviceSample(uuid="u", index=0, ts=0.0, gpu_util=0.0, processes=held)
    names = {"u": "A100"}
    assert watch.update(0.0, [idle], names) == []
    assert watch.update(59.0, [idle], names) == []
    first = watch.update(60.0, [idle], names)
    assert len(first) == 1 and "42" in first[0].message and "A100" in first[0].message
    assert watch.update(3600.0, [idle], names) == []  # once per episode
    busy = dataclasses.replace(idle, gpu_util=90.0)
    assert watch.update(3601.0, [busy], names) == []
    assert watch.update(3602.0, [idle], names) == []
    assert len(watch.update(3662.0, [idle], names)) == 1  # a new episode


def test_budget_watch_alerts_once_per_day_and_not_without_a_budget() -> None:
    watch = BudgetWatch(10.0)
    assert watch.update("2026-11-23", 9.99, "$9.99", "$10.00") is None
    alert = watch.update("2026-11-23", 10.5, "$10.50", "$10.00")
    assert alert is not None and "$10.50" in alert.message and "$10.00" in alert.message
    assert watch.update("2026-11-23", 12.0, "$12.00", "$10.00") is None
    assert watch.update("2026-11-24", 11.0, "$11.00", "$10.00") is not None
    assert BudgetWatch(None).update("2026-11-23", 1e9, "x", "y") is None
