"""dcgm-exporter and node_exporter pages -> devices, samples, host samples, XID events."""

from __future__ import annotations

import pytest

from costmeter.service.remote import dcgm, node_exporter
from costmeter.service.remote.prom import PromParseError, parse_metrics

PARENT = "GPU-5fd4e5c4-6c9b-7e0a-3b7d-2f1a9c0e8d11"
OTHER = "GPU-0a1b2c3d-4e5f-6789-abcd-ef0123456789"
BASE = 'pci_bus_id="00000000:07:00.0",device="nvidia{gpu}",modelName="{model}",Hostname="gpu-node-7",DCGM_FI_DRIVER_VERSION="535.104.05"'  # noqa: E501


def _labels(gpu: int, uuid: str, model: str, mig: tuple[str, str] | None = None) -> str:
    out = f'gpu="{gpu}",UUID="{uuid}",' + BASE.format(gpu=gpu, model=model)
    if mig is not None:
        out += f',GPU_I_PROFILE="{mig[0]}",GPU_I_ID="{mig[1]}"'
    return out


def dcgm_page(energy_mj: int = 123_456_789, xid: int = 0) -> str:
    """What dcgm-exporter 3.x serves for an H100 and an A100 in MIG mode (two instances)."""
    h100 = _labels(0, OTHER, "NVIDIA H100 80GB HBM3")
    mig1 = _labels(1, PARENT, "NVIDIA A100-SXM4-40GB", ("1g.5gb", "7"))
    mig2 = _labels(1, PARENT, "NVIDIA A100-SXM4-40GB", ("3g.20gb", "1"))
    lines = [
        "# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).",
        "# TYPE DCGM_FI_DEV_SM_CLOCK gauge",
        f"DCGM_FI_DEV_SM_CLOCK{{{h100}}} 1980",
        f"DCGM_FI_DEV_SM_CLOCK{{{mig1}}} 1410",
        f"DCGM_FI_DEV_SM_CLOCK{{{mig2}}} 1410",
        "# HELP DCGM_FI_DEV_MEM_CLOCK Memory clock frequency (in MHz).",
        "# TYPE DCGM_FI_DEV_MEM_CLOCK gauge",
        f"DCGM_FI_DEV_MEM_CLOCK{{{h100}}} 2619",
        f"DCGM_FI_DEV_MEM_CLOCK{{{mig1}}} 1215",
        "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).",
        "# TYPE DCGM_FI_DEV_GPU_TEMP gauge",
        f"DCGM_FI_DEV_GPU_TEMP{{{h100}}} 41",
        f"DCGM_FI_DEV_GPU_TEMP{{{mig1}}} 35",
        f"DCGM_FI_DEV_GPU_TEMP{{{mig2}}} 35",
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).",
        "# TYPE DCGM_FI_DEV_POWER_USAGE gauge",
        f"DCGM_FI_DEV_POWER_USAGE{{{h100}}} 312.25",
        f"DCGM_FI_DEV_POWER_USAGE{{{mig1}}} 88.5",
        f"DCGM_FI_DEV_POWER_USAGE{{{mig2}}} 88.5",
        "# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).",
        "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter",
        f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{h100}}} {energy_mj}",
        f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{mig1}}} 5550000",
        f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{mig2}}} 5550000",
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).",
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
        f"DCGM_FI_DEV_GPU_UTIL{{{h100}}} 97",
        "# HELP DCGM_FI_DEV_MEM_COPY_UTIL Memory utilization (in %).",
        "# TYPE DCGM_FI_DEV_MEM_COPY_UTIL gauge",
        f"DCGM_FI_DEV_MEM_COPY_UTIL{{{h100}}} 44",
        "# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).",
        "# TYPE DCGM_FI_DEV_FB_FREE gauge",
        f"DCGM_FI_DEV_FB_FREE{{{h100}}} 1024",
        f"DCGM_FI_DEV_FB_FREE{{{mig1}}} 4000",
        f"DCGM_FI_DEV_FB_FREE{{{mig2}}} 10000",
        "# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).",
        "# TYPE DCGM_FI_DEV_FB_USED gauge",
        f"DCGM_FI_DEV_FB_USED{{{h100}}} 80000",
        f"DCGM_FI_DEV_FB_USED{{{mig1}}} 864",
        f"DCGM_FI_DEV_FB_USED{{{mig2}}} 9856",
        "# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.",
        "# TYPE DCGM_FI_DEV_XID_ERRORS gauge",
        f'DCGM_FI_DEV_XID_ERRORS{{{h100},err_code="{xid}",err_msg="x"}} {xid}',
        "# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.",
        "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge",
        f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{mig1}}} 0.25",
        f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{mig2}}} 0.800000",
        "# HELP go_goroutines Number of goroutines.",
        "# TYPE go_goroutines gauge",
        "go_goroutines 12",
    ]
    return "\n".join(lines) + "\n"


