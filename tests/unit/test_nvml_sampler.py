"""NvmlSampler on the fake pynvml (every line of the NVML path) and on the real, driverless one."""

from __future__ import annotations

import pynvml
import pytest

from costmeter.core import DEVICE_METRICS, SamplerUnavailable, SimulatedClock
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated import PID_BASE, FakeNvml, make_fake_nvml

T0 = 1_700_000_000.0


def _open(spec: str, seed: int = 0) -> tuple[SimulatedClock, FakeNvml, NvmlSampler]:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml(spec, seed=seed, clock=clock)
    sampler = NvmlSampler(fake, host="node1", clock=clock)
    sampler.open()
    return clock, fake, sampler


def test_open_reads_static_facts_and_inits_once() -> None:
    _, fake, sampler = _open("a100,h100,rtx4090,t4")
    infos = sampler.devices
    assert [d.index for d in infos] == [0, 1, 2, 3]
    a100, h100, rtx, t4 = infos
    assert a100.name == "NVIDIA A100-SXM4-80GB"
    assert a100.memory_total == 80 * 1024**3
    assert a100.power_limit_w == 400.0
    assert (a100.architecture, a100.compute_capability) == ("Ampere", (8, 0))
    assert (h100.architecture, h100.compute_capability, h100.power_limit_w) == (
        "Hopper",
        (9, 0),
        700,
    )
    assert (rtx.architecture, rtx.compute_capability) == ("Ada", (8, 9))
    assert (t4.name, t4.architecture, t4.compute_capability) == ("Tesla T4", "Turing", (7, 5))
    assert t4.memory_total == 15360 * 1024**2
    assert all(d.host == "node1" and d.uuid.startswith("GPU-") for d in infos)
    assert len({d.uuid for d in infos}) == 4
    assert sampler.driver_version() == "550.54.15"
    sampler.open()  # a second open is a no-op
    assert fake.call_count("nvmlInit") == 1
    sampler.close()
    sampler.close()
    assert fake.call_count("nvmlShutdown") == 1


def test_power_limit_falls_back_to_management_limit() -> None:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("a100", clock=clock)
    fake.inject_not_supported(0, "nvmlDeviceGetEnforcedPowerLimit")
    sampler = NvmlSampler(fake, clock=clock)
    assert sampler.open()[0].power_limit_w == 400.0
    assert fake.call_count("nvmlDeviceGetPowerManagementLimit", 0) == 1


def test_sample_fills_every_metric_with_units_converted() -> None:
    clock, fake, sampler = _open("a100:train")
    (s,) = sampler.sample()
    assert s.ts == T0 and s.index == 0 and s.uuid == sampler.devices[0].uuid and not s.lost
    assert s.gpu_util is not None and 85 <= s.gpu_util <= 100
    assert s.power_w is not None and 60 < s.power_w <= 400  # mW -> W
    assert s.power_w == fake.devices[0].state(int(T0)).power_mw / 1000
    assert s.energy_mj == 0  # the driver loaded at T0
    assert s.sm_clock_mhz is not None and s.sm_clock_mhz > 1000
    assert s.mem_clock_mhz == 1593
    assert s.temp_c is not None and 30 < s.temp_c < 90
    (proc,) = s.processes
    assert proc.pid >= 5_000_000 and proc.used_memory is not None
    assert proc.sm_util == s.gpu_util
    clock.advance(10.0)
    (later,) = sampler.sample()
    assert later.energy_mj is not None and later.energy_mj > 0
    assert sampler.drain_messages() == []


def test_not_supported_is_reported_once_and_never_asked_again() -> None:
    clock, fake, sampler = _open("t4:train,a100:train")
    fake.inject_not_supported(0, "nvmlDeviceGetTotalEnergyConsumption")
    fn = "nvmlDeviceGetTotalEnergyConsumption"
    for _ in range(5):
        first, second = sampler.sample()
        clock.advance(1.0)
        assert first.energy_mj is None and first.power_w is not None
        assert second.energy_mj is not None
    assert fake.call_count(fn, 0) == 1
    assert fake.call_count(fn, 1) == 5
    assert sampler.devices[0].unsupported == frozenset({"energy_mj"})
    assert sampler.devices[1].unsupported == frozenset()
    assert sampler.drain_messages() == [
        "GPU 0 (Tesla T4): total energy counter not supported; energy will be estimated from power."
    ]
    assert sampler.drain_messages() == []


