"""SQLite's and the system's errors sorted by cause, on errors real SQLite files produce."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from costmeter.store.errors import (
    StoreBusyError,
    StoreCorruptError,
    StoreFullError,
    StoreIOError,
    StorePathError,
    StoreReadOnlyError,
    classify,
    confirm_corrupt,
    is_corruption,
    path_problem,
    read_only_uri,
)


def _error_of(fn) -> sqlite3.Error:  # type: ignore[no-untyped-def]
    with pytest.raises(sqlite3.Error) as caught:
        fn()
    return caught.value


def make_db(path: Path, rows: int = 2000) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    conn.executemany("INSERT INTO t (b) VALUES (?)", [("x" * 200,) for _ in range(rows)])
    conn.commit()
    conn.close()


def scribble(path: Path) -> None:
    """Overwrite some b-tree pages, keep the header: SQLite reports the file malformed."""
    data = bytearray(path.read_bytes())
    for p in range(3, 8):
        data[p * 4096 : p * 4096 + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))


def test_a_file_that_is_not_a_database_is_corrupt_and_confirmed(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    db.write_bytes(b"hello, not sqlite " * 300)
    err = _error_of(lambda: sqlite3.connect(db).execute("SELECT * FROM sqlite_master").fetchall())
    assert err.sqlite_errorname == "SQLITE_NOTADB" and is_corruption(err)  # type: ignore[attr-defined]
    found = classify(err, db)
    assert isinstance(found, StoreCorruptError) and "is damaged" in str(found)
    assert confirm_corrupt(db) == "file is not a database"
    assert db.read_bytes() == b"hello, not sqlite " * 300


def test_malformed_pages_are_confirmed_by_a_read_only_quick_check(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    make_db(db)
    scribble(db)
    before = db.read_bytes()
    problem = confirm_corrupt(db)
    assert problem is not None and problem != "ok"
    assert db.read_bytes() == before  # mode=ro: not even the header changed


def test_a_healthy_file_is_never_confirmed_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "ok.db"
    make_db(db, rows=10)
    assert confirm_corrupt(db) is None
    assert confirm_corrupt(tmp_path / "missing.db") is None  # cannot open: not proof of damage
    assert not (tmp_path / "missing.db").exists()  # and mode=ro created nothing


def test_read_only_uri_escapes_odd_names(tmp_path: Path) -> None:
    db = tmp_path / "a b?c#d%.db"
    make_db(db, rows=1)
    conn = sqlite3.connect(read_only_uri(db), uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO t (b) VALUES ('x')")
    finally:
        conn.close()


def test_a_lock_held_past_the_timeout_is_busy_not_damage(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    make_db(db, rows=1)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        reader = sqlite3.connect(db, timeout=0.1)
        err = _error_of(lambda: reader.execute("SELECT * FROM t").fetchall())
        reader.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not is_corruption(err)
    found = classify(err, db, doing="read", holder="PID 1, `sqlite3`")
    assert isinstance(found, StoreBusyError) and found.holder == "PID 1, `sqlite3`"
    assert str(found).startswith(f"The database {db} is locked by another program (PID 1")


def test_sqlite_full_is_disk_full(tmp_path: Path) -> None:
    """``max_page_count`` makes SQLite itself report SQLITE_FULL (no root needed)."""
    db = tmp_path / "f.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (b BLOB)")
    conn.execute("PRAGMA max_page_count = 4")
    err = _error_of(lambda: conn.execute("INSERT INTO t VALUES (randomblob(100000))"))
    conn.close()
    assert err.sqlite_errorname == "SQLITE_FULL"  # type: ignore[attr-defined]
    found = classify(err, db, doing="written")
    assert isinstance(found, StoreFullError) and f"The disk holding {db} is full" in str(found)


def test_a_folder_or_a_missing_folder_is_a_path_error(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    err = _error_of(lambda: sqlite3.connect(folder))
    found = classify(err, folder)
    assert isinstance(found, StorePathError) and "is a folder" in str(found)
    missing = tmp_path / "nope" / "x.db"
    err = _error_of(lambda: sqlite3.connect(missing))
    found = classify(err, missing)
    assert isinstance(found, StorePathError) and "does not exist" in str(found)
    assert path_problem(missing, create=True, make_parent=True) is None
    assert path_problem(missing, create=False, make_parent=False) is None  # "no database" later
    (tmp_path / "afile").write_text("x")
    clash = path_problem(tmp_path / "afile" / "x.db", create=True, make_parent=True)
    assert isinstance(clash, StorePathError) and "is a file" in str(clash)


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (errno.ENOSPC, StoreFullError, "is full"),
        (errno.EDQUOT, StoreFullError, "is full"),
        (errno.EROFS, StoreReadOnlyError, "Make it writable"),
        (errno.EACCES, StoreReadOnlyError, "Make it writable"),
        (errno.EIO, StoreIOError, "input/output error"),
    ],
)
def test_system_errors_are_named(tmp_path: Path, code: int, kind: type, words: str) -> None:
    db = tmp_path / "x.db"
    found = classify(OSError(code, os.strerror(code), str(db)), db)
    assert isinstance(found, kind) and words in str(found) and str(db) in str(found)
