"""The simulated host: CPU load follows the simulated GPU processes, deterministically."""

from __future__ import annotations

import pytest

from costmeter.core import SimulatedClock
from costmeter.sampling.simulated import PID_BASE, SimulatedHostSampler, make_fake_nvml

T0 = 1_700_000_000.0


def _host(spec: str, seed: int = 0) -> tuple[SimulatedClock, SimulatedHostSampler]:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml(spec, seed=seed, clock=clock)
    return clock, SimulatedHostSampler(fake, clock=clock, cpu_count=16)


def test_info() -> None:
    _, host = _host("1")
    info = host.info()
    assert (info.hostname, info.cpu_count, info.memory_total) == ("sim-host", 16, 256 * 2**30)
    assert info.physical_cores == 8 and info.cpu_model


def test_sample_shape_and_ranges() -> None:
    clock, host = _host("a100:train,t4:input-bound,h100:idle,a10g:free")
    clock.advance(30.0)
    s = host.sample()
    assert s.ts == T0 + 30.0
    assert len(s.per_core) == 16 and all(0 <= c <= 100 for c in s.per_core)
    assert sum(s.per_core) / 16 == pytest.approx(s.cpu_percent)
    assert 0 < s.cpu_percent <= 100 and s.load1 > 0 and s.load5 > 0 and s.load15 > 0
    assert 0 < s.mem_used <= s.mem_total and s.swap_used == 0
    assert min(s.disk_read_bps, s.disk_write_bps, s.net_rx_bps, s.net_tx_bps) > 0
    assert s.disk_read_bps > 200e6  # the input-bound loader reads its data set
    assert s.cpu_energy_uj is None and s.cpu_energy_range_uj is None
    assert [p.pid for p in s.processes] == [PID_BASE + 1, PID_BASE + 101, PID_BASE + 201]
    assert all(p.name == "python" and p.user == "sim" and p.rss > 0 for p in s.processes)


def test_cpu_follows_the_processes() -> None:
    _, busy = _host("t4:input-bound,t4:input-bound")
    _, quiet = _host("t4:idle,t4:idle")
    b, q = busy.sample(), quiet.sample()
    assert b.cpu_percent - q.cpu_percent > 35  # 6-8 of 16 cores
    assert b.load1 > 6 > q.load1
    assert sum(p.cpu_percent for p in b.processes) >= 600


def test_cpu_time_accumulates_consistently() -> None:
    clock, host = _host("a100:bursty")
    prev = host.sample().processes[0]
    assert prev.cpu_time_s == 0.0 and prev.create_time == T0
    for _ in range(200):
        clock.advance(1.0)
        now = host.sample().processes[0]
        assert now.cpu_time_s - prev.cpu_time_s == pytest.approx(prev.cpu_percent / 100)
        prev = now
    clock.advance(0.5)
    half = host.sample().processes[0]
    assert half.cpu_time_s - prev.cpu_time_s == pytest.approx(prev.cpu_percent / 200)


def test_deterministic_and_seeded() -> None:
    runs = []
    for seed in (1, 1, 2):
        clock, host = _host("3", seed=seed)
        run = []
        for _ in range(20):
            run.append(host.sample())
            clock.advance(1.0)
        runs.append(run)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_tracked_pids_and_attached_processes() -> None:
    clock, host = _host("a10g:free")
    assert host.sample(tracked_pids=[1, 2]).processes == ()  # no such processes here
    fake = host.fake
    fake.attach_process(0, 31337, "input-bound", cmdline="python run.py")
    clock.advance(5.0)
    (p,) = host.sample(tracked_pids=[31337]).processes
    assert p.pid == 31337 and p.cmdline == "python run.py" and p.cpu_percent >= 300
    assert p.cpu_time_s == pytest.approx(5 * 3.5, rel=0.2)
