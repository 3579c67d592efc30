"""Opening the database file: pragmas, migration, errors named by cause, and moving a file
aside only when it is confirmed damaged and a writer asks for it."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import platformdirs

from costmeter.core.errors import StoreError
from costmeter.store.errors import (
    SQLITE_READONLY,
    StoreCorruptError,
    StoreFullError,
    StoreReadOnlyError,
    classify,
    confirm_corrupt,
    is_busy,
    is_corruption,
    path_problem,
    primary_code,
    read_only_uri,
)
from costmeter.store.holders import describe_holders
from costmeter.store.schema import SCHEMA_VERSION, migrate, schema_version

#: Opening is serialised within a process: SQLite can fail with "locking protocol" or "disk I/O
#: error" when two connections turn a brand-new file into a WAL database at the same instant
#: (the desktop app's recorder and its reader both open the file at start-up).
_OPEN_LOCK = threading.Lock()

#: How long a statement waits for another connection's lock before giving up (seconds).
DEFAULT_BUSY_TIMEOUT = 5.0

#: A writer refuses to start with less free space than this on the database's disk (bytes).
MIN_FREE_BYTES = 256 * 1024

#: New database files (and so their -wal and -shm, which SQLite creates with the same mode) are
#: readable by their owner only: samples name processes and their command lines.
PRIVATE_MODE = 0o600


#: Data from simulated GPUs goes to this file beside the real database unless told otherwise.
SIMULATED_DB_NAME = "costmeter-simulated.db"


def default_db_path() -> Path:
    """Where history goes unless ``--db`` says otherwise."""
    return Path(platformdirs.user_data_dir("costmeter")) / "costmeter.db"


def connect(
    path: str | os.PathLike[str],
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    readonly_ok: bool = False,
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL and NORMAL sync.

    With ``readonly_ok`` a file that cannot be written is read in whatever journal mode it has
    (a reader of an archived, read-only database); otherwise not being able to switch to WAL
    is an error.
    """
    conn = _plain_connect(path, busy_timeout)
    try:
        _use_wal(conn, path, readonly_ok)
    except BaseException:
        conn.close()
        raise
    return conn


