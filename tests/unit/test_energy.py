"""Energy per interval: counters, wrap-around, resets, estimates and gaps."""

from __future__ import annotations

import pytest

from costmeter.core.model import DeviceSample, HostSample, Interval
from costmeter.cost.energy import EnergyTracker, counter_delta, trapezoid_j


def dev(
    ts: float,
    *,
    energy_mj: int | None = None,
    power_w: float | None = None,
    uuid: str = "GPU-1",
    lost: bool = False,
) -> DeviceSample:
    return DeviceSample(uuid=uuid, index=0, ts=ts, energy_mj=energy_mj, power_w=power_w, lost=lost)


def host(
    ts: float,
    cpu_percent: float = 50.0,
    energy: tuple[int, ...] | None = None,
    ranges: tuple[int, ...] | None = None,
) -> HostSample:
    return HostSample(
        ts=ts,
        cpu_percent=cpu_percent,
        per_core=(),
        load1=0,
        load5=0,
        load15=0,
        mem_used=0,
        mem_total=1,
        swap_used=0,
        disk_read_bps=0,
        disk_write_bps=0,
        net_rx_bps=0,
        net_tx_bps=0,
        cpu_energy_uj=energy,
        cpu_energy_range_uj=ranges,
    )


def test_counter_delta_counts_forward() -> None:
    assert counter_delta(100, 250, None) == 150
    assert counter_delta(100, 100, 1000) == 0


def test_counter_delta_wraps_with_a_known_range() -> None:
    assert counter_delta(990, 10, 1000) == 20


def test_counter_delta_without_a_range_is_a_reset() -> None:
    assert counter_delta(5_000_000, 1_000, None) is None


def test_counter_delta_rejects_a_previous_value_beyond_the_range() -> None:
    assert counter_delta(2_000, 10, 1_000) is None


def test_trapezoid() -> None:
    assert trapezoid_j(100.0, 200.0, 2.0) == 300.0


def test_first_sample_has_no_interval() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    assert tracker.device_interval(dev(10.0, energy_mj=1000)) == Interval(0.0, 0.0, True)
    assert tracker.device_interval(dev(10.0, uuid="GPU-2")) == Interval(0.0, None, False)


def test_device_energy_from_the_counter_is_measured() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.device_interval(dev(10.0, energy_mj=1_000_000, power_w=999.0))
    got = tracker.device_interval(dev(11.0, energy_mj=1_250_000, power_w=999.0))
    assert got == Interval(dt_s=1.0, energy_j=250.0, energy_measured=True)


def test_a_counter_reset_falls_back_to_power() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.device_interval(dev(10.0, energy_mj=9_000_000, power_w=100.0))
    got = tracker.device_interval(dev(12.0, energy_mj=500, power_w=300.0))
    assert got == Interval(dt_s=2.0, energy_j=400.0, energy_measured=False)
    # The reset value becomes the new baseline: the next interval is measured again.
    again = tracker.device_interval(dev(13.0, energy_mj=100_500, power_w=300.0))
    assert again == Interval(1.0, 100.0, True)


def test_without_a_counter_power_is_integrated() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.device_interval(dev(0.0, power_w=50.0))
    assert tracker.device_interval(dev(2.0, power_w=150.0)) == Interval(2.0, 200.0, False)
    assert tracker.device_interval(dev(3.0)) == Interval(1.0, 150.0, False)  # one reading
    assert tracker.device_interval(dev(4.0)) == Interval(1.0, None, False)  # none


def test_constant_power_profile_integrates_to_p_times_t() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    power, step, n = 237.5, 0.97, 3600
    total = 0.0
    for i in range(n + 1):
        interval = tracker.device_interval(dev(i * step, power_w=power))
        total += interval.energy_j or 0.0
    expected = power * step * n
    assert total == pytest.approx(expected, rel=1e-3)


def test_constant_power_from_the_counter_matches_too() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    power, total, ts, energy_mj = 300.0, 0.0, 0.0, 1e9
    for _ in range(1000):
        total += tracker.device_interval(dev(ts, energy_mj=int(energy_mj))).energy_j or 0.0
        ts += 1.0
        energy_mj += power * 1.0 * 1000
    assert total == pytest.approx(power * 999, rel=1e-3)


def test_a_gap_starts_afresh() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.device_interval(dev(0.0, energy_mj=0))
    assert tracker.device_interval(dev(100.0, energy_mj=1_000_000)).dt_s == 0.0
    assert tracker.device_interval(dev(101.0, energy_mj=1_100_000)) == Interval(1.0, 100.0, True)


def test_time_going_backwards_starts_afresh() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.device_interval(dev(10.0, power_w=100.0))
    assert tracker.device_interval(dev(9.0, power_w=100.0)).dt_s == 0.0


def test_a_lost_gpu_has_no_energy_and_its_next_sample_starts_afresh() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.device_interval(dev(0.0, energy_mj=0))
    assert tracker.device_interval(dev(1.0, lost=True)) == Interval(0.0, None, False)
    assert tracker.device_interval(dev(2.0, energy_mj=5_000)).dt_s == 0.0


def test_devices_are_tracked_separately() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.device_interval(dev(0.0, energy_mj=0, uuid="a"))
    tracker.device_interval(dev(0.5, energy_mj=0, uuid="b"))
    assert tracker.device_interval(dev(1.0, energy_mj=2000, uuid="a")) == Interval(1.0, 2.0, True)
    assert tracker.device_interval(dev(1.5, energy_mj=5000, uuid="b")) == Interval(1.0, 5.0, True)


def test_host_energy_sums_rapl_packages_across_a_wrap() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    ranges = (1_000_000, 2_000_000)
    first = tracker.host_interval(
        host(0.0, energy=(999_000, 10), ranges=ranges), cpu_count=8, tdp_w=100
    )
    assert first == Interval(0.0, 0.0, True)
    got = tracker.host_interval(
        host(1.0, energy=(1_000, 40_010), ranges=ranges), cpu_count=8, tdp_w=100
    )
    # Package 0 wrapped: 1_000_000 - 999_000 + 1_000 = 2_000 uJ; package 1 moved 40_000 uJ.
    assert got == Interval(1.0, 0.042, True)


def test_host_energy_is_estimated_from_tdp_without_rapl() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    assert tracker.host_interval(host(0.0), cpu_count=4, tdp_w=120) == Interval(0.0, 0.0, False)
    got = tracker.host_interval(host(2.0, cpu_percent=25.0), cpu_count=4, tdp_w=120)
    assert got == Interval(2.0, 60.0, False)


def test_host_estimate_normalises_a_per_core_sum() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.host_interval(host(0.0), cpu_count=4, tdp_w=100)
    got = tracker.host_interval(host(1.0, cpu_percent=200.0), cpu_count=4, tdp_w=100)
    assert got.energy_j == pytest.approx(50.0)


def test_a_rapl_counter_without_a_range_that_goes_down_is_estimated() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.host_interval(host(0.0, energy=(500,)), cpu_count=2, tdp_w=100)
    got = tracker.host_interval(host(1.0, cpu_percent=10.0, energy=(100,)), cpu_count=2, tdp_w=100)
    assert got == Interval(1.0, 10.0, False)


def test_host_gap_starts_afresh() -> None:
    tracker = EnergyTracker(max_gap_s=5)
    tracker.host_interval(host(0.0), cpu_count=1, tdp_w=10)
    assert tracker.host_interval(host(60.0), cpu_count=1, tdp_w=10).dt_s == 0.0


def test_max_gap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EnergyTracker(max_gap_s=0)
