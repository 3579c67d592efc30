"""The agent's listen policy, token check, HTTP server bounds and query parsing (in process)."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.service.agent.api import MAX_LIMIT, parse_samples_query
from costmeter.service.agent.auth import (
    BearerAuth,
    ListenRefused,
    check_listen,
    is_loopback,
    parse_listen,
)
from costmeter.service.agent.server import AgentServer, BadRequest, Response

FUZZ = settings(
    max_examples=120, deadline=5000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
TOKEN = "tok-123"


# -- listen policy --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "9464", ":9464", "host:", "h:x", "h:65536", "::1:80", "h:-1"])
def test_parse_listen_refuses_with_an_example(text: str) -> None:
    with pytest.raises(ListenRefused, match=r"9464|0 to 65535"):
        parse_listen(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("fe80::1", False),
        ("no-such-host.invalid", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_needs_a_token() -> None:
    check_listen("127.0.0.1", has_token=False)
    check_listen("0.0.0.0", has_token=True)
    for host in ("0.0.0.0", "::", "10.1.2.3"):
        with pytest.raises(ListenRefused, match="--token-file") as err:
            check_listen(host, has_token=False)
        assert host in str(err.value) and "chmod 600" in str(err.value)


# -- token check ---------------------------------------------------------------------------------
def test_bearer_auth() -> None:
    open_auth = BearerAuth(None)
    assert not open_auth.enabled and open_auth.check(None) is None
    auth = BearerAuth(TOKEN)
    assert auth.check(f"Bearer {TOKEN}") is None
    assert auth.check(f"bearer   {TOKEN} ") is None
    for header in (
        None,
        "",
        "Bearer",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        "Bearer tok-12",
        TOKEN,
    ):
        reason = auth.check(header)
        assert reason is not None and TOKEN not in reason


@FUZZ
@given(header=st.none() | st.text(max_size=80))
def test_bearer_auth_never_raises_and_accepts_only_the_token(header: str | None) -> None:
    reason = BearerAuth(TOKEN).check(header)
    if reason is None:  # accepted: only ever "Bearer <the token>"
        assert header is not None
        words = header.split()
        assert len(words) == 2 and words[0].lower() == "bearer" and words[1] == TOKEN
    else:
        assert TOKEN not in reason


# -- query parsing --------------------------------------------------------------------------------
def test_samples_query() -> None:
    assert parse_samples_query("") == (-math.inf, 600)
    assert parse_samples_query("since=1700000000.25&limit=5") == (1700000000.25, 5)
    assert parse_samples_query("limit=999999") == (-math.inf, MAX_LIMIT)
    for bad in ("since=x", "since=nan", "since=-inf", "limit=0", "limit=1.5", "a=1", "since"):
        with pytest.raises(BadRequest):
            parse_samples_query(bad)


@FUZZ
@given(query=st.text(max_size=200))
def test_any_query_parses_or_gives_a_sentence(query: str) -> None:
    try:
        since, limit = parse_samples_query(query)
    except BadRequest as err:
        assert str(err).endswith(".")
    else:
        assert not math.isnan(since) and 1 <= limit <= MAX_LIMIT


# -- the server ----------------------------------------------------------------------------------
class Served:
    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self.port = server.server_address[1]

    def request(self, data: bytes, timeout: float = 10.0) -> bytes:
        host = str(self.server.server_address[0])
        with socket.create_connection((host, self.port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer and close before it has read everything
            out = b""
            try:
                while chunk := sock.recv(65536):
                    out += chunk
            except ConnectionResetError:
                pass
            return out


BLOCK = threading.Event()


def _blocking_route(query: str) -> Response:
    BLOCK.wait(10)
    return Response(200, b'{"ok":true}')


def _route(query: str) -> Response:
    if query == "fail":
        raise BadRequest("the query says fail.")
    if query == "boom":
        raise RuntimeError("a bug")
    return Response(200, b'{"ok":true}')


def serve(token: str | None, host: str = "127.0.0.1", **kw: float) -> Iterator[Served]:
    server = AgentServer(
        (host, 0),
        {"/x": _route, "/block": _blocking_route},
        BearerAuth(token),
        request_timeout_s=kw.get("request_timeout_s", 2.0),
        max_connections=int(kw.get("max_connections", 32)),
        max_per_client=int(kw.get("max_per_client", 32)),
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Served(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    yield from serve(TOKEN)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def test_server_answers(served: Served) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    assert status_of(served.request(b"GET /x HTTP/1.1\r\n" + auth + b"\r\n")) == 200
    assert status_of(served.request(b"GET /x?fail HTTP/1.1\r\n" + auth + b"\r\n")) == 400
    assert status_of(served.request(b"GET /y HTTP/1.1\r\n" + auth + b"\r\n")) == 404
    assert status_of(served.request(b"GET /y HTTP/1.1\r\n\r\n")) == 401  # auth before routing
    reply = served.request(b"GET /x HTTP/1.1\r\nAuthorization: Bearer no\r\n\r\n")
    assert status_of(reply) == 401 and b"WWW-Authenticate: Bearer" in reply
    dup = b"GET /x HTTP/1.1\r\n" + auth + auth + b"\r\n"
    assert status_of(served.request(dup)) == 400
    assert status_of(served.request(b"DELETE /x HTTP/1.1\r\n" + auth + b"\r\n")) == 405
    assert status_of(served.request(b"GET /x HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n")) == 431


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_loopback() -> None:
    for srv in serve(None, host="::1"):
        assert srv.server.url.startswith("http://[::1]:")
        assert status_of(srv.request(b"GET /x HTTP/1.1\r\n\r\n")) == 200


def test_a_failing_endpoint_is_a_500_and_the_server_goes_on(served: Served) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    assert status_of(served.request(b"GET /x?boom HTTP/1.1\r\n" + auth + b"\r\n")) == 500
    assert status_of(served.request(b"GET /x HTTP/1.1\r\n" + auth + b"\r\n")) == 200


def test_refusals_are_logged_without_flooding(caplog: pytest.LogCaptureFixture) -> None:
    for srv in serve("other-token"):
        with caplog.at_level(logging.WARNING, logger="costmeter.service.agent.server"):
            for _ in range(5):
                reply = srv.request(b"GET /x HTTP/1.1\r\nAuthorization: Bearer guess\r\n\r\n")
                assert status_of(reply) == 401
        lines = [r.getMessage() for r in caplog.records if "Refused" in r.getMessage()]
        assert len(lines) == 1 and "127.0.0.1" in lines[0] and "guess" not in lines[0]
        assert srv.server.refused_auth == 5


def test_a_silent_client_is_cut_off_and_others_still_served() -> None:
    for srv in serve(None, request_timeout_s=0.5):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as idle:
            assert status_of(srv.request(b"GET /x HTTP/1.1\r\n\r\n")) == 200
            reply = idle.recv(4096)
        assert status_of(reply) == 408 and time.monotonic() - started < 3


def test_idle_connections_make_room_for_a_request() -> None:
    """At the limit, the connection that has waited longest without a request is closed (503)
    so that a client sending its request at once is served (it used to get the 503)."""
    for srv in serve(None, max_connections=2, request_timeout_s=5.0):
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(2)]
        try:
            time.sleep(0.2)
            assert status_of(srv.request(b"GET /x HTTP/1.1\r\n\r\n")) == 200
            assert status_of(idle[0].recv(4096)) == 503  # the oldest made room
            idle[1].settimeout(0.3)
            with pytest.raises(TimeoutError):
                idle[1].recv(4096)  # the younger one is still held
        finally:
            for s in idle:
                s.close()
        assert srv.server.refusals.total["evicted"] == 1 and srv.server.refused_busy == 0


def _ask_blocking(srv: Served, replies: list[bytes]) -> None:
    replies.append(srv.request(b"GET /block HTTP/1.1\r\n\r\n"))


def test_connections_beyond_the_limit_get_503_when_all_are_being_answered() -> None:
    for srv in serve(None, max_connections=2, request_timeout_s=5.0):
        BLOCK.clear()
        replies: list[bytes] = []
        busy = [threading.Thread(target=_ask_blocking, args=(srv, replies)) for _ in range(2)]
        try:
            for t in busy:
                t.start()
            deadline = time.monotonic() + 5
            while srv.server.admission.open < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.1)
            assert status_of(srv.request(b"GET /x HTTP/1.1\r\n\r\n")) == 503
        finally:
            BLOCK.set()
            for t in busy:
                t.join(10)
        assert [status_of(r) for r in replies] == [200, 200]
        assert status_of(srv.request(b"GET /x HTTP/1.1\r\n\r\n")) == 200
        assert srv.server.refused_busy == 1


head_lines = st.lists(
    st.one_of(
        st.sampled_from(["Authorization: Bearer tok-123", "Host: x", "Content-Length: 0", ""]),
        st.text(max_size=60).map(lambda s: s.replace("\r", "").replace("\n", "")),
    ),
    max_size=6,
)
request_lines = st.one_of(
    st.sampled_from(["GET /x HTTP/1.1", "HEAD /x HTTP/1.0", "GET /x?fail HTTP/1.1"]),
    st.builds(
        lambda m, p: f"{m} {p} HTTP/1.1", st.sampled_from(["GET", "POST", "G T", "get"]), st.text()
    ),
    st.text(max_size=100),
)


@FUZZ
@given(line=request_lines, headers=head_lines, tail=st.binary(max_size=100))
def test_hostile_requests_get_a_clean_status_and_never_hang(
    served: Served, line: str, headers: list[str], tail: bytes
) -> None:
    data = "\r\n".join([line, *headers]).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + tail
    started = time.monotonic()
    reply = served.request(data)
    assert time.monotonic() - started < 5
    assert reply.startswith(b"HTTP/1.1 "), reply[:80]
    assert status_of(reply) in (200, 400, 401, 404, 405, 413, 431)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_never_crash_the_server(served: Served, data: bytes) -> None:
    reply = served.request(data, timeout=10)
    # no blank line: the head never ended, the server gives up after its time limit (408)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 ")


def test_a_head_sent_byte_by_byte_is_read_whole(served: Served) -> None:
    data = f"GET /x HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(0.002)
        assert status_of(sock.recv(4096)) == 200


def test_a_target_urlsplit_cannot_read_is_a_400(served: Served) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    assert status_of(served.request(b"GET //[x HTTP/1.1\r\n" + auth + b"\r\n")) == 400