def test_pascal_board_has_no_energy_counter_without_injection() -> None:
    _, _, sampler = _open("p4:train")
    (s,) = sampler.sample()
    assert s.energy_mj is None and s.power_w is not None
    assert sampler.devices[0].unsupported == {"energy_mj"}
    assert "Tesla P4" in sampler.drain_messages()[0]


@pytest.mark.parametrize(
    ("function", "metrics", "readings"),
    [
        ("nvmlDeviceGetUtilizationRates", {"gpu_util", "mem_util"}, 1),
        ("nvmlDeviceGetMemoryInfo", {"mem_used"}, 1),
        ("nvmlDeviceGetPowerUsage", {"power_w"}, 1),
        ("nvmlDeviceGetTemperature", {"temp_c"}, 1),
        # SM and memory clocks are two readings of one function: each is dropped once.
        ("nvmlDeviceGetClockInfo", {"sm_clock_mhz", "mem_clock_mhz"}, 2),
        ("nvmlDeviceGetComputeRunningProcesses_v3", {"processes"}, 1),
        ("nvmlDeviceGetProcessUtilization", {"process_util"}, 1),
    ],
)
def test_each_reading_can_be_unsupported(function: str, metrics: set[str], readings: int) -> None:
    clock, fake, sampler = _open("a100:train")
    fake.inject_not_supported(0, function)
    at_open = fake.call_count(function, 0)  # memory info is also read once by open()
    for _ in range(3):
        (s,) = sampler.sample()
        clock.advance(1.0)
    assert sampler.devices[0].unsupported == metrics
    assert metrics <= set(DEVICE_METRICS) | {"processes", "process_util"}
    for m in metrics & set(DEVICE_METRICS):
        assert getattr(s, m) is None
    if "processes" in metrics:
        assert s.processes == ()
    if "process_util" in metrics:
        assert s.processes and s.processes[0].sm_util is None
    assert fake.call_count(function, 0) - at_open == readings
    messages = sampler.drain_messages()
    assert len(messages) == readings
    assert all(m.startswith("GPU 0 (NVIDIA A100-SXM4-80GB): ") for m in messages)


def test_function_missing_from_an_older_driver_counts_as_unsupported() -> None:
    clock, fake, sampler = _open("a100:train")
    missing = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    fake.inject_error(0, "nvmlDeviceGetTotalEnergyConsumption", missing, times=-1)
    for suffix in ("_v3", "_v2", ""):  # a driver with no process call at all
        fake.inject_error(0, f"nvmlDeviceGetComputeRunningProcesses{suffix}", missing, times=-1)
    for _ in range(2):
        (s,) = sampler.sample()
        clock.advance(1.0)
    assert s.energy_mj is None and s.processes == () and s.power_w is not None
    assert sampler.devices[0].unsupported == {"energy_mj", "processes"}
    assert len(sampler.devices) == 1


@pytest.mark.parametrize(
    ("missing", "used"),
    [
        (("_v3",), "nvmlDeviceGetComputeRunningProcesses_v2"),
        (("_v3", "_v2"), "nvmlDeviceGetComputeRunningProcesses"),
    ],
)
def test_process_list_falls_back_to_older_calls(missing: tuple[str, ...], used: str) -> None:
    clock, fake, sampler = _open("a100:train")
    for suffix in missing:
        fake.inject_error(
            0,
            f"nvmlDeviceGetComputeRunningProcesses{suffix}",
            pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
            -1,
        )
    for _ in range(3):
        (s,) = sampler.sample()
        clock.advance(1.0)
    assert len(s.processes) == 1 and s.processes[0].used_memory
    assert sampler.process_calls()["Compute"] == used
    assert fake.call_count(used, 0) == 3
    # The newer calls were tried once, on the first tick, and never again.
    assert all(fake.call_count(f"nvmlDeviceGetComputeRunningProcesses{x}", 0) == 1 for x in missing)
    assert sampler.devices[0].unsupported == frozenset()


