"""One client connection of the agent's server: admitted or refused, its request head read
(through a TLS handshake when there is one), one answer written, then closed.

Everything here runs on the server's event loop (server.py); the answer itself is computed by
the server, in its thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

from costmeter.service.agent.admission import BUSY, Admission, client_key
from costmeter.service.agent.http1 import (
    MAX_HEAD_BYTES,
    HeadTooLarge,
    Response,
    encode,
    error,
    head_end,
)

if TYPE_CHECKING:
    from costmeter.service.agent.server import AgentServer

log = logging.getLogger(__name__)

#: A whole answer must be taken by the client within this.
WRITE_TIMEOUT_S = 30.0
#: After the answer, what the client still sends (a body it was told not to send) is read and
#: dropped for this long, at most ``LINGER_BYTES``, so that the close does not reset the
#: connection before the client has read the answer.
LINGER_S = 0.2
REFUSED_LINGER_S = 0.1
LINGER_BYTES = 64 * 1024
#: How long a TLS connection waits for the client's close_notify after the answer.
TLS_SHUTDOWN_S = 2.0


class Connection(asyncio.Protocol):
    """One client connection: admitted or refused, a head read, one answer, then closed."""

    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self.client = "?"
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._scanned = 0
        self._reading_head = False
        self._handshaken = False
        self._lingered = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._tls_task: asyncio.Task[None] | None = None

    # -- asyncio callbacks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        srv = self.server
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else "?"
        srv.connections.add(self)
        key = client_key(self.client)
        # Under pressure, a connection whose request is already here is not the one to close.
        heard = srv.admission.full(key) and _has_bytes(transport)
        refusal, evicted = srv.admission.admit(self, key, heard=heard)
        if refusal is not None:
            srv.refuse(refusal, self.client, _full(srv.admission, refusal))
            if srv.tls is not None:  # no cheap way to say 503 before a handshake
                transport.abort()
            else:
                self._send(encode(error(503, "the agent is busy; try again."), False))
                self._linger(REFUSED_LINGER_S)
            return
        self._reading_head = True
        self._later(srv.request_timeout_s, self._too_slow)
        if srv.tls is not None:
            transport.pause_reading()  # until start_tls owns the bytes
            self._tls_task = asyncio.get_running_loop().create_task(self._start_tls(srv.tls))
        else:
            self._handshaken = True
        for victim, why in evicted:
            victim.make_room(why)

    def data_received(self, data: bytes) -> None:
        if not self._reading_head:  # after the head: read and dropped, within bounds
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES and self.transport is not None:
                self.transport.close()
            return
        if not self._buf:
            self.server.admission.heard(self)
        self._buf += data
        if self._handshaken:  # else _start_tls has not taken the TLS transport yet
            self._scan()

    def _scan(self) -> None:
        start, self._scanned = self._scanned, max(0, len(self._buf) - 3)
        try:
            end = head_end(self._buf, start)
        except HeadTooLarge:
            self.server.refuse("too_large", self.client, "a request head over 8 KiB.")
            self.respond("", error(431, f"the request head is larger than {MAX_HEAD_BYTES} bytes."))
            return
        if end is None:
            return
        self._reading_head = False
        self._cancel_timers()
        self.server.admission.answering(self)
        head = bytes(self._buf[:end])
        self._buf.clear()
        if self.transport is not None:
            self.transport.pause_reading()  # nothing more is read until the answer is sent
        self.server.answer(self, head)

    def eof_received(self) -> bool:
        # Before the head ended: the client gave up; after: it read the answer. Close either way.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._tls_task is not None:
            self._tls_task.cancel()
        srv = self.server
        srv.connections.discard(self)
        srv.admission.release(self)
        self.transport = None

    # -- steps ----------------------------------------------------------------------------------
    async def _start_tls(self, context: ssl.SSLContext) -> None:
        transport = self.transport
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        if _has_bytes(transport):  # a ClientHello: the handshake's bytes never reach this protocol
            self.server.admission.heard(self)
        try:
            tls_transport = await loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.server.request_timeout_s + 1.0,  # ours comes first
                ssl_shutdown_timeout=TLS_SHUTDOWN_S,
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as err:
            if self._reading_head:
                log.debug("A TLS handshake with %s failed: %s", self.client, err)
                self.server.refuse("tls", self.client, "the TLS handshake failed.")
                self._reading_head = False
            self._gone(transport)
            return
        except asyncio.CancelledError:
            self._gone(transport)
            raise
        if not isinstance(tls_transport, asyncio.Transport) or not self._reading_head:
            if tls_transport is not None:  # cut off (too slow) during the handshake
                tls_transport.abort()
            self._gone(transport)
            return
        self.transport = tls_transport
        self._handshaken = True
        if self._buf:  # the request came with the end of the handshake
            self._scan()

    def _gone(self, transport: asyncio.Transport) -> None:
        """A handshake that did not finish: asyncio does not call ``connection_lost`` then."""
        self._tls_task = None
        transport.abort()
        self.connection_lost(None)

    def make_room(self, why: str) -> None:
        """Closed for a new connection while still waiting for this one's head (admission.py)."""
        if not self._reading_head:
            return
        self._reading_head = False
        self.server.refuse(
            "evicted",
            self.client,
            f"{_full(self.server.admission, why)}; this one had waited longest",
        )
        if not self._handshaken:
            self.abort()
            return
        self.respond(
            "",
            error(
                503,
                "the agent closed this connection to make room for others: "
                "it had not sent its request; try again.",
            ),
        )

    def _too_slow(self) -> None:
        if not self._reading_head:
            return
        self._reading_head = False
        self.server.refuse("timeout", self.client, "the request took too long to arrive.")
        if not self._handshaken:
            self.abort()
            return
        self.respond("", error(408, "the request took too long to arrive."))

    def respond(self, method: str, response: Response) -> None:
        """Send the answer, then close (after reading what the client still sends)."""
        self._reading_head = False
        self._cancel_timers()
        if self.transport is None or self.transport.is_closing():
            return
        self._send(encode(response, method == "HEAD"))
        self._linger(LINGER_S)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _send(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            transport.write(data)
            if transport.can_write_eof():
                transport.write_eof()  # sent once what is buffered has gone out
        except (OSError, RuntimeError):  # the client is gone already (reset)
            transport.abort()
            return
        self._later(WRITE_TIMEOUT_S, self.abort)  # a client that does not read is cut off

    def _linger(self, seconds: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.resume_reading()
        self._later(seconds, transport.close)  # close() still sends what is buffered

    def _later(self, seconds: float, callback: Any) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(seconds, callback))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


def _full(admission: Admission[Connection], why: str) -> str:
    if why == BUSY:
        return f"{admission.max_connections} connections were open"
    return f"{admission.max_per_client} connections from its address were open"


def _has_bytes(transport: asyncio.BaseTransport) -> bool:
    """Whether bytes from the client wait to be read (a peek on a duplicate of the socket)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with sock.dup() as peek:
            peek.setblocking(False)
            return bool(peek.recv(1, socket.MSG_PEEK))
    except (OSError, AttributeError):
        return False