def _map(page: str, mapper: dcgm.DcgmMapper | None = None) -> dcgm.DcgmReading:
    samples = parse_metrics(page, keep=dcgm.wanted)
    return (mapper or dcgm.DcgmMapper()).map(samples, host="gpu-node-7", ts=1000.0)


def test_dcgm_fields_map_to_columns_with_units() -> None:
    reading = _map(dcgm_page())
    assert reading.hostname == "gpu-node-7"
    by_uuid = {s.uuid: s for s in reading.samples}
    h = by_uuid[OTHER]
    assert (h.gpu_util, h.mem_util, h.power_w, h.temp_c) == (97.0, 44.0, 312.25, 41.0)
    assert (h.sm_clock_mhz, h.mem_clock_mhz) == (1980.0, 2619.0)
    assert h.energy_mj == 123_456_789
    assert h.mem_used == 80000 * 1024 * 1024
    info = {d.uuid: d for d in reading.devices}[OTHER]
    assert info.name == "NVIDIA H100 80GB HBM3"
    assert info.memory_total == 81024 * 1024 * 1024
    assert info.index == 0 and info.host == "gpu-node-7"


def test_mig_instances_are_devices_and_energy_stays_with_the_parent() -> None:
    reading = _map(dcgm_page())
    infos = {d.uuid: d for d in reading.devices}
    mig7, mig1 = f"MIG-{PARENT}/7", f"MIG-{PARENT}/1"
    assert set(infos) == {OTHER, PARENT, mig7, mig1}
    assert infos[mig7].name == "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    assert infos[mig1].name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    assert infos[mig7].index == infos[mig1].index == infos[PARENT].index == 1
    assert infos[mig7].memory_total == (864 + 4000) * 1024 * 1024
    samples = {s.uuid: s for s in reading.samples}
    # Instances: utilisation from the graphics engine activity, their own memory.
    assert samples[mig7].gpu_util == pytest.approx(25.0)
    assert samples[mig1].gpu_util == pytest.approx(80.0)
    assert samples[mig1].mem_used == 9856 * 1024 * 1024
    # Power, energy, temperature: once, on the physical GPU.
    assert samples[mig7].energy_mj is None and samples[mig7].power_w is None
    assert samples[PARENT].energy_mj == 5_550_000
    assert samples[PARENT].power_w == 88.5 and samples[PARENT].temp_c == 35.0
    assert samples[PARENT].gpu_util is None


def test_xid_counts_once_until_it_changes() -> None:
    mapper = dcgm.DcgmMapper()
    assert _map(dcgm_page(xid=0), mapper).xids == ()
    assert _map(dcgm_page(xid=79), mapper).xids == ((OTHER, 79),)
    assert _map(dcgm_page(xid=79), mapper).xids == ()
    assert _map(dcgm_page(xid=48), mapper).xids == ((OTHER, 48),)


def test_out_of_range_values_are_not_available_rather_than_stored() -> None:
    page = dcgm_page().replace("DCGM_FI_DEV_GPU_UTIL{", 'DCGM_FI_DEV_GPU_UTIL{x="1",', 1)
    page = page.replace(" 97\n", " 250\n").replace(" 312.25\n", " -5\n")
    h = {s.uuid: s for s in _map(page).samples}[OTHER]
    assert h.gpu_util is None and h.power_w is None
    nan = dcgm_page().replace(" 1980\n", " NaN\n")
    assert {s.uuid: s for s in _map(nan).samples}[OTHER].sm_clock_mhz is None


