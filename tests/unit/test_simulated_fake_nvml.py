"""The fake pynvml is faithful to the installed pynvml: names, signatures, types, exceptions."""

from __future__ import annotations

import ctypes
import inspect
from typing import Any

import pynvml
import pytest

from costmeter.core import SimulatedClock
from costmeter.sampling import nvml as nvml_sampler
from costmeter.sampling.simulated import PID_BASE, FakeNvml, make_fake_nvml

T0 = 1_700_000_000.0
API = sorted(name for name in dir(FakeNvml) if name.startswith("nvml"))


def _fake(spec: str = "a100:train,t4:idle", **kw: Any) -> tuple[SimulatedClock, FakeNvml]:
    clock = SimulatedClock(T0)
    return clock, make_fake_nvml(spec, clock=clock, **kw)


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_fake_covers_what_the_sampler_calls() -> None:
    used = {r.function for r in nvml_sampler._READINGS}
    used |= {nvml_sampler._PROCESSES.function, nvml_sampler._PROCESS_UTIL.function}
    used |= {
        "nvmlInit",
        "nvmlShutdown",
        "nvmlSystemGetDriverVersion",
        "nvmlSystemGetNVMLVersion",
        "nvmlDeviceGetCount",
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetPowerManagementLimit",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetCudaComputeCapability",
        "nvmlDeviceGetArchitecture",
    }
    assert used <= set(API)


@pytest.mark.parametrize("name", API)
def test_signature_matches_pynvml(name: str) -> None:
    real = getattr(pynvml, name)  # every function the fake offers exists in pynvml
    _, fake = _fake()
    assert _params(getattr(fake, name)) == _params(real)


def test_exception_classes_and_structs_are_pynvml_s_own() -> None:
    for name in dir(FakeNvml):
        if name.startswith(("NVMLError", "c_nvml", "NVML_")):
            assert getattr(FakeNvml, name) is getattr(pynvml, name), name


def _call_all(fake: FakeNvml, handle: Any) -> list[tuple[str, Any]]:
    """Each device/system function of the fake with plausible arguments."""
    out = []
    for name in API:
        if name in ("nvmlInit", "nvmlShutdown"):
            continue
        fn = getattr(fake, name)
        n = len(inspect.signature(fn).parameters)
        if name == "nvmlDeviceGetHandleByIndex":
            args: tuple[Any, ...] = (0,)
        elif name == "nvmlDeviceGetTemperature":
            args = (handle, pynvml.NVML_TEMPERATURE_GPU)
        elif name in ("nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo"):
            args = (handle, pynvml.NVML_CLOCK_SM)
        elif name in ("nvmlDeviceGetProcessUtilization", "nvmlDeviceGetMigDeviceHandleByIndex"):
            args = (handle, 0)
        else:
            args = (handle,)[: min(n, 1)]
        out.append((name, lambda fn=fn, args=args: fn(*args)))
    return out


def test_every_call_before_init_raises_uninitialized() -> None:
    _, fake = _fake()
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    fake.nvmlShutdown()
    calls = _call_all(fake, handle)
    assert len(calls) >= 19
    for _name, call in calls:
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            call()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlShutdown()


def test_init_is_reference_counted_like_nvml() -> None:
    _, fake = _fake()
    fake.nvmlInit()
    fake.nvmlInit()
    fake.nvmlShutdown()
    assert fake.nvmlDeviceGetCount() == 2
    fake.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()


def test_without_driver_raises_library_not_found() -> None:
    fake = FakeNvml.without_driver()
    with pytest.raises(pynvml.NVMLError_LibraryNotFound) as info:
        fake.nvmlInit()
    assert info.value.value == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    assert str(info.value) == "NVML Shared Library Not Found"
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()


