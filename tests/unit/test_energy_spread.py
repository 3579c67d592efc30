"""EnergySpreader: a counter that moves in steps is spread over the ticks since it last moved."""

from __future__ import annotations

from typing import Any

import pytest

from costmeter.core import DeviceSample, Tick
from costmeter.cost.energy import EnergyTracker
from costmeter.service.remote.energy_spread import EnergySpreader
from costmeter.service.remote.node_exporter import is_disk, is_physical_net


def reading(ts: float, *energies: int | None) -> dict[str, Any]:
    devices = tuple(
        DeviceSample(uuid=f"GPU-{i}", index=i, ts=ts, energy_mj=e, power_w=300.0)
        for i, e in enumerate(energies)
    )
    return {"tick": Tick(ts=ts, host="h", host_sample=None, devices=devices)}


def energies(out: list[dict[str, Any]], i: int = 0) -> list[int | None]:
    return [r["tick"].devices[i].energy_mj for r in out]


def test_a_step_is_spread_linearly_and_totals_are_kept() -> None:
    spread = EnergySpreader()
    out = spread.push(reading(0.0, 1000))
    for ts in (1.0, 2.0, 3.0):
        assert spread.push(reading(ts, 1000)) == []  # held: the counter has not moved
    out += spread.push(reading(4.0, 5000))
    assert energies(out) == [1000, 2000, 3000, 4000, 5000]
    # Through the real energy tracker: 1 kJ per second, none of it at 0 then 4 kJ at once.
    tracker = EnergyTracker(max_gap_s=5.0)
    joules = [tracker.device_interval(r["tick"].devices[0]).energy_j for r in out]
    assert joules == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_a_counter_that_moves_every_scrape_is_not_held() -> None:
    spread = EnergySpreader()
    for i, ts in enumerate((0.0, 1.0, 2.0)):
        assert energies(spread.push(reading(ts, 1000 + i))) == [1000 + i]


def test_a_still_counter_stops_holding_after_the_limit_and_resumes_when_it_moves() -> None:
    spread = EnergySpreader(max_hold_s=10.0)
    spread.push(reading(0.0, 7))
    held = [spread.push(reading(float(ts), 7)) for ts in range(1, 11)]
    assert all(h == [] for h in held)
    released = spread.push(reading(12.0, 7))
    assert energies(released) == [7] * 11  # as reported: nothing to spread
    assert energies(spread.push(reading(13.0, 7))) == [7]  # not held any more
    assert energies(spread.push(reading(14.0, 9))) == [9]
    assert spread.push(reading(15.0, 9)) == []  # moving again: holds again


def test_gpus_without_counters_flush_what_was_held() -> None:
    spread = EnergySpreader()
    spread.push(reading(0.0, 5))
    spread.push(reading(1.0, 5))
    out = spread.push(reading(2.0, None))
    assert energies(out) == [5, None]
    assert spread.flush() == []


def test_a_counter_reset_is_not_spread_backwards() -> None:
    spread = EnergySpreader()
    spread.push(reading(0.0, 5000))
    spread.push(reading(1.0, 5000))
    out = spread.push(reading(2.0, 10))  # the driver reloaded
    assert energies(out) == [5000, 10]


def test_two_gpus_are_spread_each_on_its_own_counter() -> None:
    spread = EnergySpreader()
    spread.push(reading(0.0, 0, 100))
    spread.push(reading(1.0, 0, 100))
    out = spread.push(reading(2.0, 2000, 500))
    assert energies(out, 0) == [1000, 2000]
    assert energies(out, 1) == [300, 500]


@pytest.mark.parametrize(
    ("device", "counted"),
    [("sda", True), ("nvme0n1", True), ("mmcblk0", True), ("vda", True), ("xvdf", True),
     ("sda1", False), ("nvme0n1p2", False), ("mmcblk0p1", False), ("dm-0", False),
     ("md127", False), ("loop3", False), ("sr0", False), ("zram0", False)],
)  # fmt: skip
def test_only_whole_disks_are_counted(device: str, counted: bool) -> None:
    assert is_disk(device) is counted


@pytest.mark.parametrize(
    ("device", "counted"),
    [("eth0", True), ("ens5", True), ("bond0", True), ("wlan0", True), ("lo", False),
     ("veth4B09XN", False), ("docker0", False), ("br-469514f6ae65", False), ("cni0", False),
     ("flannel.1", False), ("cali60e575ce8db", False), ("tun0", False), ("cilium_host", False)],
)  # fmt: skip
def test_container_plumbing_is_not_network_traffic(device: str, counted: bool) -> None:
    assert is_physical_net(device) is counted
