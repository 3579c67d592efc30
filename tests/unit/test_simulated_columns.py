"""``simulate``'s column path (``sampling/simulated/*_columns.py``) against the second-by-second
code it replaces: draws, profiles, devices and whole ``TickBatch``es, bit for bit and type for
type, with processes coming, going and starting late, several on one GPU, odd intervals and
every profile."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmeter.core import SimulatedClock
from costmeter.core.model import Tick
from costmeter.core.owner import Owner
from costmeter.core.tick_batch import DEVICE_FIELDS, HOST_FIELDS, TickBatch
from costmeter.cost.energy import EnergyTracker
from costmeter.sampling.simulated import (
    PID_BASE,
    PROFILES,
    FakeNvml,
    SimulatedHostSampler,
    make_fake_nvml,
    profile_columns,
)
from costmeter.sampling.simulated.columns_noise import uniform_rows
from costmeter.sampling.simulated.device import SimDevice, load_fraction
from costmeter.sampling.simulated.device_columns import device_seconds
from costmeter.sampling.simulated.direct import DirectSimSampler
from costmeter.sampling.simulated.host_columns import per_core
from costmeter.sampling.simulated.noise import uniforms, uniforms8
from costmeter.service.simulated_batches import SimulatedBatches

T0 = 1_700_000_000.0
ALL_PROFILES = (
    "a100:idle,h100:memory-bound,rtx4090:bursty,l4:memory-leak,a10g:free,t4:light,"
    "a100:input-bound,h100:train"
)

_BITS = struct.Struct("<d").pack


def _bits(values: Any) -> list[Any]:
    """Floats as their IEEE bits (0.0 and -0.0 differ), other values as they are, with types."""
    return [
        (type(x).__name__, _BITS(x) if isinstance(x, float) else x)
        for x in np.ravel(values).tolist()
    ]


seeds = st.integers(-(2**63), 2**63 - 1)
keys = st.integers(-(2**40), 2**40)


@settings(max_examples=60, deadline=None)
@given(seeds, keys, keys, st.lists(keys, max_size=20))
def test_uniform_rows_are_the_scalar_draws(seed: int, a: int, b: int, cs: list[int]) -> None:
    assert uniform_rows(seed, a, b, cs).tolist() == [list(uniforms8(seed, a, b, c)) for c in cs]
    assert uniform_rows(seed, a, b, cs, 4).tolist() == [list(uniforms(seed, a, b, c)) for c in cs]
    with pytest.raises(ValueError, match="width"):
        uniform_rows(seed, a, b, cs, 6)


unit = st.one_of(
    st.floats(0.0, 1.0, exclude_max=True), st.sampled_from([0.0, 0.5, 0.95, 1.0 - 2.0**-32])
)


@pytest.mark.parametrize("name", sorted(PROFILES))
@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(unit, unit, unit, st.integers(-100, 10**6), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_every_profile_has_columns_equal_to_its_scalar_load(
    name: str, rows: list[tuple[float, float, float, int, bool]]
) -> None:
    profile = PROFILES[name]
    fn = profile_columns.load_columns(profile.load)
    assert fn is not None, f"profile {name} has no column version"
    u0, u1, u2, elapsed, busy = (np.array(c) for c in zip(*rows, strict=True))
    got = fn(u0, u1, u2, elapsed.astype(np.int64), busy.astype(np.bool_))
    want = [profile.load(*row) for row in rows]
    for i in range(4):
        assert got[i].shape == (len(rows),)
        assert _bits(got[i]) == _bits([float(w[i]) for w in want])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1e4), max_size=200), st.floats(0.0, 1e9))
def test_cumsum_adds_in_order_as_the_scalar_integral_does(
    values: list[float], start: float
) -> None:
    acc, want = start, [start]
    for v in values:
        acc += v
        want.append(acc)
    assert _bits(np.cumsum(np.concatenate(([start], values)))) == _bits(want)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.floats(0.0, 40.0), unit),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from([1, 2, 16, 32, 96]),
)
def test_per_core_spreads_load_as_the_host_sampler_does(
    rows: list[tuple[float, float, float]], cpus: int
) -> None:
    fake = make_fake_nvml("1")
    host = SimulatedHostSampler(fake, cpu_count=cpus)
    base = np.array([cpus * (0.02 + 0.03 * r[0]) for r in rows])
    busy = np.minimum(float(cpus), base + np.array([r[1] * cpus / 10.0 for r in rows]))
    start = np.array([int(r[2] * cpus) for r in rows], np.int64)
    got = per_core(cpus, base, busy, start)
    want = [
        host._per_core(float(b), float(u), int(s))
        for b, u, s in zip(base, busy, start, strict=True)
    ]
    assert _bits(got) == _bits(want)


def _state_bits(dev: SimDevice, sec: int) -> list[Any]:
    st_ = dev.state(sec)
    rows = [(r[0].pid, r[1], r[2], _BITS(r[4])) for r in st_.procs]
    return [
        st_.gpu_util,
        st_.mem_util,
        st_.mem_used,
        st_.power_mw,
        st_.temp_c,
        st_.sm_clock_mhz,
        st_.mem_clock_mhz,
        rows,
    ]


def _crowded(seed: int) -> tuple[SimulatedClock, FakeNvml]:
    """Every profile, plus GPUs holding several processes, one of them starting later."""
    clock = SimulatedClock(T0 + 0.25)
    fake = make_fake_nvml(ALL_PROFILES, seed=seed, clock=clock)
    fake.attach_process(0, PID_BASE + 7001, "bursty")
    fake.attach_process(0, PID_BASE + 7002, "memory-leak", create_time=T0 + 130.5)
    fake.attach_process(4, PID_BASE + 7003, "train", create_time=T0 + 45.0)  # on the free GPU
    fake.attach_process(2, 4242, "light", owner=Owner(uid=7, user="ada", job_id="9"))
    return clock, fake


@pytest.mark.parametrize("seed", [0, 5, -3])
def test_device_seconds_are_the_devices_state_and_integrals(seed: int) -> None:
    _, cols = _crowded(seed)
    _, ref = _crowded(seed)
    lo = cols.devices[0].integrals()[0]
    for hi in (lo + 200, lo + 900):  # two spans in a row, the second from where the first ended
        for dev, twin in zip(cols.devices, ref.devices, strict=True):
            span = device_seconds(dev, dev.integrals()[0], hi)
            assert span is not None
            start = span.lo
            for i, sec in enumerate(range(start, hi + 1)):
                state = [
                    int(span.gpu_util[i]),
                    int(span.mem_util[i]),
                    int(span.mem_used[i]),
                    int(span.power_mw[i]),
                    int(span.temp_c[i]),
                    int(span.sm_clock[i]),
                    int(span.mem_clock[i]),
                    [
                        (ps.proc.pid, int(ps.used[i]), int(ps.sm[i]), _BITS(float(ps.cpu[i])))
                        for ps in span.procs
                        if ps.active[i]
                    ],
                ]
                assert state == _state_bits(twin, sec), f"GPU {dev.index}, second {sec}"
                # The integrals at the start of the second: the counter and each CPU time.
                t = float(sec)
                assert int(span.energy[i]) == twin.energy_mj(t)
                for ps in span.procs:
                    twin_p = next(p for p in twin.processes if p.pid == ps.proc.pid)
                    assert _BITS(float(ps.acc[i]) / 100.0) == _BITS(twin.cpu_time_s(twin_p, t))
            dev.settle(
                hi,
                int(span.energy[-1]),
                int(span.energy[-1]),
                [(ps.proc, float(ps.acc[-1])) for ps in span.procs],
            )


def test_device_seconds_decline_mig_and_profiles_without_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = make_fake_nvml("h100:train:mig=3g.40gb,a100:train", seed=1)
    mig, plain = fake.devices
    assert device_seconds(mig, mig.integrals()[0], mig.integrals()[0] + 10) is None
    assert device_seconds(plain, plain.integrals()[0], plain.integrals()[0] + 10) is not None
    # A span that does not start where the integrals stand, or ends before it starts.
    assert device_seconds(plain, plain.integrals()[0] + 1, plain.integrals()[0] + 10) is None
    assert device_seconds(plain, plain.integrals()[0], plain.integrals()[0] - 1) is None
    monkeypatch.delitem(profile_columns.COLUMNS, PROFILES["train"].load)
    assert device_seconds(plain, plain.integrals()[0], plain.integrals()[0] + 10) is None


def test_load_fraction_is_what_the_columns_compute() -> None:
    # device_columns inlines load_fraction; the cases where memory traffic takes over.
    gpu = np.array([0.0, 45.0, 45.0, 100.0, 60.0])
    mem = np.array([0.0, 96.0, 49.9, 100.0, 50.0])
    f = 0.8 * gpu + 0.2 * mem
    f = np.where((mem >= 50.0) & (mem > f), mem, f) / 100.0
    assert _bits(f) == _bits([load_fraction(g, m) for g, m in zip(gpu, mem, strict=True)])


class _Run:
    """A fake read by ``SimulatedBatches`` after a first tick, as ``Monitor`` sets it up."""

    def __init__(self, spec: str, seed: int) -> None:
        self.clock = SimulatedClock(T0 + 0.5)
        self.fake = make_fake_nvml(spec, seed=seed, clock=self.clock)
        self.gpu = DirectSimSampler(self.fake, host="sim-host", clock=self.clock)
        self.gpu.open()
        self.host = SimulatedHostSampler(self.fake, clock=self.clock)
        self.energy = EnergyTracker(max_gap_s=5.0)
        devices = self.gpu.sample()
        hs = self.host.sample(frozenset())
        first = Tick(
            ts=hs.ts,
            host="sim-host",
            host_sample=hs,
            devices=devices,
            device_intervals={d.uuid: self.energy.device_interval(d) for d in devices},
            host_interval=self.energy.host_interval(hs, cpu_count=32, tdp_w=150.0),
        )
        batches = SimulatedBatches.after(
            self.gpu,
            self.host,
            self.clock,
            self.energy,
            first,
            cpu_count=32,
            tdp_w=150.0,
            tracked_pids=set,
        )
        assert batches is not None
        self.batches = batches


def _same(a: TickBatch, b: TickBatch) -> None:
    assert (a.host, a.devices) == (b.host, b.devices)
    for name, x, y in [
        ("ts", a.ts, b.ts),
        ("dt_s", a.dt_s, b.dt_s),
        ("energy_j", a.energy_j, b.energy_j),
        ("energy_measured", a.energy_measured, b.energy_measured),
        ("host_dt_s", a.host_dt_s, b.host_dt_s),
        ("host_energy_j", a.host_energy_j, b.host_energy_j),
        ("host_energy_measured", a.host_energy_measured, b.host_energy_measured),
        *[(f"device {n}", a.device[n], b.device[n]) for n in DEVICE_FIELDS],
        *[(f"host {n}", a.host_values[n], b.host_values[n]) for n in HOST_FIELDS],
    ]:
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert _bits(x) == _bits(y), name
    assert a.gpu_processes == b.gpu_processes
    assert a.host_processes == b.host_processes
    for x, y in zip(a.ticks(), b.ticks(), strict=True):  # and type for type, as objects
        assert repr(x) == repr(y)


Event = Callable[[FakeNvml], Any]
OWNER = Owner(uid=1000, user="ada", job_id="4242", account="physics")


@pytest.mark.parametrize(
    ("spec", "seed", "interval", "chunks", "events"),
    [
        ("8", 0, 1.0, 3, {}),
        ("8", 123456789, 0.5, 3, {}),  # half the ticks find no newer per-process sample
        (ALL_PROFILES, 3, 7.3, 2, {}),  # gaps: fresh energy intervals, skipped seconds
        (ALL_PROFILES, 21, 0.7, 2, {}),
        (
            "a100:free,rtx4090:bursty,l4:idle",
            17,
            1.0,
            5,
            {
                1: lambda f: f.attach_process(0, PID_BASE + 9001, "train", owner=OWNER),
                2: lambda f: f.attach_process(1, PID_BASE + 9001, "input-bound", owner=OWNER),
                3: lambda f: (
                    f.detach_process(0, PID_BASE + 9001),
                    f.attach_process(2, 4321, "light", user="bob", create_time=f.clock.now() + 90),
                ),
                4: lambda f: f.detach_process(2, PID_BASE + 201),
            },
        ),
        ("a100:free,a10g:free", 4, 1.0, 2, {}),  # no process at all
    ],
)
def test_batches_in_columns_equal_the_batches_read_tick_by_tick(
    spec: str, seed: int, interval: float, chunks: int, events: dict[int, Event]
) -> None:
    cols, ticks = _Run(spec, seed), _Run(spec, seed)
    used: list[bool] = []
    made = cols.batches._make_in_columns

    def counted(times: list[float]) -> TickBatch | None:
        batch = made(times)
        used.append(batch is not None)
        return batch

    cols.batches._make_in_columns = counted  # type: ignore[method-assign,assignment]
    t = T0 + 0.5
    for c in range(chunks):
        for run in (cols, ticks):
            if c in events:
                events[c](run.fake)
        times = [t + interval * (j + 1) for j in range(400 if interval < 5 else 150)]
        t = times[-1]
        a = cols.batches.make(times)
        b = ticks.batches._make_by_tick(times)
        ticks.batches._prev_host_ts = float(b.ts[-1])
        _same(a, b)
        assert cols.clock.now() == ticks.clock.now() == times[-1]
    assert used == [True] * chunks  # every chunk in columns
    # Both left the devices where reading them on would give the same samples.
    for run in (cols, ticks):
        run.clock.advance(interval)
    assert repr(cols.gpu.sample()) == repr(ticks.gpu.sample())
    assert repr(cols.host.sample()) == repr(ticks.host.sample())


def test_a_profile_without_columns_goes_tick_by_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    cols, ticks = _Run("8", 2), _Run("8", 2)
    times = [T0 + 0.5 + j for j in range(1, 120)]
    monkeypatch.delitem(profile_columns.COLUMNS, PROFILES["bursty"].load)
    assert cols.batches._make_in_columns(times) is None
    a = cols.batches.make(times)
    b = ticks.batches._make_by_tick(times)
    _same(a, b)