def test_invalid_arguments() -> None:
    _, fake = _fake()
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(1)
    for bad in (2, -1):
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            fake.nvmlDeviceGetHandleByIndex(bad)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetPowerUsage(object())
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetTemperature(h, 99)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetClockInfo(h, 99)
    assert fake.nvmlDeviceGetHandleByIndex(1) is h


def test_return_types_match_pynvml() -> None:
    _, fake = _fake()
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlSystemGetDriverVersion() == "550.54.15"
    assert fake.nvmlSystemGetNVMLVersion() == "12.550.54.15"
    assert fake.nvmlDeviceGetName(h) == "NVIDIA A100-SXM4-80GB"
    uuid = fake.nvmlDeviceGetUUID(h)
    assert isinstance(uuid, str) and uuid.startswith("GPU-") and len(uuid) == 40
    assert [len(part) for part in uuid[4:].split("-")] == [8, 4, 4, 4, 12]
    assert fake.nvmlDeviceGetEnforcedPowerLimit(h) == 400_000  # mW
    assert fake.nvmlDeviceGetPowerManagementLimit(h) == 400_000
    assert fake.nvmlDeviceGetCudaComputeCapability(h) == (8, 0)
    assert fake.nvmlDeviceGetArchitecture(h) == pynvml.NVML_DEVICE_ARCH_AMPERE
    assert fake.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM) == 1410
    util = fake.nvmlDeviceGetUtilizationRates(h)
    assert type(util) is pynvml.c_nvmlUtilization_t and 0 <= util.gpu <= 100
    mem = fake.nvmlDeviceGetMemoryInfo(h)
    assert type(mem) is pynvml.c_nvmlMemory_t
    assert mem.total == 81920 * 2**20 and mem.used + mem.free == mem.total
    mem2 = fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert type(mem2) is pynvml.c_nvmlMemory_v2_t and mem2.version == pynvml.nvmlMemory_v2
    assert mem2.used + mem2.reserved == mem.used and mem2.free == mem.free
    for value in (
        fake.nvmlDeviceGetPowerUsage(h),
        fake.nvmlDeviceGetTotalEnergyConsumption(h),
        fake.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        fake.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
    ):
        assert type(value) is int
    (proc,) = fake.nvmlDeviceGetComputeRunningProcesses(h)
    assert type(proc) is pynvml.nvmlFriendlyObject
    fields = [f[0] for f in pynvml.c_nvmlProcessInfo_v2_t._fields_]
    assert sorted(vars(proc)) == sorted(fields)
    assert proc.pid == PID_BASE + 1 and type(proc.usedGpuMemory) is int
    assert proc.gpuInstanceId == proc.computeInstanceId == 0xFFFFFFFF
    (sample,) = fake.nvmlDeviceGetProcessUtilization(h, 0)
    assert type(sample) is pynvml.c_nvmlProcessUtilizationSample_t
    assert (sample.pid, sample.timeStamp, sample.smUtil) == (proc.pid, int(T0) * 10**6, util.gpu)


def test_packed_layouts_match_ctypes() -> None:
    from costmeter.sampling.simulated import fake_nvml as fm

    cases = [
        (fm._UTIL, pynvml.c_nvmlUtilization_t, (7, 9)),
        (fm._MEM, pynvml.c_nvmlMemory_t, (2**40, 3, 2**36)),
        (fm._MEM_V2, pynvml.c_nvmlMemory_v2_t, (5, 2**40, 7, 11, 2**33)),
        (fm._PROC_UTIL, pynvml.c_nvmlProcessUtilizationSample_t, (5_000_001, 2**50, 88, 4, 1, 2)),
    ]
    for pack, struct_type, values in cases:
        packed = pack(*values)
        assert len(packed) == ctypes.sizeof(struct_type)
        obj = struct_type.from_buffer_copy(packed)
        assert tuple(getattr(obj, f[0]) for f in struct_type._fields_) == values


