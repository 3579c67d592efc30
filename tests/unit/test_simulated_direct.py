"""The direct simulated path (``simulate``'s) against the NVML sampler over the fake driver.

Two fakes built alike, one read by ``NvmlSampler`` through the pynvml API, one by
``DirectSimSampler`` from the devices' state: every tick must be equal, field by field and type
by type, so the fast path cannot drift from what the sampler sees.
"""

from __future__ import annotations

import dataclasses
import gc
import sqlite3
import time
import types
from pathlib import Path
from typing import Any

import pytest

from costmeter.cli import simulate_cmd
from costmeter.cli.main import main
from costmeter.core import SimulatedClock
from costmeter.core.model import DeviceSample, HostSample
from costmeter.core.owner import Owner
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated import PID_BASE, FakeNvml, SimulatedHostSampler, make_fake_nvml
from costmeter.sampling.simulated.direct import DirectSimSampler

T0 = 1_700_000_000.0


class _Side:
    def __init__(self, spec: str, seed: int, direct: bool) -> None:
        self.clock = SimulatedClock(T0)
        self.fake: FakeNvml = make_fake_nvml(spec, seed=seed, clock=self.clock)
        if direct:
            self.gpu: NvmlSampler = DirectSimSampler(self.fake, host="sim-host", clock=self.clock)
        else:
            self.gpu = NvmlSampler(self.fake, host="sim-host", clock=self.clock)
        self.gpu.open()
        self.host = SimulatedHostSampler(self.fake, clock=self.clock)

    def tick(self) -> tuple[tuple[DeviceSample, ...], HostSample, list[str]]:
        devices = self.gpu.sample()
        messages = self.gpu.drain_messages()
        return devices, self.host.sample(frozenset()), messages


def _typed(value: Any) -> Any:
    """A dataclass as nested (type name, value) pairs: 90 == 90.0, but not for the store."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, _typed(getattr(value, f.name))) for f in dataclasses.fields(value)]
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return (type(value).__name__, value)


Event = tuple[int, str, tuple[Any, ...]]


def _run_both(
    spec: str, seed: int, interval: float, ticks: int, events: tuple[Event, ...] = ()
) -> tuple[_Side, _Side]:
    old, new = _Side(spec, seed, direct=False), _Side(spec, seed, direct=True)
    assert old.gpu.devices == new.gpu.devices
    for i in range(ticks):
        for at, what, args in events:
            if at == i:
                for side in (old, new):
                    getattr(side.fake, what)(*args[:-1], **args[-1])
        a, b = old.tick(), new.tick()
        assert _typed(a[0]) == _typed(b[0]), f"tick {i}: devices differ"
        assert _typed(a[1]) == _typed(b[1]), f"tick {i}: host differs"
        assert a[2] == b[2], f"tick {i}: messages differ"
        # The simulated host's processes are what the live path's fallback reads of them.
        live = [old.fake.process_sample(p) for p in sorted(set(old.fake.simulated_pids()))]
        assert list(a[1].processes) == live
        for side in (old, new):
            side.clock.advance(interval)
    assert old.gpu.devices == new.gpu.devices
    return old, new


@pytest.mark.parametrize(
    ("spec", "seed", "interval"),
    [
        ("8", 0, 1.0),  # train, idle, bursty, input-bound, memory-leak, free, memory-bound
        ("8", 7, 1.0),
        ("8", 123456789, 0.5),  # half the ticks find no newer per-process sample
        ("a100:bursty,t4:light,l4:memory-leak", 3, 7.3),
        ("p4:train,a10g:input-bound", 11, 1.0),  # the P4 has no energy counter
        ("h100:train:mig=3g.40gb+1g.10gb*2,h100:idle,a100:free", 5, 2.0),
    ],
)
def test_direct_path_equals_the_sampler_tick_by_tick(spec: str, seed: int, interval: float) -> None:
    old, new = _run_both(spec, seed, interval, 240)
    assert isinstance(new.gpu, DirectSimSampler) and new.gpu.direct
    # After the first tick the direct side asked the fake driver nothing per tick.
    assert old.fake.call_count("nvmlDeviceGetPowerUsage") == 240 * len(old.fake.devices)
    assert new.fake.call_count("nvmlDeviceGetPowerUsage") == len(new.fake.devices)


def test_runs_coming_and_going_with_owners_stay_equal() -> None:
    owner = Owner(uid=1000, user="ada", job_id="4242", account="physics")
    mig = "h100:idle:mig=3g.40gb+1g.10gb*2,a100:free,rtx4090:bursty"
    run, other = PID_BASE + 9001, 4321
    events: tuple[Event, ...] = (
        (5, "attach_process", (1, run, "train", {"owner": owner})),
        (9, "attach_process", (0, other, "light", {"instance": 2, "user": "bob"})),
        (12, "attach_process", (2, run, "input-bound", {"owner": owner})),
        (40, "detach_process", (1, run, {})),
        (61, "detach_process", (0, other, {})),
        (70, "detach_process", (2, run, {})),
    )
    _, new = _run_both(mig, 17, 1.0, 90, events)
    assert isinstance(new.gpu, DirectSimSampler) and new.gpu.direct


def test_a_fake_with_faults_goes_through_the_sampler_every_tick() -> None:
    old, new = _Side("2", 1, direct=False), _Side("2", 1, direct=True)
    for side in (old, new):
        side.fake.inject_error(0, "nvmlDeviceGetTemperature", times=3)
        side.fake.lose_gpu(1, at=T0 + 10)
    for _ in range(20):
        assert _typed(old.tick()) == _typed(new.tick())
        assert isinstance(new.gpu, DirectSimSampler) and not new.gpu.direct
        for side in (old, new):
            side.clock.advance(1.0)
    assert new.fake.call_count("nvmlDeviceGetPowerUsage", 0) == 20


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(db)
    try:
        tables = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
    finally:
        con.close()


def test_simulate_writes_the_same_database_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both runs end at the same "now", so their minutes and hours line up.
    now = types.SimpleNamespace(time=lambda: T0 + 1234.5, monotonic=time.monotonic)
    monkeypatch.setattr(simulate_cmd, "time", now)
    dbs: list[Path] = []
    collector = gc.get_threshold()
    for flag in ((), ("--via-nvml-sampler",)):
        db = tmp_path / f"sim{len(dbs)}.db"
        args = ["simulate", "--hours", "0.1", "--simulate", "3", "--seed", "9", "--db", str(db)]
        assert main([*args, "--interval", "1", *flag]) == 0
        dbs.append(db)
    assert gc.get_threshold() == collector  # simulate puts the collector's settings back
    direct, sampled = _rows(dbs[0]), _rows(dbs[1])
    assert len(sampled["device_samples"]) == 360 * 3
    assert direct == sampled
