"""The Prometheus test harness (tests/prometheus_server.py) against the real Debian Prometheus.

The server must answer query_range with the generated history's values exactly, show the energy
counter's reset, scrape a live page served on loopback, and be gone after its ``with`` block.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import prometheus_server as ps

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(ps.available() is not None, reason=str(ps.available())),
]

SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+) (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')
DAY = 86400.0
RESET_AT = (time.time() // DAY - 3) * DAY + 6 * 3600  # 3 days back, on a 6-hour boundary
START, END = RESET_AT - 3600, RESET_AT + 3600
GPUS, HOSTS = 3, 2


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], dict[float, float]]:
    """series (name, labels) -> {timestamp: value} of OpenMetrics sample lines."""
    series: dict[tuple[str, frozenset[tuple[str, str]]], dict[float, float]] = {}
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if found:
            name, labels, value, stamp = found.groups()
            key = (name, frozenset(LABEL.findall(labels)))
            series.setdefault(key, {})[float(stamp)] = float(value)
    return series


def query_range(url: str, query: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ps.PrometheusServer, str]]:
    tmp = tmp_path_factory.mktemp("prom-history")
    tsdb = tmp / "tsdb"
    for low, high in ps.history_windows(START, END):
        ps.write_history_blocks(tsdb, ps.dcgm_history(GPUS, HOSTS, low, high))
    with ps.PrometheusServer(tmp, tsdb=tsdb) as server:
        yield server, ps.dcgm_history(GPUS, HOSTS, START, END)


@pytest.mark.parametrize(
    "metric",
    [
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
    ],
)
def test_query_range_gives_the_history_values_exactly(
    history: tuple[ps.PrometheusServer, str], metric: str
) -> None:
    server, text = history
    expected = {k: v for k, v in parse(text).items() if k[0] == metric}
    assert expected
    # a few timestamps: either side of the reset, and the window's ends
    for at in (START, RESET_AT - 60, RESET_AT, RESET_AT + 60, END - END % 60):
        got = query_range(server.url, metric, at, at, 60)
        seen = {}
        for result in got:
            labels = dict(result["metric"])
            name = labels.pop("__name__")
            for stamp, value in result["values"]:
                seen[(name, frozenset(labels.items()))] = (stamp, float(value))
        assert set(seen) == set(expected), metric
        for key, (stamp, value) in seen.items():
            assert stamp == at
            assert value == expected[key][at], (key, at)


def test_the_energy_counter_resets_on_the_first_gpu_only(
    history: tuple[ps.PrometheusServer, str],
) -> None:
    server, _ = history
    assert ps.energy_resets(START, END) == [RESET_AT]
    query = "resets(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[2h])"
    got = query_range(server.url, query, END - END % 60, END - END % 60, 60)
    resets = {(r["metric"]["Hostname"], r["metric"]["gpu"]): r["values"][0][1] for r in got}
    assert resets == {
        ("gpu-node-000", "0"): "1",
        ("gpu-node-000", "1"): "0",
        ("gpu-node-001", "0"): "0",
    }
    first = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{Hostname="gpu-node-000",gpu="0"}'
    (series,) = query_range(server.url, first, RESET_AT - 60, RESET_AT, 60)
    before, after = (float(value) for _, value in series["values"])
    assert after == 0 < before


def test_gpu_series_carry_the_real_pages_labels(history: tuple[ps.PrometheusServer, str]) -> None:
    server, _ = history
    page = (ps.DCGM_PAGE).read_text("utf-8")
    first = next(ln for ln in page.splitlines() if ln.startswith("DCGM_FI_DEV_POWER_USAGE{"))
    page_labels = dict(LABEL.findall(first))
    got = query_range(server.url, "DCGM_FI_DEV_POWER_USAGE", END - 600, END, 60)
    assert len(got) == GPUS
    for result in got:
        labels = result["metric"]
        assert set(labels) == {*page_labels, "__name__", "instance", "job"}
        assert labels["modelName"] == page_labels["modelName"] == "Tesla T4"
        assert labels["DCGM_FI_DRIVER_VERSION"] == page_labels["DCGM_FI_DRIVER_VERSION"]
        assert labels["instance"] == labels["Hostname"] + ":9400"
        assert labels["UUID"].startswith("GPU-") and labels["UUID"] != page_labels["UUID"]


def test_windows_written_apart_make_the_same_history() -> None:
    whole = parse(ps.dcgm_history(GPUS, HOSTS, START, END))
    pieces: dict = {}
    for low, high in ps.history_windows(START, END, window_s=1800):
        for key, values in parse(ps.dcgm_history(GPUS, HOSTS, low, high)).items():
            overlap = set(pieces.get(key, {})) & set(values)
            assert not overlap, (key, overlap)
            pieces.setdefault(key, {}).update(values)
    assert pieces == whole


class _Page(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_scrapes_a_live_page_and_stops_cleanly(tmp_path: Path) -> None:
    page = (ps.EXPORTERS / "aiperf-dcgm-single-gpu.txt").read_bytes()
    handler = type("Page", (_Page,), {"body": page})
    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=exporter.serve_forever, daemon=True)
    thread.start()
    target = f"http://127.0.0.1:{exporter.server_address[1]}/metrics"
    try:
        with ps.PrometheusServer(tmp_path, scrape_urls=[target], scrape_interval_s=0.5) as server:
            process, port = server.process, server.port
            assert process is not None
            deadline = time.monotonic() + 60
            value = None
            while value is None and time.monotonic() < deadline:
                now = time.time()
                got = query_range(server.url, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", now, now, 1)
                value = got[0]["values"][0][1] if got else None
                time.sleep(0.2)
            assert value == "955287014"  # the page's counter, as served
            assert got[0]["metric"]["instance"] == target.split("/")[2]
        assert process.poll() is not None  # stopped and reaped
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    finally:
        exporter.shutdown()
        exporter.server_close()
        thread.join()


def test_a_bad_config_fails_with_the_log(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an http"):
        ps.PrometheusServer(tmp_path, scrape_urls=["ftp://127.0.0.1:1/x"]).start()
    with pytest.raises(ps.PrometheusError, match="promtool failed"):
        ps.write_history_blocks(tmp_path / "tsdb", "this is not openmetrics\n")


def test_only_the_first_gpus_energy_counter_ever_resets() -> None:
    """Sixty days at one-hour steps: every other counter only grows (no flaky resets on some
    dates), and each energy step is the power of that step times its length."""
    start = (time.time() // DAY - 60) * DAY
    end = start + 60 * DAY
    step = 3600.0
    resets = set(ps.energy_resets(start, end, step))
    assert len(resets) == 60 * 4 + 1  # both ends are on a boundary
    for (name, labels), values in parse(ps.dcgm_history(3, 2, start, end, step)).items():
        if not name.endswith(("_total", "ENERGY_CONSUMPTION")):
            continue
        first = dict(labels).get("gpu") == "0" and dict(labels).get("Hostname") == "gpu-node-000"
        times = sorted(values)
        for before, after in itertools.pairwise(times):
            if values[after] < values[before]:
                assert first and after in resets, (name, labels, after)
    for serial, every, steps in ((1, step, 48), (2, 60.0, 500)):
        gpu = ps.GpuSeries(serial, every, ps.gpu_template())
        k = int(start // every)
        for j in range(k, k + steps):
            assert gpu.energy_mj(j + 1) - gpu.energy_mj(j) == gpu.power_mw(j) * every
