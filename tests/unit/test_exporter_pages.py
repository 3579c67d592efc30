"""Real exporter pages (tests/data/exporters, see PROVENANCE.md) served on loopback and read
through the collector: host names, GPU uuids, models, values, what is dropped and why."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from costmeter.config import RemoteHostConfig
from costmeter.core import DeviceInfo, HostInfo, Tick
from costmeter.service.remote import RemoteCollector, dcgm
from costmeter.service.remote.status import HostStatus

DATA = Path(__file__).parent.parent / "data" / "exporters"
RTX = "GPU-ef6ef310-f8e2-cef9-036e-8f12d59b5ffc"
T400 = "GPU-00000000-0000-0000-0000-000000000000"


def page(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def server_test_page(spelling: str) -> str:
    """dcgm-exporter's own served-page test, its TEST_METRIC named as a field Costmeter reads."""
    return page(f"dcgm-exporter-server-test-{spelling}.txt").replace(
        "TEST_METRIC", "DCGM_FI_DEV_GPU_UTIL"
    )


class Sink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ticks: list[Tick] = []
        self.devices: dict[str, DeviceInfo] = {}
        self.hosts: list[HostInfo] = []

    def register(self, host: HostInfo, devices: object) -> None:
        with self.lock:
            self.hosts.append(host)
            for d in devices:  # type: ignore[attr-defined]
                self.devices[d.uuid] = d

    def submit(self, tick: Tick, *, wait: bool = False) -> None:
        with self.lock:
            self.ticks.append(tick)


@dataclass
class Exporter:
    """A loopback HTTP server serving ``body()`` as /metrics."""

    body: Callable[[], str]
    url: str = ""
    hits: int = 0
    server: http.server.ThreadingHTTPServer | None = field(default=None, repr=False)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], str] | str], Exporter]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def make(body: Callable[[], str] | str) -> Exporter:
        exporter = Exporter(body if callable(body) else (lambda: body))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = exporter.body().encode()
                exporter.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        exporter.server = server
        exporter.url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        return exporter

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


@dataclass
class Run:
    sink: Sink
    messages: list[str]
    statuses: list[HostStatus]


def collect(
    urls: list[str],
    until: Callable[[Sink], bool],
    *,
    interval_s: float = 0.1,
    timeout: float = 15.0,
    name: str = "",
) -> Run:
    sink = Sink()
    messages: list[str] = []
    hosts = [RemoteHostConfig(name=name, url=u, kind="prometheus") for u in urls]
    collector = RemoteCollector(
        sink, hosts, interval_s=interval_s, cpu_tdp_w=100.0, on_message=messages.append
    )
    collector.start()
    try:
        deadline = time.monotonic() + timeout
        while not until(sink):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; messages: {messages}")
            time.sleep(0.02)
        statuses = collector.statuses()
    finally:
        collector.stop()
    return Run(sink, messages, statuses)


def _ticks(n: int) -> Callable[[Sink], bool]:
    return lambda sink: len(sink.ticks) >= n


# -- dcgm-exporter: names, uuids, models ----------------------------------------------------
@pytest.mark.parametrize("spelling", ["Hostname", "hostname"])
def test_the_host_is_named_by_either_spelling_of_the_hostname_label(
    serve: Callable[..., Exporter], spelling: str
) -> None:
    """dcgm-exporter renamed Hostname to hostname (d5e5f51): read only the old spelling, the
    host was named 127.0.0.1:PORT."""
    exporter = serve(server_test_page(spelling))
    run = collect([exporter.url], _ticks(1))
    tick = run.sink.ticks[0]
    assert tick.host == "testhost"
    (device,) = run.sink.devices.values()
    assert (device.uuid, device.name, device.host) == (T400, "NVIDIA T400 4GB", "testhost")
    assert tick.devices[0].gpu_util == 42.0


def test_the_lowercase_uuid_label_is_the_gpu_id_not_an_invented_one(
    serve: Callable[..., Exporter],
) -> None:
    """With --use-old-namespace dcgm-exporter labels the GPU ``uuid``: the GPU got an
    invented id (dcgm-HOST-gpu0) and lost its history across renames."""
    exporter = serve(server_test_page("hostname").replace("UUID=", "uuid="))
    run = collect([exporter.url], _ticks(1))
    assert list(run.sink.devices) == [T400]