def test_transient_error_costs_one_value_for_one_tick() -> None:
    clock, fake, sampler = _open("h100:train")
    fake.inject_error(0, "nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_UNKNOWN, times=1)
    fake.inject_error(0, "nvmlDeviceGetComputeRunningProcesses_v3", pynvml.NVML_ERROR_TIMEOUT)
    (s,) = sampler.sample()
    assert s.power_w is None and s.processes == () and s.gpu_util is not None
    clock.advance(1.0)
    (s,) = sampler.sample()
    assert s.power_w is not None and len(s.processes) == 1
    assert sampler.devices[0].unsupported == frozenset()
    assert sampler.drain_messages() == []


def test_lost_gpu_is_marked_once_and_others_go_on() -> None:
    clock, fake, sampler = _open("a100:train,h100:train,t4:idle")
    sampler.sample()
    fake.lose_gpu(1, at=T0 + 2.5)
    samples = []
    for _ in range(6):
        clock.advance(1.0)
        samples.append(sampler.sample())
    assert [s[1].lost for s in samples] == [False, False, True, True, True, True]
    lost = samples[-1][1]
    assert lost.uuid == sampler.devices[1].uuid
    assert all(getattr(lost, m) is None for m in DEVICE_METRICS) and lost.processes == ()
    assert all(not s[0].lost and s[0].gpu_util is not None for s in samples)
    assert all(not s[2].lost and s[2].mem_used is not None for s in samples)
    calls_after = fake.call_count(index=1)
    clock.advance(1.0)
    sampler.sample()
    assert fake.call_count(index=1) == calls_after  # never asked again
    messages = sampler.drain_messages()
    assert messages == [
        "GPU 1 (NVIDIA H100 80GB HBM3) was lost (NVML: GPU has fallen off the bus) "
        "and is no longer sampled."
    ]


def test_gpu_lost_before_open_is_reported_as_lost() -> None:
    clock = SimulatedClock(T0)
    fake = make_fake_nvml("a100,a100", clock=clock)
    fake.lose_gpu(1)
    sampler = NvmlSampler(fake, clock=clock)
    infos = sampler.open()
    assert [d.index for d in infos] == [0]  # no handle, no UUID: skipped
    assert "GPU 1 could not be opened (GPU is lost)" in sampler.drain_messages()[0]


def test_lost_on_process_list_marks_device_lost() -> None:
    _, fake, sampler = _open("a100:train")
    fake.inject_error(0, "nvmlDeviceGetComputeRunningProcesses_v3", pynvml.NVML_ERROR_GPU_IS_LOST)
    (s,) = sampler.sample()
    assert s.lost and s.gpu_util is None
    assert sampler.sample()[0].lost


def test_process_memory_not_available_becomes_none() -> None:
    _, fake, sampler = _open("a100:train")
    fake.hide_process_memory(0)
    (s,) = sampler.sample()
    assert s.processes[0].used_memory is None
    assert s.processes[0].sm_util is not None


def test_process_util_not_found_means_no_samples_yet() -> None:
    clock, fake, sampler = _open("a100:train")
    (first,) = sampler.sample()
    assert first.processes[0].sm_util is not None
    (again,) = sampler.sample()  # same second: NVML has no newer sample
    assert again.processes[0].sm_util is None
    assert sampler.devices[0].unsupported == frozenset()
    clock.advance(1.0)
    assert sampler.sample()[0].processes[0].sm_util is not None
    assert fake.call_count("nvmlDeviceGetProcessUtilization", 0) == 3


def test_free_gpu_has_no_processes_and_skips_process_util() -> None:
    _, fake, sampler = _open("a10g:free")
    (s,) = sampler.sample()
    assert s.processes == () and s.gpu_util == 0
    assert fake.call_count("nvmlDeviceGetProcessUtilization") == 0


def test_sample_before_open_is_a_programming_error() -> None:
    sampler = NvmlSampler(make_fake_nvml("a100"))
    with pytest.raises(RuntimeError):
        sampler.sample()


@pytest.mark.parametrize(
    ("code", "start"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "No NVIDIA driver found (libnvidia-ml.so"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "The NVIDIA driver is installed but not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "No permission to talk to the NVIDIA driver"),
        (pynvml.NVML_ERROR_UNKNOWN, "NVML could not start (Unknown Error)"),
    ],
)
def test_no_driver_gives_one_readable_sentence(code: int, start: str) -> None:
    with pytest.raises(SamplerUnavailable) as info:
        NvmlSampler(FakeNvml.without_driver(code)).open()
    message = str(info.value)
    assert message.startswith(start)
    assert message.endswith("Use --simulate N to try Costmeter with simulated GPUs.")
    assert "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_real_pynvml_without_a_driver_is_unavailable() -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:  # pragma: no cover - only on a machine with an NVIDIA driver
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    with pytest.raises(SamplerUnavailable, match=r"^No NVIDIA driver found"):
        NvmlSampler().open()
    with pytest.raises(SamplerUnavailable, match=r"^No NVIDIA driver found"):
        NvmlSampler(pynvml).open()


def test_missing_pynvml_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(SamplerUnavailable, match="pynvml package"):
        NvmlSampler().open()


def test_device_count_failure_is_unavailable_and_shuts_down() -> None:
    fake = make_fake_nvml("a100")

    def broken() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    fake.nvmlDeviceGetCount = broken  # type: ignore[method-assign]
    with pytest.raises(SamplerUnavailable, match="could not list GPUs"):
        NvmlSampler(fake).open()
    assert fake.call_count("nvmlShutdown") == 1


def test_sampler_as_context_manager() -> None:
    fake = make_fake_nvml("2")
    with NvmlSampler(fake) as sampler:
        assert len(sampler.sample()) == 2
    assert fake.call_count("nvmlShutdown") == 1


MIG_SPEC = "h100:train:mig=3g.40gb+2g.20gb+1g.10gb*2"


def test_simulated_mig_gpu_lists_mig_devices_and_keeps_energy_on_the_gpu() -> None:
    clock, fake, sampler = _open(MIG_SPEC)
    parent, *migs = sampler.devices
    assert [m.name for m in migs] == [
        "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
        "NVIDIA H100 80GB HBM3 MIG 2g.20gb",
        "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
    ]
    assert len({m.uuid for m in migs}) == 4 and all(m.uuid.startswith("MIG-") for m in migs)
    assert parent.memory_reserved == 479 * 1024**2
    clock.advance(10.0)
    gpu, big, *small = sampler.sample()
    # The train process runs on the 3g.40gb: its memory is a share of the MIG device's.
    (proc,) = big.processes
    assert proc.pid >= PID_BASE and proc.used_memory is not None
    assert 0.6 * 40448 * 1024**2 < proc.used_memory < 40448 * 1024**2
    assert big.mem_used == proc.used_memory + 26 * 1024**2
    assert [s.mem_used for s in small] == [17 * 1024**2, 9 * 1024**2, 9 * 1024**2]
    assert gpu.processes == () and gpu.gpu_util is None  # NVML has none in MIG mode
    # Energy and power only on the GPU: a 3g.40gb of seven slices at ~95 % draws well under
    # the limit, above idle.
    assert gpu.energy_mj is not None and gpu.energy_mj > 0 and gpu.power_w is not None
    assert 70 < gpu.power_w < 400
    assert all(s.power_w is None and s.energy_mj is None for s in (big, *small))
    assert "gpu_util" not in sampler.devices[0].unsupported
    # The GPU's aggregate list (root only in MIG mode) is never asked; each MIG device's is.
    assert fake.call_count("nvmlDeviceGetComputeRunningProcesses_v3", 0) == 0
    mig_handles = fake.nvmlDeviceGetHandleByIndex(0).mig_handles
    assert [h.calls["nvmlDeviceGetComputeRunningProcesses_v3"] for h in mig_handles] == [1] * 4


def test_simulated_mig_process_attaches_to_a_chosen_mig_device() -> None:
    clock, fake, sampler = _open(MIG_SPEC)
    fake.attach_process(0, PID_BASE + 77, "memory-bound", instance=2)
    clock.advance(1.0)
    samples = sampler.sample()
    assert [p.pid for p in samples[3].processes] == [PID_BASE + 77]
    assert samples[3].mem_used is not None and samples[3].mem_used > 9 * 1024**2
    with pytest.raises(ValueError, match="no MIG device 9"):
        fake.attach_process(0, PID_BASE + 78, "train", instance=9)
    plain = make_fake_nvml("a100")
    with pytest.raises(ValueError, match="not in MIG mode"):
        plain.attach_process(0, PID_BASE + 79, "train", instance=0)


def test_mig_devices_are_priced_on_their_gpu_once() -> None:
    from costmeter.cost.pricing import load_default_pricing

    _, _, sampler = _open(MIG_SPEC)
    pricing = load_default_pricing()
    parent, *migs = sampler.devices
    assert pricing.gpu_price(parent.name).hourly > 0
    assert all(pricing.gpu_price(m.name).priced_elsewhere for m in migs)
    assert all(pricing.gpu_price(m.name).hourly == 0 for m in migs)


def test_simulated_gpu_without_mig_answers_mig_mode_like_nvml() -> None:
    _, fake, sampler = _open("a100:train,t4:idle")
    a100, t4 = (fake.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    with pytest.raises(pynvml.NVMLError_NotSupported):  # no MIG profiles simulated for it
        fake.nvmlDeviceGetMigMode(a100)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetMigMode(t4)
    assert len(sampler.sample()) == 2 and sampler.drain_messages() == []
    h100 = make_fake_nvml("h100")
    h100.nvmlInit()
    h = h100.nvmlDeviceGetHandleByIndex(0)
    assert h100.nvmlDeviceGetMigMode(h) == [0, 0]
    with pytest.raises(pynvml.NVMLError_NotFound):
        h100.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
