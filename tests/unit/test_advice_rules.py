"""The rules as pure functions on hand-built facts: thresholds at their edges, the engine's
failure isolation and de-duplication, and the helpers they stand on."""

from __future__ import annotations

import math

import pytest

from costmeter.advice import engine
from costmeter.advice.facts import AdviceFacts, DeviceFacts, GpuOption, RunFacts, Series
from costmeter.advice.gpu_memory import memory_gb_for, reserved_estimate
from costmeter.advice.model import Recommendation
from costmeter.advice.rules.compute import input_bound, underused_gpu
from costmeter.advice.rules.idle import idle_gpu
from costmeter.advice.rules.memory import cheapest_fit, memory_headroom, memory_pressure
from costmeter.advice.stats import evidence_series, percentile, stretches
from costmeter.advice.thresholds import Thresholds
from costmeter.core.errors import ConfigError

GIB = 1024**3
STEP = 10.0


def series(values: list[float], start: float = 0.0) -> Series:
    return Series(tuple(start + i * STEP for i in range(len(values))), tuple(values))


def device(
    util: list[float],
    *,
    held_gib: float = 20.0,
    mem_gib: float | None = None,
    cpu_pct: float = 100.0,
    index: int = 0,
    total_gib: float = 80.0,
) -> DeviceFacts:
    n = len(util)
    used = (mem_gib if mem_gib is not None else held_gib + 0.5) * GIB
    return DeviceFacts(
        host="h",
        index=index,
        uuid=f"GPU-{index}",
        name="NVIDIA A100-SXM4-80GB",
        memory_total=int(total_gib * GIB),
        power_limit_w=400.0,
        hourly_price=2.0,
        price_known=True,
        price_model="A100 80GB",
        energy_in_price=False,
        start=0.0,
        end=n * STEP,
        gpu_util=series(util),
        mem_util=series([10.0] * n),
        mem_used=series([used] * n),
        power_w=series([100.0] * n),
        held_mem=series([held_gib * GIB] * n),
        proc_cpu=series([cpu_pct] * n),
        energy_kwh=0.1,
    )


def facts(*devs: DeviceFacts, runs: tuple[RunFacts, ...] = ()) -> AdviceFacts:
    end = max(d.end for d in devs) if devs else 3600.0
    catalog = (GpuOption("T4 16GB", 0.5, 16.0), GpuOption("A100 80GB", 2.0, 80.0))
    return AdviceFacts(0.0, end, "USD", 0.1, devs, runs, catalog)


T = Thresholds()


@pytest.mark.parametrize(("minutes", "fires"), [(9, False), (11, True)])
def test_idle_needs_ten_minutes_of_quiet(minutes: int, fires: bool) -> None:
    idle = [1.0] * int(minutes * 60 / STEP)
    recs = idle_gpu(facts(device(idle)), T)
    assert bool(recs) is fires
    if fires:
        assert recs[0].evidence.values["idle_s"] == pytest.approx(minutes * 60, abs=STEP)


def test_a_pause_between_bursts_is_not_idle() -> None:
    # Busy 10 minutes, quiet 30, busy 10: the old rule fired on the 30-minute pause.
    busy = [90.0] * 60
    assert idle_gpu(facts(device(busy + [1.0] * 180 + busy)), T) == []


def test_idle_needs_memory_held() -> None:
    assert idle_gpu(facts(device([0.0] * 120, held_gib=0.0)), T) == []
    assert idle_gpu(facts(device([0.0] * 120, held_gib=0.2)), T) == []  # a bare CUDA context
    assert len(idle_gpu(facts(device([0.0] * 120, held_gib=2.0)), T)) == 1


def test_idle_money_is_price_times_idle_hours_scaled_to_a_month() -> None:
    (rec,) = idle_gpu(facts(device([0.0] * 360)), T)  # one hour, all idle
    assert rec.savings is not None
    energy = 100.0 * 730.5 / 1000 * 0.1  # 100 W idle power billed at 0.1/kWh
    assert rec.savings.money_per_month == pytest.approx(2.0 * 730.5 + energy, rel=1e-3)


@pytest.mark.parametrize(("p95", "fires"), [(39.0, True), (41.0, False)])
def test_underused_at_the_p95_edge(p95: float, fires: bool) -> None:
    util = [p95 - 10] * 95 + [p95] * 5 + [p95] * 1
    assert bool(underused_gpu(facts(device(util)), T)) is fires


def test_input_bound_needs_busy_cpus() -> None:
    low = [25.0] * 120
    assert input_bound(facts(device(low, cpu_pct=350.0)), T)
    assert input_bound(facts(device(low, cpu_pct=100.0)), T) == []
    assert input_bound(facts(device([95.0] * 120, cpu_pct=350.0)), T) == []


