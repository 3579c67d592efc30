"""Opening: WAL, schema versions and migrations, damaged files moved aside by the recorder only,
settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from costmeter.core.errors import StoreError
from costmeter.store import MIGRATIONS, SCHEMA_VERSION, Store, default_db_path, migrate
from costmeter.store.database import connect, open_database
from costmeter.store.errors import StoreCorruptError


def open_for_recording(db: Path) -> Store:
    """What the recorder does: the only opener allowed to move a damaged file aside."""
    conn, notice = open_database(db, replace_corrupt=True, writing=True)
    return Store(conn, db, notice)


def test_new_database_is_wal_and_current(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "new.db"
    with Store.open(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.notice is None
        assert store.integrity_check() == "ok"
        assert store.time_range() is None
        assert store.hosts() == [] and store.devices() == []
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {
        "hosts",
        "devices",
        "device_samples",
        "host_samples",
        "processes",
        "gpu_process_samples",
        "process_samples",
        "device_rollup_1m",
        "device_rollup_1h",
        "host_rollup_1m",
        "host_rollup_1h",
        "runs",
        "settings",
    } <= tables


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="There is no Costmeter database"):
        Store.open(tmp_path / "none.db", create=False)


def test_default_path() -> None:
    assert default_db_path().name == "costmeter.db"
    assert "costmeter" in str(default_db_path().parent)


def test_garbage_file_is_moved_aside_with_notice(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    garbage = b"this is not a database at all " * 200
    db.write_bytes(garbage)
    Path(f"{db}-wal").write_bytes(b"junk")
    with pytest.raises(
        StoreCorruptError, match=r"is damaged .file is not a database.*left as it is"
    ):
        Store.open(db)  # a reader refuses and moves nothing
    assert db.read_bytes() == garbage and not list(tmp_path.glob("c.db.corrupt-*"))
    with open_for_recording(db) as store:
        assert store.notice is not None
        moved = sorted(tmp_path.glob("c.db.corrupt-*"))
        assert [m.name for m in moved if not m.name.endswith("-wal")] == [moved[0].name]
        assert str(moved[0]) in store.notice
        assert "was damaged" in store.notice
        assert moved[0].read_bytes() == garbage  # kept, not deleted
        assert Path(f"{moved[0]}-wal").read_bytes() == b"junk"
        assert store.schema_version == SCHEMA_VERSION
        store.set_setting("a", "1")


def test_damaged_pages_fail_quick_check_and_are_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    conn.executemany("INSERT INTO t (b) VALUES (?)", [("x" * 200,) for _ in range(2000)])
    conn.commit()
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    for p in range(3, 8):  # scribble over some b-tree pages, keep the header
        data[p * page : p * page + 200] = b"\xff" * 200
    db.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError):
        Store.open(db)
    assert db.read_bytes() == bytes(data)
    with open_for_recording(db) as store:
        assert store.notice is not None and ".corrupt-" in store.notice
        assert store.integrity_check() == "ok"


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade Costmeter"):
        Store.open(db)
    assert db.exists() and not list(tmp_path.glob("*.corrupt-*"))


def test_migrates_forward_from_v1(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with Store.open(db) as store:
        store.set_setting("currency", "EUR")
    assert len(MIGRATIONS) >= 1

    def add_notes(d: sqlite_utils.Database) -> None:
        d.table("runs").add_column("notes", str)

    conn = connect(db)
    try:
        before = migrate(conn, str(db), [*MIGRATIONS, add_notes])
        assert before == SCHEMA_VERSION
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        assert "notes" in cols
        assert (
            conn.execute("SELECT value FROM settings WHERE key='currency'").fetchone()[0] == "EUR"
        )
        # Already current: nothing runs again.
        assert migrate(conn, str(db), [*MIGRATIONS, add_notes]) == SCHEMA_VERSION + 1
    finally:
        conn.close()


def test_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    Store.open(db).close()

    def broken(d: sqlite_utils.Database) -> None:
        d.execute("CREATE TABLE half_done (a)")
        raise sqlite3.OperationalError("boom")

    conn = connect(db)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, str(db), [*MIGRATIONS, broken])
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        assert "half_done" not in names
    finally:
        conn.close()


def test_settings(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as store:
        assert store.get_setting("k") is None
        assert store.get_setting("k", "d") == "d"
        store.set_setting("k", "v1")
        store.set_setting("k", "v2")
        assert store.get_setting("k") == "v2"


def test_threads_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """The desktop app's recorder and reader open a brand-new file at the same time."""
    import threading

    errors: list[BaseException] = []
    for trial in range(10):
        path = tmp_path / f"new{trial}.db"

        def open_it(path: Path = path) -> None:
            try:
                open_database(path)[0].close()
            except BaseException as exc:  # collected, then asserted on the main thread
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
