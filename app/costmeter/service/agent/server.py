"""The agent's HTTP(S) server: small, bounded, read-only, on one event loop.

Every connection carries one request and is closed after the answer (no keep-alive). Request
heads are read by an asyncio event loop (connection.py): a connection that sends nothing, or a
byte a second, costs a few kilobytes and a timer, not a thread, so hundreds of them do not keep
a client with a token from being served. The TLS handshake, the request line and the headers
must together arrive within ``request_timeout_s`` (else 408; a handshake that does not finish is
closed) and the head must fit in ``MAX_HEAD_BYTES`` (else 431); bodies are refused; only GET and
HEAD exist. At most ``max_connections`` connections are open at once, and ``max_per_client``
from one address; at a limit, a connection still waiting for its request makes room, else the
new one gets a quick 503 (over TLS it is closed) (admission.py). Answers, which read the buffer
database, are computed in a small thread pool, off the loop. Refusals are logged at most once
per 10 s (refusals.py); nothing is logged from the headers (the token is in one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlsplit

from costmeter.config import AgentConfig
from costmeter.service.agent.admission import BUSY, Admission, fit_file_limit
from costmeter.service.agent.auth import BearerAuth
from costmeter.service.agent.connection import Connection
from costmeter.service.agent.http1 import (
    MAX_HEAD_BYTES,
    BadRequest,
    Response,
    Route,
    error,
    json_response,
    parse_head,
)
from costmeter.service.agent.refusals import RefusalLog

__all__ = [
    "MAX_HEAD_BYTES",
    "AgentServer",
    "BadRequest",
    "Response",
    "Route",
    "error",
    "json_response",
]

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
ANSWER_WORKERS = 4
_DEFAULTS = AgentConfig()


class AgentServer:
    """Bound at construction (OSError when the address is taken); ``serve_forever`` in a thread,
    ``shutdown`` from another, then ``server_close`` (the same life as a socketserver)."""

    def __init__(
        self,
        address: tuple[str, int],
        routes: Mapping[str, Route],
        auth: BearerAuth,
        *,
        tls: ssl.SSLContext | None = None,
        request_timeout_s: float = _DEFAULTS.request_timeout_s,
        max_connections: int = _DEFAULTS.max_connections,
        max_per_client: int = _DEFAULTS.max_per_client,
    ) -> None:
        if not request_timeout_s > 0 or max_connections < 1 or max_per_client < 1:
            raise ValueError("the agent's limits must be greater than 0.")
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name == "posix":
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(address)
            self._sock.listen(LISTEN_BACKLOG)
        except OSError:
            self._sock.close()
            raise
        self.server_address: tuple[Any, ...] = self._sock.getsockname()
        self.routes = dict(routes)
        self.auth = auth
        self.tls = tls
        if tls is not None:
            # One request per connection: a TLS 1.3 session ticket would never be used, and
            # asyncio sends the tickets only with the answer, so the client's request (Nagle)
            # waited for a delayed ACK: 40 ms on every request.
            tls.num_tickets = 0
        self.request_timeout_s = request_timeout_s
        self.admission: Admission[Connection] = Admission(
            fit_file_limit(max_connections), max_per_client
        )
        self.refusals = RefusalLog(log)
        self._pool = ThreadPoolExecutor(ANSWER_WORKERS, thread_name_prefix="agent-answer")
        self.connections: set[Connection] = set()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._stopped = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"{'https' if self.tls else 'http'}://{shown}:{port}"

    @property
    def refused_busy(self) -> int:
        return self.refusals.total[BUSY]

    @property
    def refused_auth(self) -> int:
        return self.refusals.total["auth"]

    # -- life -------------------------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until ``shutdown``; ``poll_interval`` is how often it looks for that request."""
        self._started.set()
        try:
            if not self._stop.is_set():
                asyncio.run(self._serve(poll_interval))
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Ask ``serve_forever`` to return, and wait until it has (if it was started)."""
        self._stop.set()
        if self._started.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, poll_interval: float) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        server = await loop.create_server(
            lambda: Connection(self), sock=self._sock, backlog=LISTEN_BACKLOG
        )
        try:
            while not self._stop.is_set():
                await asyncio.sleep(poll_interval)
                self.refusals.flush()
        finally:
            server.close()
            for conn in list(self.connections):
                conn.abort()
            for _ in range(3):  # let connection_lost run for every aborted connection
                await asyncio.sleep(0)
            self.refusals.flush(force=True)

    # -- answers ------------------------------------------------------------------------------
    def refuse(self, kind: str, client: str, reason: str) -> None:
        self.refusals.note(kind, client, reason)

    def answer(self, conn: Connection, head: bytes) -> None:
        """Check the head; answer at once, or compute the route's answer in the pool."""
        try:
            method, target, headers = parse_head(head)
        except BadRequest as err:
            self.refuse("bad_request", conn.client, str(err))
            conn.respond("", error(400, str(err)))
            return
        if method not in ("GET", "HEAD"):
            self.refuse("bad_request", conn.client, "a method other than GET or HEAD.")
            conn.respond(
                method, error(405, "only GET and HEAD are served.", {"Allow": "GET, HEAD"})
            )
            return
        if headers.get("content-length", "0").strip() not in ("", "0") or (
            "transfer-encoding" in headers
        ):
            self.refuse("bad_request", conn.client, "a request with a body.")
            conn.respond(method, error(413, "this agent accepts no request body."))
            return
        refusal = self.auth.check(headers.get("authorization"))
        if refusal is not None:
            self.refuse("auth", conn.client, refusal)
            conn.respond(
                method, error(401, refusal, {"WWW-Authenticate": 'Bearer realm="costmeter"'})
            )
            return
        try:
            parts = urlsplit(target)
        except ValueError:
            self.refuse("bad_request", conn.client, "a malformed request target.")
            conn.respond(method, error(400, "the request target is malformed."))
            return
        path = unquote(parts.path)
        route = self.routes.get(path)
        if route is None:
            conn.respond(method, error(404, "no such endpoint; see /v1/info and /metrics."))
            return
        future = self._pool.submit(route, parts.query)
        assert self.loop is not None
        loop = self.loop

        def done(f: Future[Response]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the agent stopped
                loop.call_soon_threadsafe(self._routed, conn, method, path, f)

        future.add_done_callback(done)

    def _routed(self, conn: Connection, method: str, path: str, future: Future[Response]) -> None:
        if future.cancelled():
            conn.abort()
            return
        try:
            response = future.result()
        except BadRequest as err:
            self.refuse("bad_request", conn.client, str(err))
            response = error(400, str(err))
        except Exception:  # a bug or a broken buffer: say so, keep serving
            log.exception("The agent failed to answer %s %s.", method[:10], path[:100])
            response = error(500, "the agent failed to answer; its log says why.")
        conn.respond(method, response)
