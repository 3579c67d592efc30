"""Simulated GPUs: every model and profile in range, profile shapes, determinism, energy."""

from __future__ import annotations

import itertools
import math
import time

import pytest

from costmeter.core import DeviceSample, SimulatedClock
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated import MODELS, PID_BASE, PROFILES, FakeNvml, make_fake_nvml

T0 = 1_700_000_000.0


def _run(
    spec: str, seconds: int, *, seed: int = 0, step: float = 1.0
) -> tuple[FakeNvml, list[tuple[DeviceSample, ...]]]:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml(spec, seed=seed, clock=clock)
    sampler = NvmlSampler(fake, host="sim", clock=clock)
    sampler.open()
    out = []
    for _ in range(int(seconds / step)):
        out.append(sampler.sample())
        clock.advance(step)
    return fake, out


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_model_and_profile_stays_in_range(model: str, profile: str) -> None:
    m = MODELS[model]
    _, ticks = _run(f"{model}:{profile}", 90)
    for (s,) in ticks:
        assert s.gpu_util is not None and 0 <= s.gpu_util <= 100
        assert s.mem_util is not None and 0 <= s.mem_util <= 100
        assert s.mem_used is not None and 0 < s.mem_used <= m.memory_total
        assert s.power_w is not None and 0.9 * m.idle_w <= s.power_w <= m.power_limit_w
        assert s.temp_c is not None and m.idle_temp_c - 2 <= s.temp_c <= m.load_temp_c + 2
        assert s.sm_clock_mhz is not None and 0 < s.sm_clock_mhz <= m.max_sm_mhz
        assert s.mem_clock_mhz in (m.max_mem_mhz, m.idle_mem_mhz)
        if "nvmlDeviceGetTotalEnergyConsumption" in m.unsupported:
            assert s.energy_mj is None
        else:
            assert s.energy_mj is not None
        if profile == "free":
            assert s.processes == () and s.gpu_util == 0
            assert s.power_w < m.idle_w + 1.0
        else:
            (p,) = s.processes
            assert p.pid == PID_BASE + 1
            assert p.used_memory is not None and p.used_memory < s.mem_used


def _utils(ticks: list[tuple[DeviceSample, ...]], i: int = 0) -> list[float]:
    return [float(t[i].gpu_util or 0) for t in ticks]


def test_profiles_have_their_shapes() -> None:
    spec = "a100:train,a100:idle,a100:free,a100:input-bound,a100:bursty,a100:memory-leak"
    fake, ticks = _run(spec, 20 * 60)
    total = MODELS["a100"].memory_total
    train, idle, free, inbound, bursty, _ = (_utils(ticks, i) for i in range(6))
    assert min(train) >= 90 and max(train) <= 98
    assert sum(idle) / len(idle) < 2 and max(free) == 0
    mem_idle = ticks[-1][1].processes[0].used_memory
    assert mem_idle is not None and 0.29 < mem_idle / total < 0.31
    mem_train = ticks[-1][0].processes[0].used_memory
    assert mem_train is not None and 0.69 < mem_train / total < 0.71
    assert min(inbound) >= 20 and max(inbound) <= 35
    busy = [u for u in bursty if u > 80]
    quiet = [u for u in bursty if u < 5]
    assert len(busy) >= 120 and len(quiet) >= 120 and len(busy) + len(quiet) == len(bursty)
    # Phases last whole windows of tens of seconds, not single ticks.
    switches = sum((a > 50) != (b > 50) for a, b in itertools.pairwise(bursty))
    assert 2 <= switches <= len(bursty) // 30
    # Power follows utilisation: training draws far more than idling on the same board.
    power = [sum(t[i].power_w or 0 for t in ticks) / len(ticks) for i in range(3)]
    assert power[0] > 300 and power[1] < 65 and power[2] < 65
    # Process CPU: input-bound keeps 3-4 cores busy, training about one, idle nearly none.
    cpu = [fake.process_sample(PID_BASE + 100 * i + 1) for i in (0, 1, 3)]
    assert cpu[0] is not None and 90 <= cpu[0].cpu_percent <= 110
    assert cpu[1] is not None and cpu[1].cpu_percent < 3
    assert cpu[2] is not None and 300 <= cpu[2].cpu_percent <= 400