def test_input_bound_suppresses_underused_on_the_same_gpu() -> None:
    recs, messages = engine.evaluate(facts(device([25.0] * 120, cpu_pct=350.0)), T)
    assert messages == []
    assert {r.rule for r in recs} == {"input-bound", "memory-headroom"}


def test_headroom_picks_the_cheapest_gpu_that_fits() -> None:
    (rec,) = memory_headroom(facts(device([60.0] * 120, mem_gib=10.0)), T)
    assert "T4 16GB" in rec.action.text  # 10 GiB x 1.2 = 12 <= 16
    assert rec.savings is not None and rec.savings.money_per_month > 0
    (rec,) = memory_headroom(facts(device([60.0] * 120, mem_gib=20.0)), T)
    assert rec.savings is not None and rec.savings.money_per_month == 0  # 24 GiB fits no T4
    assert "batch" in rec.action.text
    assert memory_headroom(facts(device([60.0] * 120, mem_gib=40.0)), T) == []


def test_cheapest_fit() -> None:
    options = (GpuOption("a", 1.0, 24.0), GpuOption("b", 0.5, 16.0), GpuOption("c", 3.0, 80.0))
    assert cheapest_fit(options, 12.0, 2.0) == options[1]
    assert cheapest_fit(options, 20.0, 2.0) == options[0]
    assert cheapest_fit(options, 50.0, 2.0) is None  # the one that fits costs more


def test_pressure_from_full_memory_or_an_oom_exit() -> None:
    full = device([80.0] * 120, mem_gib=78.0)
    assert [r.rule for r in memory_pressure(facts(full), T)] == ["memory-pressure"]
    calm = device([80.0] * 120, mem_gib=50.0)
    assert memory_pressure(facts(calm), T) == []
    run = RunFacts(
        id=7,
        name="r",
        host="h",
        status="failed",
        started=0.0,
        ended=1200.0,
        gpus=(0,),
        devices=(calm,),
        message="torch.OutOfMemoryError: CUDA out of memory.",
    )
    (rec,) = memory_pressure(facts(runs=(run,)), T)
    assert rec.target.run == 7 and rec.confidence == 1.0
    assert rec.savings is not None and rec.savings.money_per_month > 0


def test_a_failing_rule_becomes_a_message() -> None:
    def broken(f: AdviceFacts, t: Thresholds) -> list[Recommendation]:
        raise ZeroDivisionError("boom")

    rules = {"broken": broken, "idle-gpu": idle_gpu}
    recs, messages = engine.evaluate(facts(device([0.0] * 120)), T, rules)
    assert [r.rule for r in recs] == ["idle-gpu"]
    assert messages == ["The rule 'broken' failed and was skipped (ZeroDivisionError: boom)."]


def test_registry_has_every_rule_of_the_issue() -> None:
    assert set(engine.RULES) == {
        "idle-gpu",
        "kept-allocation",
        "bursty-load",
        "underused-gpu",
        "overallocated",
        "memory-headroom",
        "memory-pressure",
        "cheaper-gpu",
        "input-bound",
        "power-cap",
        "pack-sweep",
        "budget-forecast",
        "checkpoints",
        "scaling",
    }


def test_thresholds_from_mapping() -> None:
    t = Thresholds.from_mapping({"idle_minutes": 30, "underused_p95_pct": 25.5})
    assert t.idle_minutes == 30.0 and t.underused_p95_pct == 25.5
    assert t.idle_util_pct == Thresholds().idle_util_pct
    with pytest.raises(ConfigError, match="Did you mean 'idle_minutes'"):
        Thresholds.from_mapping({"idle_minuts": 3})
    with pytest.raises(ConfigError, match="at least 0"):
        Thresholds.from_mapping({"idle_minutes": -1})
    assert set(Thresholds().to_mapping()) == {
        f
        for f in Thresholds.__dataclass_fields__  # every field round-trips
    }


def test_stats_helpers() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert math.isnan(percentile([], 50))
    s = series([0.0, 0.0, 9.0, 0.0, 0.0, 0.0])
    assert stretches(s, lambda v: v < 5) == [(0.0, 20.0), (30.0, 60.0)]
    long = series([float(i % 7) for i in range(1000)])
    drawn = evidence_series("u", "%", long, threshold=5.0)
    assert len(drawn.ts) <= 300 and drawn.threshold == 5.0


@pytest.mark.parametrize(
    ("model", "gb"),
    [("A100 80GB", 80.0), ("H200 141GB", 141.0), ("V100", 16.0), ("T4 16GB", 16.0), ("X1", None)],
)
def test_memory_per_model(model: str, gb: float | None) -> None:
    assert memory_gb_for(model) == gb


def test_driver_reserve_measured_or_estimated() -> None:
    assert reserved_estimate(81559 * 2**20, "NVIDIA H100 80GB HBM3") == 479 * 2**20
    assert reserved_estimate(80 * GIB, "NVIDIA A100-SXM4-80GB") == 512 * 2**20
    assert reserved_estimate(None) == 0
