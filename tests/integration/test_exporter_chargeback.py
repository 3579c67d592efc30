"""Chargeback on remote data: two dcgm-exporter pages with Kubernetes pod labels, written by
others (Datadog's and wandb's test pages, tests/data/exporters/PROVENANCE.md), served by real
HTTP servers on 127.0.0.1, recorded by ``costmeter record`` through ``[hosts.X]`` entries, then
``costmeter report --by namespace``: the page's namespaces get the money of their GPUs, and
groups + unattributed + idle add up to the plain report's total."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]
DATA = Path(__file__).resolve().parents[1] / "data" / "exporters"


def costmeter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COSTMETER, *args], capture_output=True, text=True, timeout=120)


def datadog_page() -> str:
    return (DATA / "datadog-dcgm-fixture-metrics.txt").read_text(encoding="utf-8")


def gke_page() -> str:
    """wandb's GKE template, its ``%f`` filled: memory copy 12.5 %, 41 C, 61.25 W per GPU."""
    template = (DATA / "wandb-dcgm-gke-template.txt").read_text(encoding="utf-8")
    return template % (12.5, 12.5, 41.0, 41.0, 61.25, 61.25)


def _server(body: str) -> http.server.ThreadingHTTPServer:
    data = body.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    home = tmp_path_factory.mktemp("exporters")
    servers = [_server(datadog_page()), _server(gke_page())]
    try:
        config = home / "config.toml"
        config.write_text(
            "".join(
                f'[hosts.{name}]\nurl = "http://127.0.0.1:{s.server_address[1]}/metrics"\n'
                'kind = "prometheus"\n\n'
                for name, s in zip(("ray-node", "gke-node"), servers, strict=True)
            ),
            encoding="utf-8",
        )
        db = home / "rec.db"
        rec = costmeter(
            "record", "--no-local", "--interval", "0.5", "--duration", "4", "--db", str(db),
            "--config", str(config),
        )  # fmt: skip
        assert rec.returncode == 0, rec.stderr
        yield db, config
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def report(recorded: tuple[Path, Path], *args: str) -> dict[str, object]:
    db, config = recorded
    out = costmeter("report", "--db", str(db), "--config", str(config), "--format", "json", *args)
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_the_pages_namespaces_are_charged_and_the_parts_add_up(
    recorded: tuple[Path, Path],
) -> None:
    total = report(recorded)["total"]["cost"]  # type: ignore[index]
    assert total > 0
    data = report(recorded, "--by", "namespace")
    groups = data["groups"]
    assert isinstance(groups, list)
    by_ns = {g["key"]["namespace"]: g for g in groups}
    assert {"ray-llm", "default"} <= set(by_ns)
    assert set(by_ns) <= {"ray-llm", "default", None}
    # Each workload is alone on its GPU for the whole recording (a few seconds).
    assert by_ns["default"]["gpu_hours"] > 1.0 / 3600
    assert by_ns["ray-llm"]["gpu_hours"] > 1.0 / 3600
    assert by_ns["default"]["energy_kwh"] > 0  # 61.25 W, from the page's power
    assert by_ns["default"]["cost"] > 0
    parts = sum(g["cost"] for g in groups)
    parts += data["unattributed"]["cost"] + data["idle"]["cost"]  # type: ignore[index]
    assert data["total"]["cost"] == pytest.approx(total, rel=0.01)  # type: ignore[index]
    assert parts == pytest.approx(total, rel=0.01)
    # The GKE node's GPU 0 (empty pod labels) and the two T4s held nobody: machine idle.
    assert data["idle"]["cost"] > 0  # type: ignore[index]


def test_by_pod_and_container_name_the_workloads(recorded: tuple[Path, Path]) -> None:
    data = report(recorded, "--by", "pod,container")
    keys = {(g["key"]["pod"], g["key"]["container"]) for g in data["groups"]}  # type: ignore[attr-defined]
    assert {("ray-1111111", "ray-worker"), ("dcgm-loadtest", "dcgm-loadtest")} <= keys
