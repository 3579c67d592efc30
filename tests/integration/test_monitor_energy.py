"""The sampler -> energy -> store path on a simulated clock, checked against the power the fake GPUs
really drew (their per-second power profile), and through the failures a real driver produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.config import load_config
from costmeter.core import SimulatedClock
from costmeter.cost.ledger import price_usage
from costmeter.sampling.simulated import make_fake_nvml
from costmeter.service.monitor import Monitor, MonitorOptions
from costmeter.store import Store

pytestmark = pytest.mark.integration

T0 = 1_760_000_000.0


def true_energy_j(spec: str, seed: int, start: float, end: float) -> list[float]:
    """Integral of each fake GPU's power over [start, end): power is constant within a second."""
    clock = SimulatedClock(T0)
    fake = make_fake_nvml(spec, seed=seed, clock=clock)
    fake.nvmlInit()
    handles = [fake.nvmlDeviceGetHandleByIndex(i) for i in range(fake.nvmlDeviceGetCount())]
    totals = [0.0] * len(handles)
    t = start
    while t < end:
        clock.sleep_until(t)
        for i, h in enumerate(handles):
            totals[i] += fake.nvmlDeviceGetPowerUsage(h) / 1000.0
        t += 1.0
    return totals


def record(tmp_path: Path, spec: str, seconds: float, interval: float, seed: int = 3) -> Monitor:
    messages: list[str] = []
    monitor = Monitor(
        MonitorOptions(
            db_path=tmp_path / "m.db",
            config=load_config(tmp_path / "absent.toml"),
            interval_s=interval,
            simulate=spec,
            seed=seed,
            simulated_start=T0,
        ),
        on_message=messages.append,
    )
    monitor.messages = messages  # type: ignore[attr-defined]
    monitor.open()
    return monitor


@pytest.mark.parametrize("interval", [1.0, 2.0])
def test_stored_energy_matches_the_power_profile_within_one_percent(
    tmp_path: Path, interval: float
) -> None:
    # a100 has the total-energy counter (measured); p4 (Pascal) has none (integrated power).
    spec, seconds = "a100:train,p4:train,h100:bursty", 1800.0
    monitor = record(tmp_path, spec, seconds, interval)
    try:
        monitor.run_until(T0 + seconds)
    finally:
        monitor.close()
    with Store.open(tmp_path / "m.db") as store:
        usage = {u.index: u for u in store.device_usage(T0, T0 + seconds + 10)}
    last = T0 + seconds - interval  # the last sample; energy is known up to it
    truth = true_energy_j(spec, 3, T0, last)
    for index, source in [(0, "measured"), (1, "estimated"), (2, "measured")]:
        assert usage[index].energy_source == source
        assert usage[index].energy_j == pytest.approx(truth[index], rel=0.01)
        assert usage[index].seconds == pytest.approx(last - T0, abs=1e-6)
    assert any("p4" in m.lower() or "energy" in m.lower() for m in monitor.messages)  # type: ignore[attr-defined]


def test_a_gpu_lost_mid_run_is_marked_and_the_others_go_on(tmp_path: Path) -> None:
    monitor = record(tmp_path, "a100:train,h100:train", 1200, 1.0)
    assert monitor.fake is not None
    monitor.fake.lose_gpu(1, at=T0 + 600)
    try:
        monitor.run_until(T0 + 1200)
    finally:
        monitor.close()
    lost_messages = [m for m in monitor.messages if "lost" in m]  # type: ignore[attr-defined]
    assert len(lost_messages) == 1 and "H100" in lost_messages[0]
    with Store.open(tmp_path / "m.db") as store:
        devices = {d.index: d for d in store.devices()}
        usage = {u.index: u for u in store.device_usage(T0, T0 + 1300)}
    assert devices[1].lost_at is not None and devices[0].lost_at is None
    assert usage[0].seconds == pytest.approx(1199, abs=1)
    assert usage[1].seconds == pytest.approx(599, abs=2)
    assert usage[1].lost and not usage[0].lost
    report = price_usage(usage.values(), [], load_config(None).pricing(), T0, T0 + 1300)
    assert [d.lost for d in report.devices] == [False, True]


def test_profiles_leave_their_mark_in_the_report(tmp_path: Path) -> None:
    monitor = record(tmp_path, "a100:train,a100:idle,a100:free,a100:input-bound", 900, 1.0)
    try:
        monitor.run_until(T0 + 900)
    finally:
        monitor.close()
    with Store.open(tmp_path / "m.db") as store:
        usage = {u.index: u for u in store.device_usage(T0, T0 + 1000)}
        hosts = store.host_usage(T0, T0 + 1000)
    train, idle, free, input_bound = (usage[i] for i in range(4))
    assert train.avg_util is not None and train.avg_util > 85 and train.idle_seconds == 0
    assert idle.idle_seconds == pytest.approx(idle.seconds)
    assert free.idle_seconds == pytest.approx(free.seconds)
    assert input_bound.avg_util is not None and 10 < input_bound.avg_util < 45
    assert train.energy_j > input_bound.energy_j > idle.energy_j
    (host,) = hosts
    assert host.host == "sim-host" and host.busy_core_seconds > 0
    assert host.energy_source == "estimated"