NODE_PAGE = """# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{{cpu="0",mode="idle"}} {idle0}
node_cpu_seconds_total{{cpu="0",mode="iowait"}} 10
node_cpu_seconds_total{{cpu="0",mode="system"}} {sys0}
node_cpu_seconds_total{{cpu="0",mode="user"}} {user0}
node_cpu_seconds_total{{cpu="1",mode="idle"}} {idle1}
node_cpu_seconds_total{{cpu="1",mode="iowait"}} 5
node_cpu_seconds_total{{cpu="1",mode="system"}} 20
node_cpu_seconds_total{{cpu="1",mode="user"}} 40
# TYPE node_load1 gauge
node_load1 1.25
# TYPE node_load5 gauge
node_load5 0.75
# TYPE node_load15 gauge
node_load15 0.5
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 3.3554432e+10
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 2.4e+10
# TYPE node_memory_SwapTotal_bytes gauge
node_memory_SwapTotal_bytes 2e9
# TYPE node_memory_SwapFree_bytes gauge
node_memory_SwapFree_bytes 1.5e9
# TYPE node_disk_read_bytes_total counter
node_disk_read_bytes_total{{device="nvme0n1"}} {disk}
node_disk_read_bytes_total{{device="loop0"}} 999999999
# TYPE node_disk_written_bytes_total counter
node_disk_written_bytes_total{{device="nvme0n1"}} 1000
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{{device="eth0"}} {rx}
node_network_receive_bytes_total{{device="lo"}} {rx}
# TYPE node_network_transmit_bytes_total counter
node_network_transmit_bytes_total{{device="eth0"}} 0
# TYPE node_uname_info gauge
node_uname_info{{machine="x86_64",nodename="cpu-box-3",release="6.1",sysname="Linux"}} 1
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{{device="/dev/sda1",mountpoint="/"}} 1e9
"""


def _node(idle0: float, user0: float, disk: float, rx: float) -> str:
    return NODE_PAGE.format(idle0=idle0, sys0=50, user0=user0, idle1=900, disk=disk, rx=rx)


def test_node_exporter_cpu_percent_comes_from_counter_deltas() -> None:
    mapper = node_exporter.NodeExporterMapper()
    first = mapper.map(
        parse_metrics(_node(1000, 100, 5e6, 1e6), keep=node_exporter.wanted), host="h", ts=10.0
    )
    assert first.sample is None  # rates need two scrapes
    assert first.info is not None and first.info.cpu_count == 2
    assert first.info.memory_total == 33_554_432_000
    assert first.hostname == "cpu-box-3"
    # 2 s later: cpu0 spent 1 s idle and 1 s user (50 %); cpu1 nothing new (0 %).
    second = mapper.map(
        parse_metrics(_node(1001, 101, 9e6, 3e6), keep=node_exporter.wanted), host="h", ts=12.0
    )
    s = second.sample
    assert s is not None
    assert s.per_core == (pytest.approx(50.0), 0.0)
    assert s.cpu_percent == pytest.approx(50.0)
    assert s.mem_total == 33_554_432_000
    assert s.mem_used == 33_554_432_000 - 24_000_000_000
    assert s.swap_used == 500_000_000
    assert (s.load1, s.load5, s.load15) == (1.25, 0.75, 0.5)
    assert s.disk_read_bps == pytest.approx(2e6)  # loop0 is not a disk
    assert s.net_rx_bps == pytest.approx(1e6)  # lo is not counted


def test_node_exporter_counter_reset_gives_no_negative_rates() -> None:
    mapper = node_exporter.NodeExporterMapper()
    mapper.map(parse_metrics(_node(1000, 100, 9e6, 9e6)), host="h", ts=1.0)
    s = mapper.map(parse_metrics(_node(5, 1, 1e3, 1e3)), host="h", ts=2.0).sample
    assert s is not None
    assert s.disk_read_bps == 0.0 and s.net_rx_bps == 0.0
    assert all(0.0 <= c <= 100.0 for c in s.per_core) and 0.0 <= s.cpu_percent <= 100.0


def test_keep_skips_series_that_are_not_read() -> None:
    samples = parse_metrics(dcgm_page() + _node(1, 1, 1, 1), keep=dcgm.wanted)
    assert samples and all(name.startswith("DCGM_FI_") for name in samples)


@pytest.mark.parametrize(
    ("page", "needle"),
    [
        ('DCGM_FI_DEV_GPU_UTIL{gpu="0" 5\n', "not Prometheus text"),
        ('DCGM_FI_DEV_GPU_UTIL{gpu="0"} five\n', "not Prometheus text"),
        ("a 1\n" * 100_001, "more than 100000 lines"),
        ("a 1\x00\n", "NUL"),
    ],
)
def test_malformed_pages_give_a_sentence(page: str, needle: str) -> None:
    with pytest.raises(PromParseError, match=needle):
        parse_metrics(page)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(PromParseError, match="not UTF-8"):
        parse_metrics(b"x 1\n\xff\xfe\n")
