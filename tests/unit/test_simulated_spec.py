"""The --simulate SPEC parser and the factory built on it."""

from __future__ import annotations

import pytest

from costmeter.core import SimulatedClock
from costmeter.sampling.simulated import MODELS, PROFILES, SimDeviceSpec, make_fake_nvml, parse_spec
from costmeter.sampling.simulated.spec import DEFAULT_MIX


def test_count_cycles_through_the_default_mix() -> None:
    specs = parse_spec("10")
    assert len(specs) == 10
    assert specs[:4] == [
        SimDeviceSpec("a100", "train"),
        SimDeviceSpec("h100", "idle"),
        SimDeviceSpec("rtx4090", "bursty"),
        SimDeviceSpec("t4", "input-bound"),
    ]
    assert specs[len(DEFAULT_MIX)] == specs[0]
    assert {p for _, p in DEFAULT_MIX} == set(PROFILES)
    assert parse_spec(" 1 ") == [SimDeviceSpec("a100", "train")]


def test_list_with_optional_profiles() -> None:
    assert parse_spec("a100:idle, H100:train ,t4,l4:memory_leak,a10g:Input-Bound,p4:free") == [
        SimDeviceSpec("a100", "idle"),
        SimDeviceSpec("h100", "train"),
        SimDeviceSpec("t4", "train"),
        SimDeviceSpec("l4", "memory-leak"),
        SimDeviceSpec("a10g", "input-bound"),
        SimDeviceSpec("p4", "free"),
    ]
    assert parse_spec("rtx4090:") == [SimDeviceSpec("rtx4090", "train")]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "it is empty"),
        ("0", "between 1 and 64"),
        ("65", "between 1 and 64"),
        ("-2", "unknown GPU model '-2'"),
        ("a100,v100", "unknown GPU model 'v100'"),
        ("a100:sleepy", "unknown profile 'sleepy'"),
        ("a100,,h100", "unknown GPU model ''"),
        ("2.5", "unknown GPU model '2.5'"),
    ],
)
def test_bad_spec_lists_models_and_profiles(spec: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert problem in message
    assert all(m in message for m in MODELS) and all(p in message for p in PROFILES)
    assert message.startswith("Invalid --simulate value")


def test_too_many_listed() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        parse_spec(",".join(["t4"] * 65))


def test_factory_builds_the_fleet() -> None:
    clock = SimulatedClock(1_000.0)
    fake = make_fake_nvml("a100:idle,t4", seed=4, clock=clock)
    assert [d.model.key for d in fake.devices] == ["a100", "t4"]
    assert fake.seed == 4 and fake.clock is clock
    with pytest.raises(ValueError):
        make_fake_nvml("k80")


def test_mig_devices_in_the_spec() -> None:
    assert parse_spec("h100:train:mig=3g.40gb+2g.20gb+1g.10gb*2, h100:mig=1g.10gb") == [
        SimDeviceSpec("h100", "train", ("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb")),
        SimDeviceSpec("h100", "train", ("1g.10gb",)),
    ]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("a100:train:mig=1g.10gb", "'a100' has no MIG profiles (MIG is simulated on: h100)"),
        ("h100:mig=9g.99gb", "unknown MIG profile '9g.99gb' for h100"),
        ("h100:mig=3g.40gb*3", "need 9 of h100's 7 slices"),
        ("h100:train:mig", "is not mig=PROFILE+PROFILE*N"),
        ("h100:mig=1g.10gb*0", "a whole count of at least 1"),
    ],
)
def test_bad_mig_spec_names_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match="Invalid --simulate value") as err:
        parse_spec(spec)
    assert problem in str(err.value)
