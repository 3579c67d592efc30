"""The agent's SQLite buffer: paging, retention, restarts, a damaged file, privacy."""

from __future__ import annotations

import dataclasses
import json
import stat
import threading
from pathlib import Path

import pytest

from costmeter.core import SimulatedClock, StoreError, Tick
from costmeter.sampling import wire
from costmeter.sampling.node import NodeSampler
from costmeter.service.agent.buffer import TickBuffer

T0 = 1_700_000_000.0


def make_ticks(n: int, start: float = T0, step: float = 1.0) -> list[Tick]:
    clock = SimulatedClock(start)
    sampler = NodeSampler(hostname="box", simulate="a100,t4", seed=2, clock=clock)
    try:
        out = []
        for _ in range(n):
            clock.advance(step)
            out.append(sampler.sample([])["tick"])
        return out
    finally:
        sampler.close()


def fill(buffer: TickBuffer, ticks: list[Tick]) -> None:
    buffer.start()
    for t in ticks:
        buffer.put(t)


def decoded(payloads: tuple[bytes, ...]) -> list[Tick]:
    return [wire.decode_tick(json.loads(p)) for p in payloads]


def test_pages_cover_everything_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    ticks = make_ticks(25)
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    fill(buf, ticks)
    buf.close()  # flushes the queue
    again = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    try:
        assert again.span() == (ticks[0].ts, ticks[-1].ts, 25)
        got: list[Tick] = []
        since = float("-inf")
        while True:
            page = again.page(since, 10, 1 << 20)
            got += decoded(page.payloads)
            if not page.more:
                break
            assert page.last_ts is not None
            since = page.last_ts
        assert got == ticks
        page = again.page(ticks[-1].ts, 10, 1 << 20)
        assert page.payloads == () and not page.more and page.last_ts is None
        middle = again.page(ticks[9].ts, 5, 1 << 20)
        assert decoded(middle.payloads) == ticks[10:15] and middle.more
    finally:
        again.close()


def test_a_page_stops_at_the_byte_budget_but_returns_at_least_one(tmp_path: Path) -> None:
    ticks = make_ticks(6)
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    fill(buf, ticks)
    buf.close()
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    try:
        one = buf.page(float("-inf"), 100, 1)
        assert len(one.payloads) == 1 and one.more
        size = len(one.payloads[0])
        three = buf.page(float("-inf"), 100, 3 * size + 10)
        assert 2 <= len(three.payloads) <= 4 and three.more
    finally:
        buf.close()


def test_old_samples_are_dropped_after_the_retention(tmp_path: Path) -> None:
    ticks = make_ticks(10, step=600.0)  # 10 samples over 100 minutes
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    fill(buf, ticks)
    buf.close()
    now = ticks[-1].ts
    buf = TickBuffer(tmp_path / "b.db", retention_s=1800.0, now=lambda: now)
    try:
        oldest, newest, count = buf.span()
        assert count == 4 and oldest == ticks[6].ts and newest == now
    finally:
        buf.close()


def test_the_same_timestamp_is_kept_once(tmp_path: Path) -> None:
    tick = make_ticks(1)[0]
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    fill(buf, [tick, tick, tick])
    buf.close()
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    try:
        assert buf.span()[2] == 1
    finally:
        buf.close()


def test_the_file_is_private(tmp_path: Path) -> None:
    buf = TickBuffer(tmp_path / "sub" / "b.db", retention_s=1e9)
    fill(buf, make_ticks(2))
    buf.close()
    for path in (tmp_path / "sub" / "b.db", tmp_path / "sub"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_a_damaged_file_is_moved_aside_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    path.write_bytes(b"this is not a database" * 100)
    buf = TickBuffer(path, retention_s=1e9, now=lambda: T0)
    try:
        assert buf.notice is not None and "damaged" in buf.notice
        aside = tmp_path / f"b.db.damaged-{int(T0)}"
        assert aside.read_bytes().startswith(b"this is not a database")
        assert buf.span() == (None, None, 0)
    finally:
        buf.close()


def test_an_unusable_place_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="could not be opened"):
        TickBuffer(tmp_path / "dir.db", retention_s=1.0)


def test_reads_while_writing_from_several_threads(tmp_path: Path) -> None:
    ticks = make_ticks(200, step=0.1)
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    buf.start()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(30):
                page = buf.page(float("-inf"), 50, 1 << 20)
                stamps = [t.ts for t in decoded(page.payloads)]
                assert stamps == sorted(stamps)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    for t in ticks:
        buf.put(t)
    for th in threads:
        th.join(30)
    buf.close()
    assert not errors
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    try:
        assert buf.span()[2] == 200
    finally:
        buf.close()


def test_a_sample_a_collector_would_refuse_is_skipped_not_buffered(tmp_path: Path) -> None:
    good = make_ticks(3)
    bad_device = dataclasses.replace(good[1].devices[0], gpu_util=250.0)
    bad = dataclasses.replace(good[1], devices=(bad_device,))
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    fill(buf, [good[0], bad, good[2]])
    buf.close()
    assert buf.dropped == 1 and buf.written == 2
    buf = TickBuffer(tmp_path / "b.db", retention_s=1e9)
    try:
        assert decoded(buf.page(float("-inf"), 10, 1 << 20).payloads) == [good[0], good[2]]
    finally:
        buf.close()
