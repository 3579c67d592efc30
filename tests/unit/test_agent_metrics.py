"""``/metrics`` built from a snapshot: names, units, labels, and what is left out."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from costmeter.core.model import (
    DeviceInfo,
    DeviceSample,
    GpuProcess,
    HostInfo,
    HostSample,
    Tick,
)
from costmeter.service.agent.metrics import Snapshot, make_registry, render

T0 = 1_700_000_000.0
HOST = HostInfo("gpu-box", 8, "EPYC", 64 << 30, 4)
DEVICES = (
    DeviceInfo("gpu-box", 0, "GPU-aaa", "NVIDIA A100", 80 << 30, power_limit_w=400.0),
    DeviceInfo("gpu-box", 1, "GPU-bbb", 'Odd "model"\\name', 16 << 30),
)


def host_sample(rapl: bool) -> HostSample:
    return HostSample(
        ts=T0,
        cpu_percent=37.5,
        per_core=(30.0, 45.0),
        load1=1.5,
        load5=1.0,
        load15=0.5,
        mem_used=10 << 30,
        mem_total=64 << 30,
        swap_used=0,
        disk_read_bps=0.0,
        disk_write_bps=0.0,
        net_rx_bps=0.0,
        net_tx_bps=0.0,
        cpu_energy_uj=(5_000_000, 7_000_000) if rapl else None,
        cpu_energy_range_uj=(2**32, 2**32) if rapl else None,
    )


def tick(rapl: bool = False) -> Tick:
    return Tick(
        ts=T0,
        host="gpu-box",
        host_sample=host_sample(rapl),
        devices=(
            DeviceSample(
                "GPU-aaa",
                0,
                T0,
                gpu_util=97.0,
                mem_util=40.0,
                mem_used=60 << 30,
                power_w=350.5,
                energy_mj=123_456_789,
                temp_c=71.0,
                sm_clock_mhz=1410.0,
                mem_clock_mhz=1593.0,
                processes=(GpuProcess(4242, 59 << 30), GpuProcess(4243, None)),
            ),
            # power and energy not supported, then lost
            DeviceSample("GPU-bbb", 1, T0, gpu_util=None, lost=True),
        ),
    )


def scrape(snapshot: Snapshot) -> dict[str, list[Sample]]:
    text = render(make_registry(lambda: snapshot)).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def snap(t: Tick | None) -> Snapshot:
    return Snapshot(HOST, DEVICES, t, "0.1.0", "nvml", buffered=12, oldest=T0 - 60)


def value(samples: list[Sample], **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, samples)
    return found[0]


def test_gpu_series_in_base_units_with_labels() -> None:
    m = scrape(snap(tick()))
    util = m["costmeter_gpu_utilization_percent"]
    labels = {"host": "gpu-box", "gpu": "0", "uuid": "GPU-aaa", "model": "NVIDIA A100"}
    assert util[0].labels == labels
    assert [s.value for s in util] == [97.0]  # GPU 1 has no reading: no series, not a zero
    assert value(m["costmeter_gpu_energy_joules"], gpu="0") == 123_456.789
    assert m["costmeter_gpu_energy_joules"][0].name == "costmeter_gpu_energy_joules_total"
    assert value(m["costmeter_gpu_sm_clock_hertz"], gpu="0") == 1410e6
    assert value(m["costmeter_gpu_power_watts"], gpu="0") == 350.5
    assert [s.labels["gpu"] for s in m["costmeter_gpu_power_watts"]] == ["0"]
    assert value(m["costmeter_gpu_power_limit_watts"], gpu="0") == 400.0
    assert value(m["costmeter_gpu_memory_total_bytes"], gpu="1") == 16 << 30
    assert value(m["costmeter_gpu_memory_total_bytes"], gpu="1", model='Odd "model"\\name') > 0
    assert value(m["costmeter_gpu_lost"], gpu="1") == 1.0
    assert value(m["costmeter_gpu_lost"], gpu="0") == 0.0
    procs = m["costmeter_gpu_process_memory_used_bytes"]
    assert [(s.labels["pid"], s.value) for s in procs] == [("4242", float(59 << 30))]


def test_host_and_agent_series() -> None:
    m = scrape(snap(tick()))
    assert value(m["costmeter_host_cpu_utilization_percent"], host="gpu-box") == 37.5
    assert value(m["costmeter_host_load_average"], period="5m") == 1.0
    assert value(m["costmeter_host_memory_used_bytes"]) == 10 << 30
    assert value(m["costmeter_host_cpu_count"]) == 8
    assert value(m["costmeter_agent_info"], version="0.1.0", gpu_mode="nvml") == 1.0
    assert value(m["costmeter_agent_buffered_samples"]) == 12
    assert value(m["costmeter_agent_last_sample_timestamp_seconds"]) == T0
    assert "costmeter_host_cpu_energy_joules" not in m  # no RAPL


def test_rapl_counters_per_package() -> None:
    m = scrape(snap(tick(rapl=True)))
    assert value(m["costmeter_host_cpu_energy_joules"], package="1") == 7.0


def test_before_the_first_sample_only_static_series() -> None:
    m = scrape(snap(None))
    assert value(m["costmeter_gpu_memory_total_bytes"], gpu="0") == 80 << 30
    assert "costmeter_gpu_utilization_percent" not in m
    assert "costmeter_agent_last_sample_timestamp_seconds" not in m
