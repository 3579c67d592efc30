"""``costmeter.store.tick_buffer``: the agent's buffer file, on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_store_real_corruption import DUMPS, decode_hexdb

from costmeter.store.errors import StoreBusyError, StorePathError
from costmeter.store.tick_buffer import TickBufferFile

T0 = 1_700_000_000.0


def now() -> float:
    return T0


def test_payloads_come_back_byte_for_byte_and_the_count_follows(tmp_path: Path) -> None:
    f = TickBufferFile(tmp_path / "b.db", now=now)
    blobs = [bytes([i]) * (i + 1) + b"\x00\xff" for i in range(5)]
    try:
        assert f.insert([(T0 + i, b) for i, b in enumerate(blobs)]) == 5
        assert f.insert([(T0, b"other"), (T0 + 9, b"new")]) == 1  # a held ts keeps its payload
        assert f.count == 6 and f.bounds() == (T0, T0 + 9)
        page = f.page(float("-inf"), 10, 1 << 20)
        assert page.payloads == (*blobs, b"new") and not page.more and page.last_ts == T0 + 9
        assert f.prune(T0 + 2) == 2 and f.count == 4
        assert f.page(T0 + 3, 1, 1 << 20).payloads == (blobs[4],)
    finally:
        f.close()
    again = TickBufferFile(tmp_path / "b.db", now=now)
    try:
        assert again.count == 4 and again.bounds() == (T0 + 2, T0 + 9)
        with sqlite3.connect(tmp_path / "b.db") as conn:  # stored compressed, not as given
            stored = conn.execute("SELECT payload FROM ticks WHERE ts = ?", (T0 + 9,)).fetchone()
        conn.close()
        assert stored[0] != b"new"
    finally:
        again.close()


def test_an_empty_buffer(tmp_path: Path) -> None:
    f = TickBufferFile(tmp_path / "b.db", now=now)
    try:
        assert f.count == 0 and f.bounds() == (None, None)
        page = f.page(float("-inf"), 10, 1 << 20)
        assert page.payloads == () and not page.more and page.last_ts is None
    finally:
        f.close()


def test_a_locked_file_is_a_busy_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    f = TickBufferFile(path, busy_timeout=0.1, now=now)
    f.insert([(T0, b"kept")])
    holder = sqlite3.connect(path, timeout=0.1)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusyError, match="is locked"):
            f.insert([(T0 + 1, b"later")])
        with pytest.raises(StoreBusyError):
            f.prune(T0 + 10)
        assert f.count == 1
    finally:
        holder.rollback()
        holder.close()
    assert f.page(float("-inf"), 10, 1 << 20).payloads == (b"kept",)
    f.close()


def test_a_folder_is_not_a_buffer(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StorePathError, match="is a folder"):
        TickBufferFile(tmp_path / "dir.db", now=now)


@pytest.mark.parametrize("dump", DUMPS, ids=[p.stem for p in DUMPS])
def test_sqlites_own_malformed_files_are_moved_aside_whole(tmp_path: Path, dump: Path) -> None:
    """Files SQLite's fuzzers found (tests/data/store): kept byte for byte beside a new buffer."""
    data = decode_hexdb(dump.read_text())
    path = tmp_path / "b.db"
    path.write_bytes(data)
    f = TickBufferFile(path, now=now)  # one of them opens without an error: checked first
    try:
        assert f.notice is not None and "was damaged" in f.notice
        assert (tmp_path / f"b.db.damaged-{int(T0)}").read_bytes() == data
        assert f.insert([(T0, b"x")]) == 1 and f.count == 1
    finally:
        f.close()
