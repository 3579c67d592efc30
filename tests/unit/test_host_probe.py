"""The Hosts page's "Test connection", Qt-free: one GET through the collector's Fetcher, every
failure said in the probe's own words (real servers on loopback)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from costmeter.core import HostInfo
from costmeter.sampling.wire import AgentInfo, encode_info
from costmeter.service.remote import probe as probe_module
from costmeter.service.remote.probe import ProbeError, probe
from costmeter.store.testing import device_infos, host_info

TOKEN = "s3cret-token"
INFO: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/v1/info": (b"hello, not json", 200),
            "/metrics": (b"", 404),
            "/auth/v1/info": (INFO, 200),
            "/forbidden/metrics": (b"", 403),
            "/moved/metrics": (b"", 302),
            "/broken/metrics": (b"", 500),
            "/big/metrics": (b"x" * 4096, 200),
            "/dcgm/metrics": (_DCGM, 200),
            "/node/metrics": (_NODE, 200),
        }
        body, code = routes.get(self.path, (b"", 404))
        if self.path.startswith("/auth/") and self.headers.get("Authorization") != (
            f"Bearer {TOKEN}"
        ):
            body, code = b"", 401
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "http://127.0.0.1:1/metrics")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


#: Real exporter pages (see tests/data/exporters/PROVENANCE.md).
EXPORTERS = Path(__file__).resolve().parents[1] / "data" / "exporters"
_DCGM = (EXPORTERS / "aiperf-dcgm-single-gpu.txt").read_bytes()
_NODE = (EXPORTERS / "node_exporter-e2e-output.txt").read_bytes()


@pytest.fixture
def plain_server() -> Iterator[str]:
    global INFO
    host: HostInfo = host_info("gpu-box-1")
    info = AgentInfo("0.1.0", host, tuple(device_infos("gpu-box-1", 2)), 1.0, None, None, "nvml")
    INFO = json.dumps(encode_info(info)).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_probe_failures_are_said_in_words(plain_server: str) -> None:
    with pytest.raises(ProbeError, match=r"like a Costmeter agent \(not JSON\)"):
        probe(f"http://{plain_server}", "agent", None)
    with pytest.raises(ProbeError, match=r"nothing is served at .*/metrics \(404\)"):
        probe(f"http://{plain_server}", "prometheus", None)
    with pytest.raises(ProbeError, match="TLS handshake with"):
        probe(f"https://{plain_server}", "agent", None)  # TLS to a plain-HTTP server
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection (backlog) and never answers
    try:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ProbeError, match=r"did not answer within 0.5 s"):
            probe(f"http://127.0.0.1:{port}", "agent", None, timeout=0.5)
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_tokens_status_codes_and_redirects_in_words(plain_server: str) -> None:
    base = f"http://{plain_server}"
    with pytest.raises(ProbeError, match=r"asks for a token \(401\)"):
        probe(f"{base}/auth", "agent", None)
    with pytest.raises(ProbeError, match=r"refused the token \(401\): it is wrong"):
        probe(f"{base}/auth", "agent", "not-the-token")
    assert probe(f"{base}/auth", "agent", TOKEN).startswith("reached gpu-box-1: 2 GPUs")
    with pytest.raises(ProbeError, match=r"refused access \(403 Forbidden\)"):
        probe(f"{base}/forbidden/metrics", "prometheus", None)
    # A redirect is not followed: the token would go to another address.
    with pytest.raises(ProbeError, match=r"redirects elsewhere \(HTTP 302\)"):
        probe(f"{base}/moved/metrics", "prometheus", TOKEN)
    with pytest.raises(ProbeError, match=r"answered HTTP 500"):
        probe(f"{base}/broken/metrics", "prometheus", None)
    with pytest.raises(ProbeError, match=r"holds a character a token may not hold"):
        probe(f"{base}/auth", "agent", "bad token\n")


def test_an_oversized_answer_and_a_closed_port(
    plain_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe_module, "MAX_BYTES", 1024)
    with pytest.raises(ProbeError, match=r"answered with more than"):
        probe(f"http://{plain_server}/big/metrics", "prometheus", None)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ProbeError, match=r"refused: nothing listens there"):
        probe(f"http://127.0.0.1:{port}", "agent", None)


def test_a_host_that_hangs_up_is_said_in_words() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        with pytest.raises(ProbeError, match=r"could not be read: Remote end closed connection"):
            probe(f"http://127.0.0.1:{port}", "agent", None)
    finally:
        thread.join(5)
        listener.close()


def test_real_exporter_pages_are_recognised(plain_server: str) -> None:
    said = probe(f"http://{plain_server}/dcgm/metrics", "prometheus", None)
    assert said.endswith(", 1 GPU (dcgm-exporter).") and "node_exporter" not in said, said
    said = probe(f"http://{plain_server}/node/metrics", "prometheus", None)
    assert said.endswith("series, node_exporter CPU.") and "GPU" not in said, said