def _plain_connect(path: str | os.PathLike[str], busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        os.fspath(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, path: str | os.PathLike[str], readonly_ok: bool) -> None:
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    if mode != "wal":
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.Error as err:
            if not (readonly_ok and primary_code(err) == SQLITE_READONLY):
                raise
    if mode != "wal" and not readonly_ok:
        raise StoreError(f"The database {path} could not be switched to WAL mode ({mode}).")
    conn.execute("PRAGMA synchronous = NORMAL")


def _check(conn: sqlite3.Connection) -> str | None:
    """None when the file is a healthy database, else what SQLite says is wrong with it.

    Only corruption counts: a locked or unreadable file raises (the caller names the cause).
    """
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as err:
        if is_corruption(err):
            return str(err)
        raise
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def _header_problem(path: Path) -> str | None:
    with path.open("rb") as f:
        head = f.read(16)
    if not head or head == b"SQLite format 3\x00":
        return None
    return "the file is not an SQLite database"


def _create_private(path: Path) -> None:
    """Create an empty file readable by its owner only (SQLite makes a database of it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    os.close(fd)


def free_bytes(path: Path) -> int:
    """Free space on the disk holding ``path`` (what this user may use)."""
    st = os.statvfs(path if path.exists() else path.parent)
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return int(blocks * st.f_frsize)


def move_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal/-shm) to ``<name>.corrupt-YYYYmmdd-HHMMSS``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{target}{suffix}"))
    return target


def open_database(
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    check: bool = True,
    replace_corrupt: bool = False,
    writing: bool = False,
    make_parent: bool = True,
) -> tuple[sqlite3.Connection, str | None]:
    """Open, health-check and migrate; return the connection and a notice for the user (or None).

    Every failure is a ``StoreError`` subclass that names its cause (``store.errors``). A file is
    only ever called damaged when SQLite says it is not a database or malformed and a separate
    read-only ``quick_check`` agrees. Such a file is moved aside (never deleted) and replaced by
    a fresh database only with ``replace_corrupt`` (the recorder, holding the recorder lock);
    everyone else gets ``StoreCorruptError`` and the file is left as it is. ``writing`` also
    proves at once that the file can be written and that the disk is not full, rather than
    failing at the first sample.
    """
    db_path = Path(path)
    found = path_problem(db_path, create=create, make_parent=make_parent)
    if found is not None:
        raise found
    with _OPEN_LOCK:
        try:
            conn, notice = _open(db_path, create, busy_timeout, check, replace_corrupt, writing)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as err:
            holder = describe_holders(db_path) if is_busy(err) else ""
            cause = classify(err, db_path, holder=holder)
            snapshot = None
            if isinstance(cause, StoreReadOnlyError) and not writing:
                snapshot = _read_only_snapshot(db_path, busy_timeout)
            if snapshot is None:
                raise cause from err
            conn, notice = snapshot, None
    if writing:
        try:
            _prove_writable(conn, db_path)
        except BaseException:
            conn.close()
            raise
    return conn, notice


def _open(
    db_path: Path,
    create: bool,
    busy_timeout: float,
    check: bool,
    replace_corrupt: bool,
    writing: bool,
) -> tuple[sqlite3.Connection, str | None]:
    if not db_path.exists():
        if not create:
            raise StoreError(f"There is no Costmeter database at {db_path}.")
        db_path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(db_path)
    # Check the header before SQLite opens the file: closing a connection would delete a -wal
    # file that belongs with the damaged database.
    problem = _header_problem(db_path)
    conn = None
    if problem is None:
        # Checked before anything is changed (the switch to WAL rewrites the header).
        try:
            conn = _plain_connect(db_path, busy_timeout)
            problem = _check(conn) if check else None
            if problem is None:
                _use_wal(conn, db_path, readonly_ok=not writing)
        except sqlite3.DatabaseError as err:
            if conn is not None:
                conn.close()
                conn = None
            if not is_corruption(err):
                raise
            problem = str(err)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if problem is not None and conn is not None:
            conn.close()
            conn = None
    notice = None
    if conn is None:
        conn, notice = _replace_corrupt(
            db_path, problem or "unknown damage", busy_timeout, replace_corrupt
        )
    try:
        migrate(conn, str(db_path))
    except BaseException:
        conn.close()
        raise
    return conn, notice


def _read_only_snapshot(db_path: Path, busy_timeout: float) -> sqlite3.Connection | None:
    """A reader's way into a database in a read-only folder (an archive, a read-only mount).

    SQLite cannot create the -shm file there, so WAL mode cannot be used; with no -wal file
    beside it nothing can be writing either, and the file is read as the immutable snapshot it
    is. None when that does not hold or the schema would need migrating.
    """
    if os.access(db_path.parent, os.W_OK) or Path(f"{db_path}-wal").exists():
        return None
    try:
        conn = sqlite3.connect(
            read_only_uri(db_path, immutable=True),
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error:
        return None
    try:
        healthy = _check(conn) is None
        if healthy and schema_version(conn) == SCHEMA_VERSION:
            return conn
    except sqlite3.Error:
        pass
    conn.close()
    return None


def _replace_corrupt(
    db_path: Path, problem: str, busy_timeout: float, allowed: bool
) -> tuple[sqlite3.Connection, str]:
    confirmed = confirm_corrupt(db_path, busy_timeout=busy_timeout)
    if confirmed is None:  # SQLite complained, but a read-only look finds a healthy file
        raise StoreError(
            f"Opening the database {db_path} failed ({problem}), but a read-only check found "
            "no damage. The file was left as it is; try again."
        )
    if not allowed:
        raise StoreCorruptError(
            f"The database {db_path} is damaged ({confirmed}). It was left as it is: only the "
            "recorder (costmeter record, or the desktop app) moves a damaged file aside and "
            "starts a new one. Restore a backup, or start recording to set it aside.",
            problem=confirmed,
        )
    moved = move_aside(db_path)
    notice = (
        f"The database {db_path} was damaged ({confirmed}). It was moved to {moved} and a new, "
        "empty database was created; the old file was kept in case you want to recover it."
    )
    _create_private(db_path)
    return connect(db_path, busy_timeout=busy_timeout), notice


def _prove_writable(conn: sqlite3.Connection, db_path: Path) -> None:
    """Fail now, with the cause, when samples could not be written: read-only or a full disk.

    SQLite opens a file it cannot write read-only without a word, and ``BEGIN IMMEDIATE``
    succeeds on it: only a real write, rolled back, shows it.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('write_probe', '')")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.Error as err:
        holder = describe_holders(db_path) if is_busy(err) else ""
        raise classify(err, db_path, doing="written", holder=holder) from err
    try:
        free = free_bytes(db_path)
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise StoreFullError(
            f"The disk holding {db_path} is full ({free // 1024} KiB free). Free some space, "
            "or give a path on another disk."
        )
