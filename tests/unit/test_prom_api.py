"""The query API client against a loopback HTTP server: answers, refusals and limits.

The success answers served are real ones (tests/data/prometheus/, captured from Prometheus 2.42);
the error answers have the shape Prometheus documents (``status``, ``errorType``, ``error``).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from costmeter.service.remote.http import AUTH, PROTOCOL, UNREACHABLE, RemoteError
from costmeter.service.remote.prom_api import PromApi, matrix

PROM = Path(__file__).resolve().parents[1] / "data" / "prometheus"
REAL = (PROM / "history-range-0-dcgm.json").read_bytes()
Answer = tuple[int, bytes]


class Server:
    def __init__(self) -> None:
        self.answer: Callable[[str], Answer] = lambda path: (200, REAL)
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                me.requests.append(
                    (parts.path, urllib.parse.parse_qs(parts.query), self.headers["Authorization"])
                )
                status, body = me.answer(parts.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def shared() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def server(shared: Server) -> Server:
    shared.answer = lambda path: (200, REAL)
    shared.requests.clear()
    return shared


def _error(kind: str, text: str) -> bytes:
    return json.dumps({"status": "error", "errorType": kind, "error": text}).encode()


def test_a_real_answer_is_read_with_the_query_step_and_token_sent(server: Server) -> None:
    api = PromApi(server.url + "/prometheus/", token="s3cret-token")
    got = api.query_range("up", start=1000.0, end=1600.5, step=60.0)
    assert got == matrix(json.loads(REAL)["data"])
    assert len(got) == 22 and all(len(s.points) == 121 for s in got)
    path, query, auth = server.requests[0]
    assert path == "/prometheus/api/v1/query_range"
    assert query == {
        "query": ["up"],
        "start": ["1000.000"],
        "end": ["1600.500"],
        "step": ["60.000"],
    }
    assert auth == "Bearer s3cret-token"


def test_series_sends_every_matcher(server: Server) -> None:
    server.answer = lambda path: (200, (PROM / "scrape-series-node.json").read_bytes())
    got = PromApi(server.url).series(["a", 'b{c="d"}'], start=1.0, end=2.0)
    assert got[0]["__name__"] == "node_memory_MemTotal_bytes"
    assert server.requests[0][1]["match[]"] == ["a", 'b{c="d"}']


@pytest.mark.parametrize("status", [400, 422, 503])
def test_a_refusal_says_the_servers_reason(server: Server, status: int) -> None:
    server.answer = lambda path: (
        status,
        _error("bad_data", 'invalid parameter "query": 1:5: parse error'),
    )
    with pytest.raises(RemoteError) as caught:
        PromApi(server.url).query_range("up{", start=0.0, end=60.0, step=60.0)
    assert str(caught.value) == (
        f"{server.url[7:]} refused the query_range query (HTTP {status}): bad_data: invalid "
        'parameter "query": 1:5: parse error.'
    )
    assert caught.value.kind == PROTOCOL and caught.value.status == status


def test_an_error_status_in_a_200_answer_is_a_refusal(server: Server) -> None:
    server.answer = lambda path: (
        200,
        _error("execution", "query processing would load too many samples"),
    )
    with pytest.raises(RemoteError, match="refused the series query: execution: query processing"):
        PromApi(server.url).series(["up"], start=0.0, end=1.0)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>not found</html>", "it is not JSON"),
        (b"[]", "it is not a JSON object"),
        (b'{"status":"success","data":{"resultType":"vector","result":[]}}', "not a matrix"),
        (b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1]]}]}}',
         "is no [time, value]"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_the_query_api_is_named(
    server: Server, body: bytes, words: str
) -> None:
    server.answer = lambda path: (200, body)
    with pytest.raises(RemoteError) as caught:
        PromApi(server.url).query_range("up", start=0.0, end=60.0, step=60.0)
    assert words in str(caught.value)
    assert "is " + server.url + " a Prometheus-compatible server?" in str(caught.value)


def test_a_wrong_token_is_an_auth_error(server: Server) -> None:
    server.answer = lambda path: (401, b"Unauthorized")
    with pytest.raises(RemoteError) as caught:
        PromApi(server.url, token="wrong").query_range("up", start=0.0, end=60.0, step=60.0)
    assert caught.value.kind == AUTH
    assert "refused the token (HTTP 401)" in str(caught.value)


def test_a_too_large_answer_is_refused(server: Server) -> None:
    with pytest.raises(RemoteError, match="sent an answer of 59575 bytes, more than the 1000 "):
        PromApi(server.url, max_bytes=1000).query_range("up", start=0.0, end=60.0, step=60.0)


def test_an_unreachable_server_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemoteError) as caught:
        PromApi(f"http://127.0.0.1:{port}").query_range("up", start=0.0, end=60.0, step=60.0)
    assert caught.value.kind == UNREACHABLE
    assert "connection refused" in str(caught.value)


def test_nan_and_inf_points_are_dropped() -> None:
    values = [[1, "NaN"], [2, "+Inf"], [3, "1.5"]]
    data = {"resultType": "matrix", "result": [{"metric": {"a": "b"}, "values": values}]}
    (series,) = matrix(data)
    assert series.points == ((3.0, 1.5),)


def test_more_points_than_prometheus_allows_are_never_asked_for() -> None:
    with pytest.raises(ValueError, match="more than 11000 points"):
        PromApi("http://127.0.0.1:1").query_range("up", start=0.0, end=11000.0, step=1.0)
