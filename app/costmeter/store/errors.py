"""What went wrong with a database file, named by its cause instead of "it is damaged".

SQLite's result code (``sqlite_errorcode``) and the operating system's ``errno`` say what
happened; the path on disk (a folder? missing parent? writable?) says where. Only a file that
SQLite itself calls not a database or malformed, and that a separate read-only ``quick_check``
confirms, counts as damaged: that is the only case where a writer may move a file aside.
"""

from __future__ import annotations

import copy
import errno
import os
import sqlite3
import urllib.parse
from contextlib import closing
from pathlib import Path

from costmeter.core.errors import StoreError

# SQLite's primary result codes: the low byte of ``sqlite_errorcode``.
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26

_CORRUPTION = frozenset({SQLITE_CORRUPT, SQLITE_NOTADB})

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


class StoreCorruptError(StoreError):
    """SQLite calls the file not a database or malformed, and a read-only check agrees."""

    def __init__(self, message: str, *, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


class StoreBusyError(StoreError):
    """Another program held the database locked for longer than the busy timeout."""

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        #: Who holds it (``PID 12, `sqlite3 x.db```), or '' when nobody could be named.
        self.holder = holder


class StoreReadOnlyError(StoreError):
    """The file or its folder cannot be written (permissions or a read-only file system)."""


class StoreFullError(StoreError):
    """The disk (or the quota) holding the database is full."""


class StoreIOError(StoreError):
    """The disk reported an input/output error."""


class StorePathError(StoreError):
    """The path cannot be a database file: a folder, or a folder that does not exist."""


def reworded(err: StoreError, message: str) -> StoreError:
    """The same kind of error (and attributes) with another sentence: a caller adds context."""
    new = copy.copy(err)
    new.args = (message,)
    return new


def primary_code(err: BaseException) -> int | None:
    """SQLite's primary result code of ``err``, or None when it carries none."""
    code = getattr(err, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_corruption(err: BaseException) -> bool:
    """Whether SQLite itself said "not a database" or "malformed" (a candidate, not proof)."""
    return primary_code(err) in _CORRUPTION


def is_busy(err: BaseException) -> bool:
    """Whether another connection held a lock for longer than the busy timeout."""
    return primary_code(err) in (SQLITE_BUSY, SQLITE_LOCKED)


def read_only_uri(path: str | os.PathLike[str], *, immutable: bool = False) -> str:
    """A ``file:`` URI that opens ``path`` read-only (no journal changes, no move, no create).

    ``immutable`` also keeps SQLite from looking at (or creating) the -wal and -shm files.
    """
    uri = "file:" + urllib.parse.quote(os.path.abspath(os.fspath(path))) + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def _has_sqlite_header(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) in (b"", SQLITE_HEADER)
    except OSError:
        return True  # unreadable: let SQLite say what it makes of it


def confirm_corrupt(path: str | os.PathLike[str], *, busy_timeout: float = 1.0) -> str | None:
    """What a read-only ``PRAGMA quick_check`` finds wrong with ``path``; None if it reads fine.

    A separate connection opened ``mode=ro`` cannot change the file; an error that is not
    corruption (locked, unreadable) is not proof of damage and also gives None. A file without
    SQLite's header is opened ``immutable`` so that no -shm is created beside a stray -wal.
    """
    uri = read_only_uri(path, immutable=not _has_sqlite_header(path))
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
    except sqlite3.Error as err:
        return str(err) if is_corruption(err) else None
    with closing(conn):
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as err:
            return str(err) if is_corruption(err) else None
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def path_problem(path: Path, *, create: bool, make_parent: bool) -> StoreError | None:
    """Why ``path`` cannot be a database file at all, found without opening it; else None."""
    if path.is_dir():
        return StorePathError(
            f"{path} is a folder, not a database file. Give a file name inside it, "
            f"for example --db {path / 'costmeter.db'}."
        )
    if path.exists() or not create:
        return None
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        return StorePathError(
            f"{parent} is a file, so the database {path} cannot be created in it."
        )
    if not parent.exists() and not make_parent:
        return StorePathError(
            f"The folder {parent} does not exist, so the database {path} cannot be created. "
            "Create the folder first, or give another path."
        )
    return None


def classify(
    err: BaseException, path: str | os.PathLike[str], *, doing: str = "opened", holder: str = ""
) -> StoreError:
    """A ``StoreError`` subclass with a sentence for ``err`` (an sqlite3 error or an OSError).

    ``doing`` completes "could not be ..." (opened, read, written); ``holder`` names who holds
    the lock when the error is a busy one (see ``holders.describe_holders``).
    """
    db = Path(path)
    if isinstance(err, StoreError):
        return err
    if isinstance(err, sqlite3.Error):
        return _from_sqlite(err, db, doing, holder)
    if isinstance(err, OSError):
        return _from_os(err, db, doing)
    return StoreError(f"The database {db} could not be {doing}: {err}.")


def _from_sqlite(err: sqlite3.Error, db: Path, doing: str, holder: str) -> StoreError:
    code = primary_code(err)
    text = str(err)
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        who = holder or "another program"
        return StoreBusyError(
            f"The database {db} is locked by another program ({who}), so it could not be "
            f"{doing}. Nothing was changed; try again when that program is done with it.",
            holder=holder,
        )
    if code == SQLITE_READONLY:
        return _read_only(db, text, doing)
    if code == SQLITE_FULL:
        return _full(db, text)
    if code == SQLITE_IOERR:
        return _io(db, text)
    if code in _CORRUPTION:
        return StoreCorruptError(f"The database {db} is damaged ({text}).", problem=text)
    if code in (SQLITE_CANTOPEN, SQLITE_PERM):
        found = path_problem(db, create=True, make_parent=False)
        if found is not None:
            return found
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            return _read_only(db, text, doing)
        if db.exists() and not os.access(db, os.R_OK):
            return StoreReadOnlyError(f"Costmeter may not read the database {db} ({text}).")
    return StoreError(f"The database {db} could not be {doing}: {text}.")


def _from_os(err: OSError, db: Path, doing: str) -> StoreError:
    text = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return _full(db, text)
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return _read_only(db, text, doing)
    if err.errno == errno.EIO:
        return _io(db, text)
    if err.errno in (errno.EISDIR, errno.ENOTDIR, errno.ENOENT):
        found = path_problem(db, create=True, make_parent=False)
        if found is not None:
            return found
    where = f" ({err.filename})" if err.filename and os.fspath(err.filename) != str(db) else ""
    return StoreError(f"The database {db} could not be {doing}: {text}{where}.")


def _read_only(db: Path, text: str, doing: str) -> StoreReadOnlyError:
    if not os.access(db.parent, os.W_OK):
        what = (
            f"the folder {db.parent} is read-only (SQLite needs to create its -wal, -shm and "
            "lock files beside the database)"
        )
    elif db.exists() and not os.access(db, os.W_OK):
        what = f"the file {db} is read-only"
    else:
        what = f"the database {db} is read-only"
    return StoreReadOnlyError(
        f"The database {db} could not be {doing}: {what} ({text}). Make it writable, or give "
        "another path."
    )


def _full(db: Path, text: str) -> StoreFullError:
    return StoreFullError(
        f"The disk holding {db} is full ({text}). Free some space, or give a path on another disk."
    )


def _io(db: Path, text: str) -> StoreIOError:
    return StoreIOError(
        f"The disk holding {db} reported an input/output error ({text}). Check the disk "
        "(for example with dmesg) before using this file again; Costmeter did not change it."
    )
