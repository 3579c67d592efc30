"""What the collector knows about each remote host, for the GUI, ``report`` and tests."""

from __future__ import annotations

from dataclasses import dataclass

CONNECTED = "connected"
DISCONNECTED = "disconnected"
BACKFILLING = "backfilling"
ERROR = "error"
STATES = (CONNECTED, DISCONNECTED, BACKFILLING, ERROR)


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One remote host. ``name`` is the host name its samples carry.

    ``state``: ``connected`` (the last pull worked and nothing is left to fetch),
    ``backfilling`` (reachable, catching up on what it buffered while unreachable),
    ``disconnected`` (unreachable: retried with backoff), ``error`` (reachable but refusing:
    a wrong token, an answer that is not valid; also retried). ``lag_s``: seconds between now
    and the newest sample written for it (None before the first one).
    """

    name: str
    url: str
    kind: str
    state: str
    last_contact: float | None = None
    newest_sample: float | None = None
    lag_s: float | None = None
    error: str | None = None
