"""query_range answers of a real Prometheus -> readings, as the scrape path reads the same pages.

The answers in tests/data/prometheus/ were captured from Debian's Prometheus 2.42 scraping real
exporter pages, and from a day of promtool-written history with an energy counter reset (see
that folder's PROVENANCE.md).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from costmeter.core.model import DeviceInfo, HostInfo, Tick
from costmeter.service.node_ingest import NodeIngest
from costmeter.service.remote import dcgm, node_exporter
from costmeter.service.remote import prom_series as ps
from costmeter.service.remote.prom import parse_metrics
from costmeter.service.remote.prom_api import matrix

DATA = Path(__file__).resolve().parents[1] / "data"
PROM = DATA / "prometheus"
PAGES = DATA / "exporters"
INDEX = json.loads((PROM / "index.json").read_text("utf-8"))


def _json(name: str) -> Any:
    return json.loads((PROM / name).read_text("utf-8"))


def _hosts(part: str) -> dict[str, ps.HostTargets]:
    return ps.targets(
        _json(f"{part}-series-gpu.json")["data"], _json(f"{part}-series-node.json")["data"]
    )


def _steps(part: str) -> ps.StepSamples:
    steps = ps.StepSamples(_hosts(part))
    for q in INDEX[part]["queries"]:
        steps.add(q["kind"], matrix(_json(q["file"])["data"]))
    return steps


def _mapped(part: str) -> dict[str, ps.Mapped]:
    return {name: ps.HostMapper(name).map(by_ts) for name, by_ts in _steps(part).by_host.items()}


class ListSink:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.registered: list[tuple[HostInfo, Sequence[DeviceInfo]]] = []

    def register(self, host: HostInfo, devices: Sequence[DeviceInfo]) -> None:
        self.registered.append((host, devices))

    def submit(self, tick: Tick, *, wait: bool = False) -> None:
        self.ticks.append(tick)


def test_hosts_are_found_by_their_hostname_label_and_node_exporter_by_its_address() -> None:
    hosts = _hosts("scrape")
    assert set(hosts) == {"424773df46e0", "551bdf382151", "ed7e7a5e585f", "127.0.0.1"}
    assert hosts["ed7e7a5e585f"].gpus == {"UUID": {"GPU-ef6ef310-f8e2-cef9-036e-8f12d59b5ffc"}}
    # The Kubernetes page has no Hostname: its GPU is on the scraped address, as node_exporter
    # is (the dcgm-exporters at that address name several hosts, so none of them takes it).
    assert hosts["127.0.0.1"].gpus == {"UUID": {"GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"}}
    assert [i.rpartition(":")[0] for i in hosts["127.0.0.1"].instances] == ["127.0.0.1"]
    history = _hosts("history")
    assert list(history) == ["gpu-node-000"]  # the dcgm-exporter's address joins node_exporter
    assert history["gpu-node-000"].instances == {"gpu-node-000:9100"}
    assert history["gpu-node-000"].gpu_count == 2


@pytest.mark.parametrize(
    ("page", "host"),
    [
        ("aiperf-dcgm-single-gpu.txt", "ed7e7a5e585f"),
        ("datadog-dcgm-fixture-metrics.txt", "551bdf382151"),
    ],
)
def test_gpu_figures_are_the_scrape_paths_figures_of_the_same_page(page: str, host: str) -> None:
    mapped = _mapped("scrape")[host]
    reading = mapped.readings[-1]
    tick = reading["tick"]
    assert isinstance(tick, Tick)
    scraped = dcgm.DcgmMapper().map(
        parse_metrics((PAGES / page).read_text("utf-8"), keep=dcgm.wanted), host=host, ts=tick.ts
    )
    wanted_uuids = {d.uuid for d in reading["devices"]}  # type: ignore[attr-defined]
    assert tuple(d for d in scraped.devices if d.uuid in wanted_uuids) == reading["devices"]
    assert tuple(s for s in scraped.samples if s.uuid in wanted_uuids) == tick.devices
    assert len(mapped.readings) >= 3  # one per step the page was scraped for


def test_the_aiperf_gpu_reads_its_real_values() -> None:
    tick = _mapped("scrape")["ed7e7a5e585f"].readings[-1]["tick"]
    assert isinstance(tick, Tick)
    (gpu,) = tick.devices
    assert (gpu.power_w, gpu.energy_mj, gpu.sm_clock_mhz) == (22.582, 955287014, 210.0)


def test_pod_labels_become_the_gpus_workload_as_on_the_scrape_path() -> None:
    tick = _mapped("scrape")["424773df46e0"].readings[-1]["tick"]
    assert isinstance(tick, Tick)
    (proc,) = tick.processes
    assert (proc.owner.namespace, proc.owner.pod, proc.owner.container) == ("foo", "bar", "baz")
    assert proc.pid < 0
    assert [p.pid for p in tick.devices[0].processes] == [proc.pid]


def test_node_exporter_gauges_and_info_come_through() -> None:
    page = parse_metrics(
        (PAGES / "node_exporter-e2e-output.txt").read_text("utf-8"), keep=node_exporter.wanted
    )
    readings = _mapped("scrape")["127.0.0.1"].readings
    info = readings[-1]["host"]
    tick = readings[-1]["tick"]
    assert isinstance(info, HostInfo) and isinstance(tick, Tick) and tick.host_sample is not None
    cpus = {s.labels["cpu"] for s in page["node_cpu_seconds_total"]}
    assert info.cpu_count == len(cpus)
    assert info.memory_total == page["node_memory_MemTotal_bytes"][0].value
    assert info.cpu_model == page["node_cpu_info"][0].labels["model_name"]
    assert tick.host_sample.mem_used == node_exporter.memory_used(page, info.memory_total)
    assert tick.host_sample.load1 == page["node_load1"][0].value
    # The page is static: its counters do not move, so every CPU is idle between steps.
    assert tick.host_sample.per_core == (0.0,) * len(cpus)


def _energy_by_gpu(readings: list[dict[str, object]]) -> dict[str, float]:
    sink = ListSink()
    NodeIngest(sink, cpu_tdp_w=100.0, interval_s=60.0).ingest(readings)
    total: dict[str, float] = {}
    for tick in sink.ticks:
        for uuid, interval in tick.device_intervals.items():
            assert interval.energy_measured
            total[uuid] = total.get(uuid, 0.0) + (interval.energy_j or 0.0)
    return total


def test_an_energy_counter_reset_counts_on_from_zero() -> None:
    (mapped,) = _mapped("history").values()
    energy = _energy_by_gpu(mapped.readings)
    answer = matrix(_json("history-range-0-dcgm.json")["data"])
    resets = 0
    for series in answer:
        if series.labels["__name__"] != dcgm.ENERGY:
            continue
        uuid = series.labels["UUID"]
        values = [v for _, v in series.points]
        # What the counter says, read independently: increases, and after a drop the new value.
        expected_mj = sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
        assert energy[uuid] == pytest.approx(expected_mj / 1000.0, abs=1e-6)
        # The history's counter grows by power x 60 s each step and restarts from 0 at a reset
        # (that step's energy is lost): the power series tells the same total.
        (power,) = [
            [p for _, p in s.points]
            for s in answer
            if s.labels["__name__"] == "DCGM_FI_DEV_POWER_USAGE" and s.labels["UUID"] == uuid
        ]
        reset = INDEX["history_reset"]
        lost = [i for i, (ts, v) in enumerate(series.points) if ts == reset and v == 0]
        resets += len(lost)
        from_power = sum(p * 60.0 for i, p in enumerate(power[:-1]) if i + 1 not in lost)
        # Within 1 %: the generator's counter is not exactly its power x 60 s in busy phases
        # (its utilisation term repeats every 45 steps, its counter's shift every 240).
        assert energy[uuid] == pytest.approx(from_power, rel=0.01)
        if lost:
            assert values[-1] < values[0]  # the counter went back: a reset in the window
    assert resets == 1  # the first GPU's counter restarts inside the captured window


def test_cpu_utilisation_per_step_comes_from_the_cpu_seconds_counter() -> None:
    (mapped,) = _mapped("history").values()
    samples = [r["tick"].host_sample for r in mapped.readings]  # type: ignore[attr-defined]
    assert samples[0] is None  # a counter needs two steps
    # The history: idle 70 %, iowait 1 % (both idle for node_exporter's readers), the rest busy.
    for sample in samples[1:]:
        assert sample.cpu_percent == pytest.approx(29.0, abs=0.01)
        assert sample.per_core == pytest.approx((29.0,) * 4, abs=0.01)


def test_a_cpu_counter_reset_gives_that_step_no_utilisation() -> None:
    mapper = ps.HostMapper("h")
    steps: dict[float, Any] = {}
    labels = {"instance": "h:9100", "cpu": "0"}
    for ts, busy, idle in ((0.0, 100.0, 900.0), (60.0, 130.0, 930.0), (120.0, 1.0, 2.0)):
        steps[ts] = {
            "node_cpu_seconds_total": [
                ps.PromSample({**labels, "mode": "user"}, busy),
                ps.PromSample({**labels, "mode": "idle"}, idle),
            ],
            "node_memory_MemTotal_bytes": [ps.PromSample({"instance": "h:9100"}, 1e9)],
        }
    samples = [r["tick"].host_sample for r in mapper.map(steps).readings]  # type: ignore[attr-defined]
    assert samples[1].cpu_percent == pytest.approx(50.0)
    assert samples[2].per_core == (0.0,)


def test_energy_resets_are_corrected_across_calls_and_blanks_are_left_to_the_mapper() -> None:
    mapper = ps.HostMapper("h")
    labels = {"UUID": "GPU-1", "gpu": "0", "Hostname": "h"}

    def step(value: float) -> dict[str, list[ps.PromSample]]:
        return {dcgm.ENERGY: [ps.PromSample(labels, value)]}

    got = []
    for ts, value in enumerate((1000.0, 5000.0, 200.0, 700.0, float(dcgm.INT64_BLANK), 900.0)):
        result = mapper.map({float(ts): step(value)})
        got.append(result.readings[0]["tick"].devices[0].energy_mj)  # type: ignore[attr-defined]
    assert got == [1000, 5000, 5200, 5700, None, 5900]


@pytest.mark.parametrize(
    ("instance", "host"),
    [("gpu1:9100", "gpu1"), ("10.0.0.5:9400", "10.0.0.5"), ("[::1]:9100", "::1"),
     ("node-a", "node-a"), ("", None), (None, None), ("host:metrics", "host:metrics")],
)  # fmt: skip
def test_instance_host_drops_only_a_port(instance: str | None, host: str | None) -> None:
    assert ps.instance_host(instance) == host


def test_every_query_carries_the_match_and_selects_exactly_the_batch() -> None:
    hosts = list(_hosts("history").values())
    match = '{cluster="a.b", env!="x"}'
    found = ps.queries(hosts, match)
    assert {kind for kind, _ in found} == {ps.DCGM, ps.NODE, ps.CPU_BUSY, ps.CPU_IDLE, ps.CPU_INFO}
    for _, query in found:
        assert 'cluster="a.b", env!="x"}' in query
    uuids = sorted(hosts[0].gpus["UUID"])
    matcher = ps.any_of("UUID", uuids)
    pattern = json.loads(matcher.partition("=~")[2])  # the PromQL string is JSON-compatible here
    assert all(re.fullmatch(pattern, u) for u in uuids)
    assert not re.fullmatch(pattern, uuids[0] + "0")
    assert not re.fullmatch(
        ps.any_of("i", ["a.b"]).partition("=~")[2].strip('"').replace("\\\\", "\\"), "axb"
    )


def test_batches_bound_gpus_and_hosts() -> None:
    hosts = [
        ps.HostTargets(f"h{i:02d}", gpus={"UUID": {f"GPU-{i}-{g}" for g in range(8)}})
        for i in range(20)
    ]
    groups = ps.batches(hosts, max_gpus=32, max_hosts=16)
    assert [len(g) for g in groups] == [4, 4, 4, 4, 4]
    assert sorted(n for g in groups for n in g) == [h.name for h in hosts]
    big = [ps.HostTargets("big", gpus={"UUID": {f"G{g}" for g in range(100)}})]
    assert ps.batches(big, max_gpus=32, max_hosts=16) == [["big"]]  # a host is never split
    nodes = [ps.HostTargets(f"n{i:02d}", instances={f"n{i}:9100"}) for i in range(40)]
    assert [len(g) for g in ps.batches(nodes, max_gpus=32, max_hosts=16)] == [16, 16, 8]


def test_the_selector_merges_braced_and_bare_matchers() -> None:
    assert ps.selector('__name__="x"', None, '{a="1"}', "") == '{__name__="x", a="1"}'
