"""Reconnect delays: exponential, capped, jittered, reset after a success."""

from __future__ import annotations

import random

import pytest

from costmeter.service.remote.backoff import Backoff


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    b = Backoff(1.0, 30.0, jitter=0.0)
    assert [b.next() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    b.reset()
    assert b.next() == 1.0


def test_jitter_spreads_delays_within_bounds() -> None:
    b = Backoff(1.0, 30.0, jitter=0.2, rng=random.Random(7))
    firsts = []
    for _ in range(200):
        b.reset()
        firsts.append(b.next())
    assert all(0.8 <= d <= 1.2 for d in firsts)
    assert len({round(d, 6) for d in firsts}) > 100  # not in lockstep
    for _ in range(50):
        assert b.next() <= 30.0


def test_many_failures_do_not_overflow() -> None:
    b = Backoff(0.5, 10.0, jitter=0.0)
    b.failures = 10_000
    assert b.next() == 10.0


@pytest.mark.parametrize(
    ("initial", "cap", "factor", "jitter"),
    [(0, 1, 2, 0), (2, 1, 2, 0), (1, 2, 0.5, 0), (1, 2, 2, 1.0)],
)
def test_bad_settings_are_refused(initial: float, cap: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, cap, factor=factor, jitter=jitter)
