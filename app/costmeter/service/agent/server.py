"""The agent's HTTP(S) server: small, bounded, read-only.

Every connection carries one request and is closed after the answer (no keep-alive), so a
client cannot hold a thread. The request line and headers together must arrive within
``request_timeout_s`` and fit in ``MAX_HEAD_BYTES``; bodies are refused; only GET and HEAD
exist. At most ``max_connections`` are served at once; the next ones get a quick 503. TLS, when
configured, is negotiated in the connection's own thread (a slow handshake never blocks
``accept``). Nothing is logged from the headers (the token is in one).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from socketserver import BaseRequestHandler, TCPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from costmeter.service.agent.auth import BearerAuth

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
WRITE_TIMEOUT_S = 30.0
REFUSAL_LOG_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(status: int, doc: Mapping[str, Any]) -> Response:
    return Response(status, json.dumps(doc, separators=(",", ":")).encode("utf-8"))


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status,
        json.dumps({"error": message}).encode("utf-8"),
        headers=dict(headers or {}),
    )


class BadRequest(Exception):
    """A query the endpoint cannot answer (-> 400 with this sentence)."""


#: path -> handler(query string) -> Response
Route = Callable[[str], Response]


class _HeadTooLarge(Exception):
    pass


class _HeadTooSlow(Exception):
    pass


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        routes: Mapping[str, Route],
        auth: BearerAuth,
        *,
        tls: ssl.SSLContext | None = None,
        request_timeout_s: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.routes = dict(routes)
        self.auth = auth
        self.tls = tls
        self.request_timeout_s = request_timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused_busy = 0
        self.refused_auth = 0
        self._logged_refusals = 0
        self._last_refusal_log = -math.inf
        self._log_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the address up in DNS (getfqdn): not needed, can be slow.
        TCPServer.server_bind(self)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"{'https' if self.tls else 'http'}://{shown}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_busy += 1
            if self.tls is None:  # a plain 503; over TLS there is no cheap way to say it
                _send_quietly(request, _encode(error(503, "the agent is busy; try again."), False))
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def log_refusal(self, client: str, reason: str) -> None:
        """At most one line per ``REFUSAL_LOG_EVERY_S``: a client guessing tokens cannot flood
        the log (the lines say how many refusals they stand for)."""
        with self._log_lock:
            self.refused_auth += 1
            now = time.monotonic()
            if now - self._last_refusal_log < REFUSAL_LOG_EVERY_S:
                return
            count = self.refused_auth - self._logged_refusals
            self._last_refusal_log, self._logged_refusals = now, self.refused_auth
        more = f" ({count - 1} more refusals since the last line)" if count > 1 else ""
        log.warning("Refused a request from %s: %s%s", client, reason, more)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("The agent failed to answer a request from %s.", client_address[0])


class _Handler(BaseRequestHandler):
    server: AgentServer

    def handle(self) -> None:
        srv = self.server
        sock: socket.socket = self.request
        deadline = time.monotonic() + srv.request_timeout_s
        try:
            if srv.tls is not None:
                sock.settimeout(srv.request_timeout_s)
                sock = srv.tls.wrap_socket(sock, server_side=True)
            head = _read_head(sock, deadline)
            method, response = self._answer(head)
        except _HeadTooLarge:
            method = ""
            response = error(431, f"the request head is larger than {MAX_HEAD_BYTES} bytes.")
        except _HeadTooSlow:
            method = ""
            response = error(408, "the request took too long to arrive.")
        except (OSError, ssl.SSLError, ValueError) as err:
            log.debug("A connection from %s failed: %s", self.client_address[0], err)
            sock.close()
            return
        _send_quietly(sock, _encode(response, method == "HEAD"))
        _finish(sock)

    def _answer(self, head: bytes) -> tuple[str, Response]:
        try:
            method, target, headers = _parse_head(head)
        except BadRequest as err:
            return "", error(400, str(err))
        if method not in ("GET", "HEAD"):
            return method, error(405, "only GET and HEAD are served.", {"Allow": "GET, HEAD"})
        if headers.get("content-length", "0").strip() not in ("", "0") or (
            "transfer-encoding" in headers
        ):
            return method, error(413, "this agent accepts no request body.")
        refusal = self.server.auth.check(headers.get("authorization"))
        if refusal is not None:
            self.server.log_refusal(str(self.client_address[0]), refusal)
            return method, error(401, refusal, {"WWW-Authenticate": 'Bearer realm="costmeter"'})
        parts = urlsplit(target)
        route = self.server.routes.get(unquote(parts.path))
        if route is None:
            return method, error(404, "no such endpoint; see /v1/info and /metrics.")
        try:
            return method, route(parts.query)
        except BadRequest as err:
            return method, error(400, str(err))
        except Exception:  # a bug or a broken buffer: say so, keep serving
            log.exception("The agent failed to answer %s %s.", method, parts.path[:100])
            return method, error(500, "the agent failed to answer; its log says why.")


def _encode(response: Response, head_only: bool) -> bytes:
    reason = HTTPStatus(response.status).phrase
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        *(f"{k}: {v}" for k, v in response.headers.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.settimeout(WRITE_TIMEOUT_S)
        sock.sendall(data)
    except (OSError, ssl.SSLError):
        pass  # the client went away; nothing to tell it


def _read_head(sock: socket.socket, deadline: float) -> bytes:
    """The bytes up to the blank line after the headers, within the deadline and size bound."""
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            end = buf.find(b"\n\n")
        if end > MAX_HEAD_BYTES or (end < 0 and len(buf) > MAX_HEAD_BYTES):
            raise _HeadTooLarge
        if end >= 0:
            return bytes(buf[:end])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _HeadTooSlow
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise _HeadTooSlow from None
        if not chunk:
            raise ValueError("the client closed the connection before its request ended")
        buf += chunk


def _finish(sock: socket.socket) -> None:
    """Close after the answer; read a little of what the client still sends (a body it was told
    not to send) so that the close does not reset the connection before it reads the answer."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        for _ in range(16):
            if not sock.recv(4096):
                break
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        sock.close()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("the request line is not 'METHOD /path HTTP/1.1'.")
    method, target, _ = parts
    if not method.isalpha() or not target.startswith("/"):
        raise BadRequest("the request line is not 'METHOD /path HTTP/1.1'.")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("a request header is malformed.")
        key = name.lower()
        if key in headers and key in ("authorization", "content-length", "host"):
            raise BadRequest(f"the header {name} is given twice.")
        headers[key] = value.strip()
    return method, target, headers
