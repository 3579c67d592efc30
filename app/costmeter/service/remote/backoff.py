"""Exponential backoff with jitter for reconnecting to a host that went away."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` gives the delay before the next try: ``initial_s``, doubling up to ``max_s``.

    Each delay is spread by +-``jitter`` (a fraction) so that many hosts lost at once (a network
    blip) are not retried in lockstep. ``reset()`` after a success.
    """

    def __init__(
        self,
        initial_s: float = 1.0,
        max_s: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= max, factor >= 1, 0 <= jitter < 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.failures = 0

    def next(self) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        spread = base * self.jitter
        return min(self.max_s, max(0.0, base + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.failures = 0
