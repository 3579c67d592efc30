"""Regenerate the captured query API answers in this folder (see PROVENANCE.md).

Run from the repository root: ``.venv/bin/python tests/data/prometheus/capture.py``. It serves
real exporter pages from tests/data/exporters/ on loopback, lets Debian's Prometheus scrape them
every second, and saves the raw JSON of the queries Costmeter's source makes; then it writes a
day of generated history (tests/prometheus_server.py) with promtool and saves the answers over a
window that holds an energy counter reset.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "app")]

from costmeter.service.remote import prom_series as ps  # noqa: E402
from prometheus_server import (  # noqa: E402
    PrometheusServer,
    dcgm_history,
    energy_resets,
    write_history_blocks,
)

PAGES = (
    "datadog-dcgm-fixture-metrics.txt",
    "datadog-dcgm-fixture-label-remap.txt",
    "aiperf-dcgm-single-gpu.txt",
    "dcgm-exporter-readme-kubernetes.txt",
    "node_exporter-e2e-output.txt",
)


def _serve(pages: dict[str, bytes]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _wait_scraped(url: str, targets: int) -> None:
    """Until every target has been scraped (Prometheus starts scraping after ~5 s)."""
    for _ in range(300):
        answer = json.loads(_get(url, "targets", []))
        if sum(t["health"] == "up" for t in answer["data"]["activeTargets"]) >= targets:
            return
        time.sleep(0.1)
    raise RuntimeError("the targets were not scraped in 30 s")


def _get(url: str, endpoint: str, params: list[tuple[str, str]]) -> bytes:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{endpoint}?{query}", timeout=30) as answer:
        return bytes(answer.read())


def _capture(url: str, prefix: str, start: float, end: float, step: float) -> dict[str, object]:
    """Save the discovery and every query of one batch of all hosts; returns the index."""
    gpu = _get(url, "series", [("match[]", ps.selector(ps.names(ps.GPU_MARKERS))),
                               ("start", f"{start:.3f}"), ("end", f"{end:.3f}")])  # fmt: skip
    node = _get(url, "series", [("match[]", ps.selector(ps.names(ps.NODE_MARKERS))),
                                ("start", f"{start:.3f}"), ("end", f"{end:.3f}")])  # fmt: skip
    (HERE / f"{prefix}-series-gpu.json").write_bytes(gpu)
    (HERE / f"{prefix}-series-node.json").write_bytes(node)
    hosts = ps.targets(json.loads(gpu)["data"], json.loads(node)["data"])
    files = []
    for n, (kind, query) in enumerate(ps.queries(list(hosts.values()), None)):
        params = [("query", query), ("start", f"{start:.3f}"), ("end", f"{end:.3f}"),
                  ("step", f"{step:.3f}")]  # fmt: skip
        name = f"{prefix}-range-{n}-{kind}.json"
        (HERE / name).write_bytes(_get(url, "query_range", params))
        files.append({"file": name, "kind": kind, "query": query})
    return {"start": start, "end": end, "step": step, "queries": files}


def main() -> None:
    tmp = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/costmeter-capture")
    tmp.mkdir(parents=True, exist_ok=True)
    pages = {name: (ROOT / "tests/data/exporters" / name).read_bytes() for name in PAGES}
    server = _serve(pages)
    port = server.server_address[1]
    urls = [f"http://127.0.0.1:{port}/{name}" for name in PAGES]
    index: dict[str, object] = {}
    try:
        with PrometheusServer(tmp, scrape_urls=urls, scrape_interval_s=1.0) as prom:
            _wait_scraped(prom.url, len(urls))
            time.sleep(5.5)
            end = float(int(time.time()) - 1)
            index["scrape"] = _capture(prom.url, "scrape", end - 4, end, 1.0)
            index["scrape_version"] = json.loads(_get(prom.url, "status/buildinfo", []))["data"][
                "version"
            ]
    finally:
        server.shutdown()
        server.server_close()
    day = 86400.0
    start = (time.time() // day - 3) * day
    reset = energy_resets(start, start + day)[1]
    tsdb = tmp / "history" / "data"
    write_history_blocks(tsdb, dcgm_history(2, 1, start, start + day, 60))
    with PrometheusServer(tsdb.parent, tsdb=tsdb) as prom:
        index["history"] = _capture(prom.url, "history", reset - 3600, reset + 3600, 60.0)
        index["history_reset"] = reset
    (HERE / "index.json").write_text(json.dumps(index, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
