"""NvmlSampler on the real ``pynvml`` module over a stub of the NVML C library (tests/nvml_stub.py).

Every call goes through pynvml's own symbol lookup, ctypes structs and error classes; only the
library underneath is the stub. Drivers of several ages (missing symbols), faults (not supported,
no permission, a lost GPU) and a MIG GPU (the H100 of tests/data/nvml) are covered.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from costmeter.core import DEVICE_METRICS, SamplerUnavailable, SimulatedClock
from costmeter.sampling.nvml import MIG_CHECK_S, NvmlSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nvml_stub as ns

T0 = 1_700_000_000.0
MIB = ns.MIB


def _gpu(**kw: object) -> ns.StubGpu:
    base: dict[str, object] = {
        "memory_used": 30_000 * MIB,
        "gpu_util": 87,
        "mem_util": 41,
        "power_mw": 612_345,
        "energy_mj": 9_876_543_210,
        "temp_c": 66,
        "sm_mhz": 1980,
        "processes": [(4242, 29_000 * MIB), (4343, 1_000 * MIB)],
        "graphics_processes": [(4343, 1_000 * MIB), (5050, 12 * MIB)],
        "process_util": [(4242, 1_000, 80), (4242, 2_000, 85), (4343, 1_500, 5)],
    }
    base.update(kw)
    return ns.StubGpu(**base)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@contextlib.contextmanager
def _open(stub: ns.NvmlStub, clock: SimulatedClock) -> Iterator[NvmlSampler]:
    with stub.installed(pynvml):
        sampler = NvmlSampler(host="node1", clock=clock)  # the default, real path
        sampler.open()
        try:
            yield sampler
        finally:
            sampler.close()


def test_every_reading_goes_through_real_pynvml(clock: SimulatedClock) -> None:
    stub = ns.NvmlStub([_gpu()])
    with _open(stub, clock) as sampler:
        (info,) = sampler.devices
        assert (info.name, info.uuid, info.host) == (
            "NVIDIA H100 80GB HBM3",
            "GPU-00000000-0000-0000-0000-000000000001",
            "node1",
        )
        assert info.memory_total == 81559 * MIB and info.memory_reserved == 479 * MIB
        assert (info.power_limit_w, info.architecture, info.compute_capability) == (
            700.0,
            "Hopper",
            (9, 0),
        )
        assert sampler.driver_version() == "550.54.15"
        (s,) = sampler.sample()
        assert (s.gpu_util, s.mem_util, s.power_w, s.temp_c) == (87, 41, 612.345, 66)
        assert s.energy_mj == 9_876_543_210  # an unsigned long long, past 2**32
        assert s.mem_used == (30_000 + 479) * MIB  # v1 "used" includes the reservation
        assert (s.sm_clock_mhz, s.mem_clock_mhz) == (1980, 2619)
        procs = {p.pid: p for p in s.processes}
        assert set(procs) == {4242, 4343, 5050}  # compute and graphics, one row per PID
        assert procs[4242].used_memory == 29_000 * MIB and procs[4242].sm_util == 85
        assert procs[4343].sm_util == 5 and procs[5050].sm_util is None
        assert sampler.drain_messages() == []
        assert sampler.process_calls() == {
            "Compute": "nvmlDeviceGetComputeRunningProcesses_v3",
            "Graphics": "nvmlDeviceGetGraphicsRunningProcesses_v3",
        }
        # The per-process samples are asked only for what is newer than the last seen.
        sampler.sample()
    assert stub.calls["nvmlDeviceGetProcessUtilization"] >= 3
    assert stub.calls["nvmlInitWithFlags"] == 1 and stub.calls["nvmlShutdown"] == 1
    assert stub.initialised == 0


@pytest.mark.parametrize(
    ("missing", "compute", "reserved"),
    [
        (ns.PRE_R510, "nvmlDeviceGetComputeRunningProcesses_v2", None),
        (ns.PRE_R450, "nvmlDeviceGetComputeRunningProcesses", None),
        (frozenset(), "nvmlDeviceGetComputeRunningProcesses_v3", 479 * MIB),
    ],
    ids=["R470 (no _v3, no memory v2)", "R440 (unversioned only)", "R510+"],
)
def test_older_drivers_keep_process_attribution(
    clock: SimulatedClock, missing: frozenset[str], compute: str, reserved: int | None
) -> None:
    stub = ns.NvmlStub([_gpu()], missing=missing)
    with _open(stub, clock) as sampler:
        (s,) = sampler.sample()
        # The struct layout of each version is the driver's: memory figures come out whole.
        assert {p.pid: p.used_memory for p in s.processes} == {
            4242: 29_000 * MIB,
            4343: 1_000 * MIB,
            5050: 12 * MIB,
        }
        assert sampler.process_calls()["Compute"] == compute
        assert sampler.devices[0].memory_reserved == reserved
        assert sampler.devices[0].unsupported == frozenset()
        assert sampler.devices[0].memory_total == 81559 * MIB
        sampler.sample()
    for name in missing:
        assert stub.calls[name] == 0  # a missing symbol is never called, only looked up
    assert stub.calls[compute] == 4  # two ticks, each a sizing call and a filling call


def test_no_process_call_at_all_is_reported_once(clock: SimulatedClock) -> None:
    every = {
        f"nvmlDeviceGet{k}RunningProcesses{v}"
        for k in ("Compute", "Graphics")
        for v in ("", "_v2", "_v3")
    }
    stub = ns.NvmlStub([_gpu()], missing=every)
    with _open(stub, clock) as sampler:
        for _ in range(3):
            (s,) = sampler.sample()
        assert s.processes == () and s.gpu_util == 87
        assert sampler.devices[0].unsupported == {"processes"}
        (message,) = sampler.drain_messages()
        assert "process list not supported" in message


@pytest.mark.parametrize(
    ("symbol", "code", "metrics", "words"),
    [
        ("nvmlDeviceGetTotalEnergyConsumption", ns.NOT_SUPPORTED, {"energy_mj"}, "not supported"),
        ("nvmlDeviceGetPowerUsage", ns.NO_PERMISSION, {"power_w"}, "not permitted"),
        (
            "nvmlDeviceGetComputeRunningProcesses_v3",
            ns.NO_PERMISSION,
            {"processes"},
            "not permitted for this user",
        ),
        ("nvmlDeviceGetProcessUtilization", ns.NOT_SUPPORTED, {"process_util"}, "not supported"),
        ("nvmlDeviceGetTemperature", ns.NOT_SUPPORTED, {"temp_c"}, "not supported"),
    ],
)
def test_not_supported_and_no_permission_cost_one_message(
    clock: SimulatedClock, symbol: str, code: int, metrics: set[str], words: str
) -> None:
    gpu = _gpu()
    gpu.errors[symbol] = code
    stub = ns.NvmlStub([gpu])
    with _open(stub, clock) as sampler:
        for _ in range(3):
            (s,) = sampler.sample()
        assert sampler.devices[0].unsupported == metrics
        for m in metrics & set(DEVICE_METRICS):
            assert getattr(s, m) is None
        (message,) = sampler.drain_messages()
        assert words in message and message.startswith("GPU 0 (NVIDIA H100 80GB HBM3): ")
        assert s.power_w is not None or "power_w" in metrics
    assert stub.calls[symbol] == 1  # asked once, never again


def test_lost_gpu_is_never_asked_again_and_others_go_on(clock: SimulatedClock) -> None:
    stub = ns.NvmlStub([_gpu(), _gpu(uuid="GPU-2")])
    with _open(stub, clock) as sampler:
        sampler.sample()
        stub.lose(0)
        first, second = sampler.sample()
        assert first.lost and all(getattr(first, m) is None for m in DEVICE_METRICS)
        assert not second.lost and second.power_w == 612.345
        before = sum(stub.calls.values())
        assert sampler.sample()[0].lost
        # Only GPU 1 was asked: 7 readings, 2 process lists x 2 calls, 1 process utilisation,
        # and no MIG mode check (not due yet).
        assert sum(stub.calls.values()) - before == 7 + 4 + 1
        (message,) = sampler.drain_messages()
        assert "GPU 0 (NVIDIA H100 80GB HBM3) was lost" in message


def test_gpu_lost_before_open_is_skipped_with_a_reason(clock: SimulatedClock) -> None:
    stub = ns.NvmlStub([_gpu(), _gpu(uuid="GPU-2")])
    stub.lose(0)
    with _open(stub, clock) as sampler:
        assert [d.uuid for d in sampler.devices] == ["GPU-2"]
        assert "GPU 0 could not be opened (GPU is lost)" in sampler.drain_messages()[0]


@pytest.mark.parametrize(
    ("code", "start"),
    [
        (9, "The NVIDIA driver is installed but not loaded"),
        (4, "No permission to talk to the NVIDIA driver"),
        (999, "NVML could not start (Unknown Error)"),
    ],
)
def test_init_failure_is_one_sentence(clock: SimulatedClock, code: int, start: str) -> None:
    stub = ns.NvmlStub([_gpu()], init_error=code)
    with stub.installed(pynvml), pytest.raises(SamplerUnavailable) as err:
        NvmlSampler(clock=clock).open()
    assert str(err.value).startswith(start)


def test_mig_gpu_lists_its_mig_devices_and_charges_the_gpu_once(clock: SimulatedClock) -> None:
    stub = ns.NvmlStub([ns.h100_mig_capture()])
    with _open(stub, clock) as sampler:
        parent, *migs = sampler.devices
        assert parent.name == "NVIDIA H100 80GB HBM3" and parent.memory_reserved == 479 * MIB
        assert [m.name for m in migs] == [
            "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
            "NVIDIA H100 80GB HBM3 MIG 2g.20gb",
            "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
            "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        ]
        assert [m.memory_total // MIB for m in migs] == [40448, 20096, 9984, 9984]
        assert all(m.index == 0 and m.uuid.startswith("MIG-") for m in migs)
        assert all(m.power_limit_w is None for m in migs)
        assert sampler.mig_gpus() == {parent.uuid}
        gpu, *mig_samples = sampler.sample()
        # The GPU: power and energy (counted once, here); no utilisation, not "unsupported".
        assert gpu.gpu_util is None and gpu.power_w == 432.0 and gpu.energy_mj is not None
        assert "gpu_util" not in sampler.devices[0].unsupported
        assert gpu.processes == ()  # listed per MIG device instead (the aggregate needs root)
        assert gpu.mem_used == (479 + 11091 + 17 + 9 + 9) * MIB
        assert all(m.power_w is None and m.energy_mj is None for m in mig_samples)
        assert [m.mem_used // MIB for m in mig_samples] == [11091, 17, 9, 9]
        big = mig_samples[0]
        assert {p.pid: p.used_memory // MIB for p in big.processes} == {  # type: ignore[operator]
            21180: 2296,
            21181: 1272,
            21198: 7484,
        }
        messages = sampler.drain_messages()
        (message,) = messages
        assert "per MIG device: 3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb." in message
        sampler.sample()
        assert sampler.drain_messages() == []  # nothing said twice
    # Per tick: sizing + filling on the 3g.40gb, one sizing call on each idle MIG device, none
    # on the GPU (its aggregate list needs privileges: NO_PERMISSION, which would be reported).
    assert stub.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == (2 + 1 + 1 + 1) * 2


def test_mig_mode_and_devices_are_read_again(clock: SimulatedClock) -> None:
    gpu = ns.h100_mig_capture()
    stub = ns.NvmlStub([gpu])
    with _open(stub, clock) as sampler:
        sampler.drain_messages()
        assert len(sampler.sample()) == 5
        # An administrator destroys the 2g.20gb: seen at the next check, not before.
        gpu.mig[1] = None
        clock.advance(MIG_CHECK_S / 2)
        assert len(sampler.sample()) == 5
        clock.advance(MIG_CHECK_S / 2)
        assert len(sampler.sample()) == 4
        assert "per MIG device: 3g.40gb, 1g.10gb, 1g.10gb." in sampler.drain_messages()[0]
        # MIG mode off (after a GPU reset): utilisation and the GPU's processes come back.
        gpu.mig_mode = False
        gpu.gpu_util = 55
        gpu.processes = [(777, 5 * MIB)]
        clock.advance(MIG_CHECK_S)
        (s,) = sampler.sample()
        assert s.gpu_util == 55 and [p.pid for p in s.processes] == [777]
        assert [d.name for d in sampler.devices] == ["NVIDIA H100 80GB HBM3"]
        assert "MIG mode disabled" in sampler.drain_messages()[0]
        assert sampler.devices[0].unsupported == frozenset()


def test_mig_gpu_lost_takes_its_mig_devices_along(clock: SimulatedClock) -> None:
    stub = ns.NvmlStub([ns.h100_mig_capture()])
    with _open(stub, clock) as sampler:
        sampler.sample()
        stub.lose(0)
        samples = sampler.sample()
        assert all(s.lost for s in samples) and len(samples) == 5
        messages = sampler.drain_messages()
        assert sum("was lost" in m for m in messages) == 1


def test_utilisation_unsupported_without_mig_is_dropped_for_good(clock: SimulatedClock) -> None:
    gpu = _gpu(mig_mode=False)
    gpu.errors["nvmlDeviceGetUtilizationRates"] = ns.NOT_SUPPORTED
    stub = ns.NvmlStub([gpu])
    with _open(stub, clock) as sampler:
        for _ in range(3):
            (s,) = sampler.sample()
        assert s.gpu_util is None and {"gpu_util", "mem_util"} <= sampler.devices[0].unsupported
    assert stub.calls["nvmlDeviceGetUtilizationRates"] == 1


def test_doctor_on_the_real_path_names_path_bindings_and_support(
    clock: SimulatedClock, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from costmeter.cli import doctor_cmd

    energy_less = _gpu(uuid="GPU-2", name="Tesla P4")
    energy_less.errors["nvmlDeviceGetTotalEnergyConsumption"] = ns.NOT_SUPPORTED
    stub = ns.NvmlStub([ns.h100_mig_capture(), energy_less], missing=ns.PRE_R510)
    args = argparse.Namespace(
        config=str(tmp_path / "none.toml"), simulate=None, seed=0, db=str(tmp_path / "x.db")
    )
    with stub.installed(pynvml):
        doctor_cmd._check_nvml(doctor_cmd.Checklist(), args, None)
    out = capsys.readouterr().out
    version = pynvml_version()
    assert f"path: real NVML through nvidia-ml-py {version}" in out
    assert "NVIDIA driver 550.54.15, 2 GPU(s) and 4 MIG device(s)" in out
    assert "process list through nvmlDeviceGetComputeRunningProcesses_v2" in out
    assert "not supported: total energy counter; energy is estimated from power" in out
    assert "MIG mode: utilisation and processes are not read on the GPU" in out
    assert out.count("MIG device: memory and processes") == 4


def pynvml_version() -> str:
    from importlib import metadata

    return metadata.version("nvidia-ml-py")
