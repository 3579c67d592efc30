"""Refused connections and requests, counted and logged at most once per period.

A client guessing tokens or holding connections open cannot flood the log: the first refusal
after a quiet period is logged at once, the ones that follow are summed up in one line per
period (by kind, with the last client's address). Nothing from a request's headers is logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable

LOG_EVERY_S = 10.0

#: kind -> what follows a count of them in a line ("3 with a wrong or missing token").
KINDS = {
    "auth": "with a wrong or missing token",
    "busy": "over the connection limit",
    "per_client": "over the per-address connection limit",
    "evicted": "closed before their request ended to make room",
    "timeout": "too slow to send their request",
    "too_large": "with a request head over the size limit",
    "bad_request": "malformed",
    "tls": "with a failed TLS handshake",
}


class RefusalLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.every_s = every_s
        self._clock = clock
        #: Every refusal since the start, by kind.
        self.total: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._last_client = ""
        self._last_reason = ""
        self._last_line = -math.inf
        self.lines = 0

    def note(self, kind: str, client: str, reason: str) -> None:
        """Count one refusal (``reason``: a sentence that holds nothing the client sent)."""
        self.total[kind] += 1
        self._pending[kind] += 1
        self._last_client, self._last_reason = client, reason
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Log what is pending if the period since the last line is over (call it now and then;
        ``force`` when stopping)."""
        if not self._pending:
            return
        now = self._clock()
        if now - self._last_line < self.every_s and not force:
            return
        count = sum(self._pending.values())
        kinds = ", ".join(f"{n} {KINDS.get(k, k)}" for k, n in self._pending.most_common())
        since = "" if math.isinf(self._last_line) else f" in the last {now - self._last_line:.0f} s"
        self._log.warning(
            "Refused %d request%s%s (%s); the last from %s: %s",
            count,
            "" if count == 1 else "s",
            since,
            kinds,
            self._last_client,
            self._last_reason.rstrip("."),
        )
        self._pending.clear()
        self._last_line = now
        self.lines += 1