def test_process_utilization_has_no_sample_newer_than_timestamp() -> None:
    clock, fake = _fake()
    fake.nvmlInit()
    h0, h1 = (fake.nvmlDeviceGetHandleByIndex(i) for i in (0, 1))
    stamp = fake.nvmlDeviceGetProcessUtilization(h0, 0)[0].timeStamp
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetProcessUtilization(h0, stamp)
    clock.advance(1.0)
    assert fake.nvmlDeviceGetProcessUtilization(h0, stamp)[0].timeStamp == stamp + 10**6
    assert fake.nvmlDeviceGetProcessUtilization(h1, 0)  # the idle profile's process
    _, free = _fake("a10g:free")
    free.nvmlInit()
    with pytest.raises(pynvml.NVMLError_NotFound):
        free.nvmlDeviceGetProcessUtilization(free.nvmlDeviceGetHandleByIndex(0), 0)
    assert free.nvmlDeviceGetComputeRunningProcesses(free.nvmlDeviceGetHandleByIndex(0)) == []


def test_injected_faults() -> None:
    _, fake = _fake()
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    fake.inject_error(0, "nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_TIMEOUT, times=2)
    for _ in range(2):
        with pytest.raises(pynvml.NVMLError_Timeout):
            fake.nvmlDeviceGetPowerUsage(h)
    assert fake.nvmlDeviceGetPowerUsage(h) > 0
    fake.inject_not_supported(0, "nvmlDeviceGetTemperature")
    for _ in range(3):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            fake.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
    assert fake.call_count("nvmlDeviceGetPowerUsage", 0) == 3
    assert fake.call_count("nvmlDeviceGetTemperature") == 3
    assert fake.call_count("nvmlDeviceGetTemperature", 1) == 0


def test_lose_gpu_at_a_time() -> None:
    clock, fake = _fake()
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    fake.lose_gpu(0, at=T0 + 5)
    assert fake.nvmlDeviceGetPowerUsage(h) > 0
    clock.advance(5.0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetPowerUsage(h)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetPowerUsage(fake.nvmlDeviceGetHandleByIndex(1)) > 0


def test_attach_and_detach_a_process() -> None:
    clock, fake = _fake("h100:free")
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetComputeRunningProcesses(h) == []
    e0 = fake.nvmlDeviceGetTotalEnergyConsumption(h)
    idle_mw = fake.nvmlDeviceGetPowerUsage(h)
    clock.advance(10.5)
    fake.attach_process(0, 4242, "train", cmdline="python my_run.py")
    (proc,) = fake.nvmlDeviceGetComputeRunningProcesses(h)
    assert proc.pid == 4242 and proc.usedGpuMemory > 50 * 2**30
    assert fake.nvmlDeviceGetUtilizationRates(h).gpu >= 90
    assert fake.nvmlDeviceGetPowerUsage(h) > 5 * idle_mw
    sample = fake.process_sample(4242)
    assert sample is not None and sample.cmdline == "python my_run.py" and sample.cpu_percent > 50
    e1 = fake.nvmlDeviceGetTotalEnergyConsumption(h)
    assert e1 >= e0
    clock.advance(30.0)
    assert fake.detach_process(0, 4242)
    assert not fake.detach_process(0, 4242)
    assert fake.nvmlDeviceGetComputeRunningProcesses(h) == []
    assert fake.process_sample(4242) is None
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) > e1
    with pytest.raises(KeyError):
        fake.attach_process(0, 1, "no-such-profile")


def test_simulated_gpus_of_different_machines_have_their_own_uuids() -> None:
    from costmeter.sampling.simulated import make_fake_nvml

    def uuids(machine: str) -> list[str]:
        fake = make_fake_nvml("a100:train,t4:idle", seed=0, machine=machine)
        return [d.uuid for d in fake.devices]

    assert uuids("box-1") == uuids("box-1")
    assert set(uuids("box-1")).isdisjoint(uuids("box-2"))
    assert set(uuids("")).isdisjoint(uuids("box-1"))
