"""``costmeter.store.remote_status``: the status tables' public API, on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from costmeter.core.clock import SimulatedClock
from costmeter.core.errors import StoreError
from costmeter.store import Store, Writer
from costmeter.store.errors import StoreBusyError, StoreCorruptError
from costmeter.store.remote_status import (
    RemoteHostRow,
    RemoteStatusWriter,
    XidEvent,
    newest_sample,
    read_remote_hosts,
)
from costmeter.store.testing import device_infos, host_info, make_tick

T0 = 1_700_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    Store.open(path).close()
    return path


def row(url: str, state: str = "connected", **kw: object) -> RemoteHostRow:
    fields: dict[str, object] = {
        "name": "box", "url": url, "kind": "agent", "state": state, "last_contact": 100.0,
        "newest_sample": 99.0, "error": None, "updated": 101.0,
    }  # fmt: skip
    fields.update(kw)
    return RemoteHostRow(**fields)  # type: ignore[arg-type]


def test_rows_are_upserted_by_url_forgotten_and_read_back_in_order(db: Path) -> None:
    w = RemoteStatusWriter(db)
    try:
        w.write([row("http://b:1", name="b"), row("http://a:2", name="a")], [], [])
        w.write([row("http://a:1", name="a", state="error", error="401")], [], [])
        w.write([row("http://b:1", name="b", state="disconnected")], ["http://a:2"], [])
    finally:
        w.close()
    got = read_remote_hosts(db)
    assert [(r.name, r.url, r.state, r.error, r.updated) for r in got] == [
        ("a", "http://a:1", "error", "401", 101.0),
        ("b", "http://b:1", "disconnected", None, 101.0),
    ]


def test_a_status_without_contact_keeps_the_last_known_times(db: Path) -> None:
    w = RemoteStatusWriter(db)
    try:
        w.write([row("u", last_contact=100.0, newest_sample=99.0)], [], [])
        w.write([row("u", state="disconnected", last_contact=None, newest_sample=None)], [], [])
    finally:
        w.close()
    (got,) = read_remote_hosts(db)
    assert (got.state, got.last_contact, got.newest_sample) == ("disconnected", 100.0, 99.0)


def test_xid_events_of_unknown_devices_come_back_and_known_ones_are_stored_once(db: Path) -> None:
    writer = Writer(db, clock=SimulatedClock(T0), flush_interval=0.05)
    writer.start()
    try:
        writer.register(host_info(), device_infos(n=1))
        assert writer.flush(10)
    finally:
        writer.stop()
    uuid = device_infos(n=1)[0].uuid
    known, unknown = XidEvent(1_234_500, 79, uuid), XidEvent(1_234_600, 48, "GPU-nobody")
    w = RemoteStatusWriter(db)
    try:
        assert w.write([], [], [known, unknown]) == [unknown]
        assert w.write([], [], [known]) == []  # already stored: not "unknown"
    finally:
        w.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT ts, kind, value FROM device_events").fetchall()
    assert rows == [(1_234_500, "xid", 79)]


def test_a_failed_batch_writes_nothing_and_says_why(db: Path) -> None:
    w = RemoteStatusWriter(db, busy_timeout=0.1)
    w.write([row("http://keep")], [], [])
    holder = sqlite3.connect(db, timeout=0.1)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        with pytest.raises(StoreBusyError, match="is locked"):
            w.write([row("http://new")], ["http://keep"], [])
    finally:
        holder.rollback()
        holder.close()
    w.close()
    assert [r.url for r in read_remote_hosts(db)] == ["http://keep"]


def test_reading_creates_nothing_and_an_old_file_has_no_rows(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert read_remote_hosts(missing) == [] and not missing.exists()
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE other (x)")
    conn.close()
    assert read_remote_hosts(old) == []


def test_a_damaged_file_is_a_store_error_and_stays_as_it_was(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database " * 200)
    with pytest.raises(StoreCorruptError):
        read_remote_hosts(bad)
    with pytest.raises(StoreError):
        RemoteStatusWriter(bad)
    assert bad.read_bytes() == b"not a database " * 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.db"]


def test_newest_sample_takes_the_latest_of_the_host_and_its_gpus(db: Path) -> None:
    writer = Writer(db, clock=SimulatedClock(T0), flush_interval=0.05)
    writer.start()
    try:
        writer.register(host_info(), device_infos(n=2))
        for i in range(3):
            writer.submit(make_tick(T0 + i))
        assert writer.flush(10)
    finally:
        writer.stop()
    assert newest_sample(db, "host-a") == pytest.approx(T0 + 2)
    with sqlite3.connect(db) as conn:  # a GPU newer than its host's own samples
        conn.execute(
            "UPDATE device_samples SET ts = ts + 5000 WHERE ts = ?", (int(T0 * 1000) + 2000,)
        )
    conn.close()
    assert newest_sample(db, "host-a") == pytest.approx(T0 + 7)
    assert newest_sample(db, "nobody") is None