def test_a_kubernetes_page_keeps_its_pod_labels_and_skips_a_not_supported_value(
    serve: Callable[..., Exporter],
) -> None:
    exporter = serve(page("dcgm-exporter-readme-kubernetes.txt"))
    run = collect([exporter.url], _ticks(1))
    (sample,) = run.sink.ticks[0].devices
    assert sample.uuid == "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"
    assert (sample.sm_clock_mhz, sample.mem_clock_mhz) == (139.0, 405.0)
    # The README's DCGM_FI_DEV_MEMORY_TEMP, 9223372036854775794, is DCGM_INT64_BLANK + 2.
    assert dcgm.check("DCGM_FI_DEV_GPU_TEMP", 9223372036854775794) == dcgm.BLANK
    assert dcgm.check("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 9223372036854775794) == dcgm.BLANK


def test_pod_labels_are_kept_on_the_parsed_record() -> None:
    from costmeter.service.remote.prom import parse_metrics

    text = page("dcgm-exporter-readme-kubernetes.txt").replace(
        'namespace="",pod=""', 'namespace="inference",pod="llm-7f8"'
    )
    reading = dcgm.DcgmMapper().map(parse_metrics(text, keep=dcgm.wanted), host="h", ts=1.0)
    assert reading.pods == {
        "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52": (dcgm.PodRef("inference", "llm-7f8", ""),)
    }


def test_a_page_without_model_names_says_its_gpus_get_no_price(
    serve: Callable[..., Exporter],
) -> None:
    exporter = serve(page("dcgm-exporter-readme-docker.txt"))
    run = collect([exporter.url], lambda s: len(s.ticks) >= 1)
    assert any("no modelName" in m and "no price" in m for m in run.messages), run.messages


def test_a_node_name_beats_the_exporters_container_name(serve: Callable[..., Exporter]) -> None:
    """aiperf's page says Hostname="ed7e7a5e585f", the exporter's container; node_exporter of
    the same machine names the node (nodename; the uname line is ours, e2e has none)."""
    gpu = serve(page("aiperf-dcgm-single-gpu.txt"))
    host = serve(
        page("node_exporter-e2e-output.txt")
        + 'node_uname_info{machine="x86_64",nodename="gpu-node-7",sysname="Linux"} 1\n'
    )
    run = collect([f"{gpu.url},{host.url}"], _ticks(1))
    assert run.sink.ticks[0].host == "gpu-node-7"
    assert run.sink.devices[RTX].host == "gpu-node-7"
    assert run.sink.devices[RTX].name == "NVIDIA RTX 6000 Ada Generation"
    assert run.sink.devices[RTX].power_limit_w == 300.0
    assert run.sink.devices[RTX].memory_total == 48662 * 1024 * 1024


def test_an_exporter_pod_name_is_flagged(serve: Callable[..., Exporter]) -> None:
    text = server_test_page("hostname").replace("testhost", "nvidia-dcgm-exporter-br2tz")
    run = collect([serve(text).url], _ticks(1))
    assert any("changes on every rollout" in m for m in run.messages), run.messages


# -- values that are not readings -----------------------------------------------------------
def test_dcgm_blank_power_is_dropped_and_reported(serve: Callable[..., Exporter]) -> None:
    """A report once showed 310 million kWh: DCGM_FP64_BLANK (2**47) taken as watts."""
    text = (
        page("aiperf-dcgm-single-gpu.txt")
        .replace("} 22.582000", "} 140737488355328")
        .replace('Hostname="ed7e7a5e585f"} 1\n', 'Hostname="ed7e7a5e585f"} 2147483634\n')
    )
    run = collect([serve(text).url], _ticks(1))
    sample = run.sink.ticks[0].devices[0]
    assert sample.power_w is None and sample.gpu_util is None  # FP64 and INT32 blanks
    assert sample.energy_mj == 955287014 and sample.mem_used == 46614 * 1024 * 1024
    (note,) = [m for m in run.messages if "dropped" in m]
    assert "1 DCGM_FI_DEV_POWER_USAGE (DCGM's blank value" in note
    assert "1 DCGM_FI_DEV_GPU_UTIL (DCGM's blank value" in note


@pytest.mark.parametrize(
    ("old", "new", "attr"),
    [
        ("} 22.582000", "} 250000", "power_w"),  # beyond any GPU
        ('"ed7e7a5e585f"} 1\n', '"ed7e7a5e585f"} 180\n', "gpu_util"),  # over 100 %
        ("} 46614", "} 99999", "mem_used"),  # more than FB_TOTAL (48662 MiB)
    ],
)
def test_physically_impossible_values_are_dropped(
    serve: Callable[..., Exporter], old: str, new: str, attr: str
) -> None:
    text = page("aiperf-dcgm-single-gpu.txt")
    assert old in text
    run = collect([serve(text.replace(old, new, 1)).url], _ticks(1))
    assert getattr(run.sink.ticks[0].devices[0], attr) is None
    assert any("a value no GPU can have" in m for m in run.messages), run.messages


# -- the energy counter's steps -------------------------------------------------------------
def test_a_counter_refreshed_every_30_s_is_spread_over_the_scrapes(
    serve: Callable[..., Exporter],
) -> None:
    """dcgm-exporter refreshes every 30 s, Costmeter scrapes every 1-2 s: energy came as
    0, 0, 0, ... then a lump. Scaled down here: a refresh every 0.6 s, a scrape every 0.1 s,
    and 300 W (180 J per refresh)."""
    base = page("aiperf-dcgm-single-gpu.txt")
    start = time.monotonic()

    def body() -> str:
        steps = int((time.monotonic() - start) / 0.6)
        return base.replace("} 955287014", f"}} {955287014 + steps * 180_000}")

    exporter = serve(body)
    run = collect([exporter.url], lambda s: len(s.ticks) >= 30, timeout=20.0)
    energies = [t.device_intervals[RTX].energy_j for t in run.sink.ticks[1:]]
    assert all(e is not None for e in energies)
    joules = [float(e) for e in energies if e is not None]
    # Lumps would leave most intervals at 0 J and a few at ~180 J; spread, each interval of
    # ~0.1 s gets ~30 J (300 W), none more than a refresh's worth and few at 0.
    assert sum(1 for j in joules if j == 0.0) <= 2, joules
    assert max(joules) < 100.0, joules
    first, last = run.sink.ticks[0].devices[0], run.sink.ticks[-1].devices[0]
    assert first.energy_mj is not None and last.energy_mj is not None
    assert sum(joules) == pytest.approx((last.energy_mj - first.energy_mj) / 1000.0, abs=0.01)


# -- node_exporter ----------------------------------------------------------------------------
E2E_WHOLE_DISKS = ("mmcblk0", "nvme0n1", "sda", "sdb", "sdc", "vda")


def _bumped(text: str, metric: str, by: float) -> str:
    """Each series of ``metric`` (a counter) advanced by ``by``."""
    out = []
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            head, value = line.rsplit(" ", 1)
            line = f"{head} {float(value) + by!r}"
        out.append(line)
    return "\n".join(out) + "\n"


def test_node_exporter_e2e_disks_memory_and_rapl(serve: Callable[..., Exporter]) -> None:
    """LVM dm-* over sda and partitions counted traffic twice or more; memory used was 0
    without MemAvailable; RAPL on the page was ignored."""
    base = page("node_exporter-e2e-output.txt")
    assert "node_memory_MemAvailable_bytes" not in base
    served = [0]

    def body() -> str:  # each scrape: every disk read 1 MiB more, the CPU package used 10 J
        n, served[0] = served[0], served[0] + 1
        text = _bumped(base, "node_disk_read_bytes_total", n * 1_048_576)
        return _bumped(text, "node_rapl_package_joules_total", n * 10.0)

    run = collect(
        [serve(body).url],
        lambda s: sum(1 for t in s.ticks if t.host_sample) >= 2,
        interval_s=0.3,
    )
    ticks = [t for t in run.sink.ticks if t.host_sample is not None]
    first, tick = ticks[0], ticks[1]
    s = tick.host_sample
    assert s is not None
    dt = tick.ts - first.ts
    assert s.disk_read_bps == pytest.approx(len(E2E_WHOLE_DISKS) * 1_048_576 / dt, rel=1e-6)
    assert s.mem_total == 3_831_959_552
    assert s.mem_used == 3_831_959_552 - 230_883_328 - 22_568_960 - 953_229_312
    assert first.host_sample is not None
    assert first.host_sample.cpu_energy_uj == (240_432_366_267,)  # 240422.366267 J + 10 J
    interval = tick.host_interval
    assert interval is not None and interval.energy_measured
    assert interval.energy_j == pytest.approx(10.0)


def test_container_and_tunnel_interfaces_are_not_network_traffic(
    serve: Callable[..., Exporter],
) -> None:
    """node_exporter's netdev test links: veth/docker/flannel/lxcbr/tun carry traffic that
    a physical interface also counts (or that never leaves the host)."""
    base = page("node_exporter-netdev-links.txt")
    later = _bumped(base, "node_network_receive_bytes_total", 1000)
    pages = iter([base, later])
    last = [later]

    def body() -> str:
        last[0] = next(pages, last[0])
        return last[0]

    host = serve(page("node_exporter-e2e-output.txt"))
    net = serve(body)
    run = collect(
        [f"{host.url},{net.url}"], lambda s: any(t.host_sample for t in s.ticks), interval_s=0.3
    )
    tick = next(t for t in run.sink.ticks if t.host_sample is not None)
    s = tick.host_sample
    assert s is not None
    counted = ("eth0", "wlan0", "enp0s0f0", "💩0", "ibr10:30")
    assert s.net_rx_bps == pytest.approx(len(counted) * 1000 / (tick.ts - run.sink.ticks[0].ts))


# -- two exporters of one machine -----------------------------------------------------------
def test_two_exporters_of_one_machine_given_apart_say_how_to_give_them_together(
    serve: Callable[..., Exporter],
) -> None:
    gpu = serve(server_test_page("hostname"))
    node = serve(
        page("node_exporter-e2e-output.txt")
        + 'node_uname_info{machine="x86_64",nodename="testhost",sysname="Linux"} 1\n'
    )
    run_messages: list[str] = []
    sink = Sink()
    collector = RemoteCollector(
        sink,
        [
            RemoteHostConfig(name="", url=gpu.url, kind="prometheus"),
            RemoteHostConfig(name="", url=node.url, kind="prometheus"),
        ],
        interval_s=0.1,
        cpu_tdp_w=100.0,
        on_message=run_messages.append,
    )
    collector.start()
    try:
        deadline = time.monotonic() + 10
        while not any(s.state == "error" for s in collector.statuses()):
            assert time.monotonic() < deadline, collector.statuses()
            time.sleep(0.02)
        statuses = {s.url: s for s in collector.statuses()}
    finally:
        collector.stop()
    assert {s.name for s in statuses.values()} == {"testhost"}
    (bad,) = [s for s in statuses.values() if s.state == "error"]
    (good,) = [s for s in statuses.values() if s.state == "connected"]
    assert bad.error is not None and "are exporters of the same host, testhost" in bad.error
    assert f"--scrape '{good.url},{bad.url}'" in bad.error


# -- hostile pages --------------------------------------------------------------------------
def test_a_huge_label_on_a_metric_not_read_does_not_reject_the_page(
    serve: Callable[..., Exporter],
) -> None:
    text = page("aiperf-dcgm-single-gpu.txt") + 'go_info{version="' + "x" * 1_000_000 + '"} 1\n'
    run = collect([serve(text).url], _ticks(1))
    assert run.sink.ticks[0].devices[0].power_w == 22.582


def test_five_thousand_gpus_on_one_host_are_cut_with_a_message(
    serve: Callable[..., Exporter],
) -> None:
    line = next(
        ln for ln in page("aiperf-dcgm-single-gpu.txt").splitlines()
        if ln.startswith("DCGM_FI_DEV_POWER_USAGE{")
    )  # fmt: skip
    text = "".join(
        line.replace('gpu="0"', f'gpu="{i}"').replace(RTX, f"GPU-{i:08d}") + "\n"
        for i in range(5000)
    )
    run = collect([serve(text).url], _ticks(1), timeout=30.0)
    assert len(run.sink.ticks[0].devices) == dcgm.MAX_DEVICES
    assert any("more than 256 GPUs" in m and "4744 more" in m for m in run.messages)
