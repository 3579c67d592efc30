"""The agent's JSON (costmeter.sampling.wire), 10,000 generated documents per test: a real
samples page with fields broken anywhere in it, and arbitrary bytes. Every one gives a value
or a WireError with a sentence: never another exception, a hang or unbounded memory."""

from __future__ import annotations

import copy
import json
import random
import signal
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.core import SimulatedClock
from costmeter.sampling import wire
from costmeter.sampling.node import NodeSampler
from costmeter.sampling.wire import SamplesPage, WireError

FUZZ = settings(
    max_examples=10_000,
    deadline=1000,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
DECODERS = (
    wire.decode_tick,
    wire.decode_host,
    wire.decode_device,
    wire.decode_info,
    wire.decode_samples_page,
)


def _real_page() -> dict[str, Any]:
    """A samples page made by the real node sampler (this machine, simulated GPUs)."""
    clock = SimulatedClock(1_700_000_000.0)
    sampler = NodeSampler(hostname="gpu-box", simulate="a100:train,h100:idle", seed=1, clock=clock)
    readings = []
    try:
        for _ in range(2):
            clock.advance(1.0)
            readings.append(sampler.sample([], {4242: [0]}))
    finally:
        sampler.close()
    page = SamplesPage(
        host=readings[0]["host"],
        devices=readings[0]["devices"],
        ticks=tuple(r["tick"] for r in readings),
        more=False,
        next_since=None,
        oldest=None,
    )
    doc: dict[str, Any] = json.loads(wire.dumps(wire.encode_samples_page(page)))
    return doc


PAGE = _real_page()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(PAGE)
ODD = [None, True, False, 0, -1, 2**64, -(2**63), 1e308, -1e308, 0.5, "", "x" * 300, [], {},
       [None], {"": None}, "NaN", float("nan"), float("inf"), -0.0, 9.99e15, 2**53 + 1]  # fmt: skip


def odd_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(6)
    if pick == 0 and depth < 3:
        return [odd_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 1 and depth < 3:
        return {rng.choice(["ts", "uuid", "a", ""]): odd_value(rng, depth + 1)}
    if pick == 2:
        return rng.uniform(-1e12, 1e12)
    if pick == 3:
        return rng.randint(-(2**70), 2**70)
    return rng.choice(ODD)


def mutated_page(rng: random.Random) -> Any:
    """The real page with 1-3 fields replaced, removed, or lists cut or doubled."""
    doc = copy.deepcopy(PAGE)
    for _ in range(rng.randrange(1, 4)):
        path = rng.choice(PATHS)
        target: Any = doc
        try:
            for key in path[:-1]:
                target = target[key]
            key = path[-1]
            how = rng.randrange(4)
            if how == 0 and isinstance(target, dict):
                del target[key]
            elif how == 1 and isinstance(target[key], list):
                target[key] = target[key] * rng.randrange(3)
            else:
                target[key] = odd_value(rng)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the path
    return doc


@contextmanager
def no_hang(seconds: int = 10) -> Iterator[None]:
    def fail(signum: int, frame: object) -> None:
        raise AssertionError(f"a document took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _decode_all(value: object) -> None:
    for decode in DECODERS:
        try:
            decode(value)
        except WireError as err:
            assert str(err)


@FUZZ
@given(SEEDS)
def test_a_real_page_with_fields_broken_anywhere_never_crashes(seed: int) -> None:
    rng = random.Random(seed)
    doc = mutated_page(rng)
    with no_hang():
        try:
            page = wire.decode_samples_page(doc)
        except WireError as err:
            assert str(err)
        else:
            assert isinstance(page, SamplesPage)
            assert len(page.ticks) <= len(PATHS)  # nothing is made up from sizes in the input
        if seed % 4 == 0:
            _decode_all(doc)


def _outcome(decode: Any, doc: object) -> object:
    try:
        return decode(doc)
    except WireError as err:
        return ("refused", str(err))


@FUZZ
@given(SEEDS)
def test_the_quick_decoder_agrees_with_the_checked_one_on_broken_pages(seed: int) -> None:
    """wire_fast accepts only what the checked decoder accepts, and builds the same values;
    what it refuses is refused in the checked decoder's words."""
    doc = mutated_page(random.Random(seed))
    with no_hang():
        quick = _outcome(wire.decode_samples_page, doc)
        checked = _outcome(wire.decode_samples_page_checked, doc)
    assert quick == checked


@FUZZ
@given(SEEDS)
def test_any_bytes_never_crash(seed: int) -> None:
    rng = random.Random(seed)
    if seed % 2:
        data = rng.randbytes(rng.randrange(301))
    else:  # JSON-looking text: the real page's bytes cut and changed
        raw = bytearray(wire.dumps(PAGE))
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.choice(b'{}[]",:0123456789.eE-+ntfuabc\\')
        data = bytes(raw[: rng.randrange(len(raw) + 1)])
    with no_hang():
        try:
            value = wire.loads(data)
        except WireError as err:
            assert str(err)
            return
        _decode_all(value)


def test_memory_stays_bounded_on_a_large_document() -> None:
    big = json.dumps({"format": PAGE["format"], "ticks": [[[[0] * 50] * 50] * 50]}).encode()
    nested = b"[" * 100_000 + b"]" * 100_000
    for data in (big, nested):
        tracemalloc.start()
        try:
            with no_hang(20):
                try:
                    _decode_all(wire.loads(data))
                except WireError as err:
                    assert str(err)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 100 * len(data) + (16 << 20), (len(data), peak)