def test_memory_leak_grows_until_nearly_full() -> None:
    fake, ticks = _run("t4:memory-leak", 4 * 3600, step=600.0)
    used = [t[0].mem_used or 0 for t in ticks]
    total = MODELS["t4"].memory_total
    growing = used[: 2 * 3600 // 600]
    assert all(b > a for a, b in itertools.pairwise(growing))
    assert used[0] / total < 0.25
    assert 0.95 < used[-1] / total <= 1.0
    assert fake.nvmlDeviceGetCount() == 1


def test_same_seed_same_values_different_seed_different() -> None:
    _, a = _run("4", 120, seed=7)
    _, b = _run("4", 120, seed=7)
    _, c = _run("4", 120, seed=8)
    assert a == b
    assert [s.uuid for s in a[0]] != [s.uuid for s in c[0]]
    strip = [[(s.gpu_util, s.power_w, s.temp_c) for s in t] for t in a]
    assert strip != [[(s.gpu_util, s.power_w, s.temp_c) for s in t] for t in c]


def test_values_do_not_depend_on_how_often_they_are_read() -> None:
    _, every = _run("h100:bursty,t4:input-bound", 300)
    _, sparse = _run("h100:bursty,t4:input-bound", 300, step=7.0)
    by_ts = {t[0].ts: t for t in every}
    for tick in sparse:
        dense = by_ts[tick[0].ts]
        for s, d in zip(tick, dense, strict=True):
            assert (s.gpu_util, s.power_w, s.energy_mj, s.mem_used) == (
                d.gpu_util,
                d.power_w,
                d.energy_mj,
                d.mem_used,
            )


def test_energy_counter_is_the_exact_integral_of_power() -> None:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("a100:bursty,rtx4090:train", seed=3, clock=clock)
    fake.nvmlInit()
    handles = [fake.nvmlDeviceGetHandleByIndex(i) for i in range(2)]
    powers: list[list[int]] = [[], []]
    previous = [0, 0]
    for _ in range(600):
        for i, h in enumerate(handles):
            energy = fake.nvmlDeviceGetTotalEnergyConsumption(h)
            assert energy == sum(powers[i])  # mW x 1 s = mJ, exactly
            assert energy >= previous[i]
            previous[i] = energy
            powers[i].append(fake.nvmlDeviceGetPowerUsage(h))
        clock.advance(1.0)
    # Inside a second the counter adds that second's power pro rata.
    clock.advance(0.25)
    h = handles[0]
    p = fake.nvmlDeviceGetPowerUsage(h)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) == sum(powers[0]) + int(p * 0.25)


def test_energy_counter_survives_a_jump_of_hours() -> None:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("h100:bursty", seed=5, clock=clock)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    dev = fake.devices[0]
    start = time.perf_counter()
    clock.advance(3 * 3600.0)
    energy = fake.nvmlDeviceGetTotalEnergyConsumption(h)
    elapsed = time.perf_counter() - start
    expected = sum(dev._compute(s).power_mw for s in range(int(T0), int(T0) + 3 * 3600))
    assert energy == expected
    assert elapsed < 1.0  # 10,800 seconds integrated; about 0.05 s here
    mean_w = energy / 1000 / (3 * 3600)
    assert 70 < mean_w < 700


def test_clock_going_back_never_lowers_the_counter() -> None:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("a100:train", clock=clock)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    clock.advance(100.0)
    high = fake.nvmlDeviceGetTotalEnergyConsumption(h)
    clock._t -= 50.0  # a wall clock stepping back
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) == high


def test_device_uuids_and_pids_are_stable() -> None:
    a = make_fake_nvml("3", seed=1)
    b = make_fake_nvml("3", seed=1)
    assert [d.uuid for d in a.devices] == [d.uuid for d in b.devices]
    assert a.simulated_pids() == [PID_BASE + 1, PID_BASE + 101, PID_BASE + 201]
    assert all(pid > 4_194_304 for pid in a.simulated_pids())  # above Linux pid_max
    assert math.isclose(MODELS["t4"].memory_total / 2**30, 15.0)
