"""Who may talk to the agent: the listen-address policy and the bearer-token check."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket

from costmeter.core.errors import CostmeterError


class ListenRefused(CostmeterError):
    """The agent will not listen where it was asked to (or cannot make sense of the address)."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port). Port 0 picks a free one."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ListenRefused(
            f"--listen {text!r} is not HOST:PORT; give for example 127.0.0.1:9464 or [::1]:9464."
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenRefused(f"--listen {text!r}: write an IPv6 address in brackets, as [::1]:9464.")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ListenRefused(f"--listen {text!r}: the port must be a number from 0 to 65535.")
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` when it resolves only to those.

    0.0.0.0 and :: (every interface) are not loopback. A name is resolved, and counts as
    loopback only when every address it resolves to is.
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def _loopback_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_listen(host: str, *, has_token: bool) -> None:
    """Refuse an address other machines can reach unless a token protects it."""
    if has_token or is_loopback(host):
        return
    raise ListenRefused(
        f"the agent will not listen on {host} without a token: anyone who can reach that "
        "address could read this machine's samples. Put a long random token in a file only you "
        "can read (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > "
        "agent.token && chmod 600 agent.token`) and pass --token-file agent.token, or listen "
        "on 127.0.0.1."
    )


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` in constant time; no token = open (loopback)."""

    def __init__(self, token: str | None) -> None:
        self._token = _digest(token.encode("utf-8")) if token is not None else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, header: str | None) -> str | None:
        """None when the request may go on, else the reason it may not (without the token)."""
        if self._token is None:
            return None
        if not header:
            return "this agent needs a token: send 'Authorization: Bearer <token>'."
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return "only 'Authorization: Bearer <token>' is accepted."
        candidate = given.strip().encode("latin-1", "replace")  # the bytes as sent
        # Digests of equal length, compared in constant time: neither the content nor the
        # length of the token shows in the time a refusal takes.
        if not hmac.compare_digest(_digest(candidate), self._token):
            return "the token is not the one this agent was started with."
        return None


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
