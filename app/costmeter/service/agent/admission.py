"""Who gets a connection: a cap on all open connections and one per client address.

A connection counts from the moment it is accepted until it is closed, whether it has sent a
byte or not. IPv6 clients are counted per /64 (one machine usually holds a whole /64, and can
pick a new address in it for every connection); IPv4-mapped IPv6 addresses as IPv4.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter, OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

#: File descriptors kept for everything but client connections (the buffer, logs, NVML).
SPARE_FILES = 128

BUSY = "busy"
PER_CLIENT = "per_client"

C = TypeVar("C", bound=Hashable)


def client_key(host: str) -> str:
    """The address a connection is counted under (see the module's docstring)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Admission(Generic[C]):
    """Open connections, in total and per client key; used from one thread (the event loop).

    When a limit is reached, a connection still waiting for its request head (from the same
    address, for the per-address limit) makes room for the new one: the oldest that has sent
    nothing at all, else the oldest that is still sending. Idle and slow connections cannot keep
    a client that sends its request at once from being served. Only when every counted
    connection is being answered is the new one refused.
    """

    def __init__(self, max_connections: int, max_per_client: int) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self._keys: dict[C, str] = {}
        self._per_client: Counter[str] = Counter()
        #: Connections still waiting for their head, oldest first; and those of them that have
        #: not sent a byte.
        self._waiting: OrderedDict[C, str] = OrderedDict()
        self._silent: OrderedDict[C, str] = OrderedDict()

    @property
    def open(self) -> int:
        return len(self._keys)

    def full(self, key: str) -> bool:
        """Would a new connection from ``key`` need room made for it?"""
        return len(self._keys) >= self.max_connections or (
            self._per_client[key] >= self.max_per_client
        )

    def admit(
        self, conn: C, key: str, *, heard: bool = False
    ) -> tuple[str | None, list[tuple[C, str]]]:
        """(None, evicted) and ``conn`` is counted, or (why not: BUSY, PER_CLIENT, []).

        ``heard``: bytes from it are already waiting to be read. ``evicted``: (connection,
        PER_CLIENT or BUSY) pairs that are no longer counted and must be closed by the caller.
        """
        evicted: list[tuple[C, str]] = []
        if self._per_client[key] >= self.max_per_client:
            victim = self._victim(key)
            if victim is None:
                return PER_CLIENT, []
            self.release(victim)
            evicted.append((victim, PER_CLIENT))
        if len(self._keys) >= self.max_connections:
            victim = self._victim(None)
            if victim is None:  # (never after an eviction above: that made room)
                return BUSY, []
            self.release(victim)
            evicted.append((victim, BUSY))
        self._keys[conn] = key
        self._per_client[key] += 1
        self._waiting[conn] = key
        if not heard:
            self._silent[conn] = key
        return None, evicted

    def heard(self, conn: C) -> None:
        """``conn`` has sent something: it makes room only after every silent connection."""
        self._silent.pop(conn, None)

    def _victim(self, key: str | None) -> C | None:
        for pool in (self._silent, self._waiting):
            for conn, k in pool.items():
                if key is None or k == key:
                    return conn
        return None

    def answering(self, conn: C) -> None:
        """``conn`` has sent its head: it no longer makes room for others."""
        self._waiting.pop(conn, None)
        self._silent.pop(conn, None)

    def release(self, conn: C) -> None:
        """``conn`` is closed (or evicted); idempotent."""
        key = self._keys.pop(conn, None)
        if key is None:
            return
        self._waiting.pop(conn, None)
        self._silent.pop(conn, None)
        self._per_client[key] -= 1
        if self._per_client[key] <= 0:
            del self._per_client[key]

    def clients(self) -> int:
        return len(self._per_client)


def fit_file_limit(max_connections: int) -> int:
    """Raise the soft limit on open files so ``max_connections`` fit, if the hard limit lets us;
    else the number of connections that do fit (and a warning that says so)."""
    try:
        import resource
    except ImportError:  # not POSIX: nothing to raise
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (OSError, ValueError):
        pass
    if soft >= needed:
        return max_connections
    fitted = max(1, soft - SPARE_FILES)
    log.warning(
        "This process may open only %d files (ulimit -n), so the agent serves at most %d "
        "connections instead of %d; raise the limit (ulimit -n, or LimitNOFILE= in a systemd "
        "unit) to allow more.",
        soft,
        fitted,
        max_connections,
    )
    return fitted
