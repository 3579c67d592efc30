"""The collector's HTTP GET against misbehaving servers on 127.0.0.1: clean RemoteErrors."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from costmeter.service.remote.http import Fetcher, RemoteError


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok":
            self._send(200, b"hello")
        elif self.path == "/auth":
            ok = self.headers.get("Authorization") == "Bearer t0ken"
            self._send(200 if ok else 401, b"{}")
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        elif self.path == "/undeclared":  # no Content-Length: the body ends at close
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"y" * 5000)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)
        else:
            self._send(500, b"boom")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_answer_and_the_bearer_token(base: str) -> None:
    assert Fetcher().get(base + "/ok", max_bytes=100) == b"hello"
    assert Fetcher(token="t0ken").get(base + "/auth", max_bytes=100) == b"{}"
    with pytest.raises(RemoteError, match=r"refused the token \(HTTP 401\)") as err:
        Fetcher(token="wrong").get(base + "/auth", max_bytes=100)
    assert err.value.kind == "auth"


@pytest.mark.parametrize(
    ("path", "kind", "needle"),
    [
        ("/big", "protocol", "answer of 5000 bytes, more than the 1000"),
        ("/undeclared", "protocol", "more than the 1000 bytes"),
        ("/redirect", "protocol", "HTTP 302"),
        ("/nothing", "protocol", "HTTP 500"),
    ],
)
def test_bad_answers_are_protocol_errors(base: str, path: str, kind: str, needle: str) -> None:
    with pytest.raises(RemoteError, match=needle) as err:
        Fetcher().get(base + path, max_bytes=1000)
    assert err.value.kind == kind


def test_a_trickling_server_is_cut_off(base: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="too slowly") as err:
        Fetcher(timeout_s=2.0, total_s=0.5).get(base + "/trickle", max_bytes=1000)
    assert err.value.kind == "unreachable"
    assert time.monotonic() - t0 < 3.0


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemoteError, match="connection refused") as err:
        Fetcher().get(f"http://127.0.0.1:{port}/v1/info", max_bytes=100)
    assert err.value.kind == "unreachable"
