"""Opening the database file: pragmas, migration, and moving a corrupted file aside."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import platformdirs

from costmeter.core.errors import StoreError
from costmeter.store.schema import migrate

#: Opening is serialised within a process: SQLite can fail with "locking protocol" or "disk I/O
#: error" when two connections turn a brand-new file into a WAL database at the same instant
#: (the desktop app's recorder and its reader both open the file at start-up).
_OPEN_LOCK = threading.Lock()

#: How long a statement waits for another connection's lock before giving up (seconds).
DEFAULT_BUSY_TIMEOUT = 5.0


#: Data from simulated GPUs goes to this file beside the real database unless told otherwise.
SIMULATED_DB_NAME = "costmeter-simulated.db"


def default_db_path() -> Path:
    """Where history goes unless ``--db`` says otherwise."""
    return Path(platformdirs.user_data_dir("costmeter")) / "costmeter.db"


def connect(
    path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL and NORMAL sync."""
    conn = sqlite3.connect(
        os.fspath(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"The database {path} could not be switched to WAL mode ({mode}).")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _check(conn: sqlite3.Connection) -> str | None:
    """None when the file is a healthy database, else what is wrong with it."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as err:
        return str(err)
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def _header_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return None
    if not head or head == b"SQLite format 3\x00":
        return None
    return "the file is not an SQLite database"


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
    replace_corrupt: bool = True,
) -> tuple[sqlite3.Connection, str | None]:
    """Open, health-check and migrate; return the connection and a notice for the user (or None).

    A file that is not a database or fails ``PRAGMA quick_check`` is never deleted: it is moved
    aside and a fresh database is created in its place (unless ``replace_corrupt`` is False, for
    example while a recorder holds the file: then ``StoreError`` is raised).
    """
    with _OPEN_LOCK:
        return _open(Path(path), create, busy_timeout, check, replace_corrupt)


def _open(
    db_path: Path, create: bool, busy_timeout: float, check: bool, replace_corrupt: bool
) -> tuple[sqlite3.Connection, str | None]:
    if not db_path.exists():
        if not create:
            raise StoreError(f"There is no Costmeter database at {db_path}.")
        db_path.parent.mkdir(parents=True, exist_ok=True)
    # Check the header before SQLite opens the file: closing a connection would delete a -wal
    # file that belongs with the damaged database.
    problem = _header_problem(db_path)
    conn = None
    if problem is None:
        try:
            conn = connect(db_path, busy_timeout=busy_timeout)
        except sqlite3.DatabaseError as err:
            problem = str(err)
        else:
            problem = _check(conn) if check else None
            if problem is not None:
                conn.close()
                conn = None
    notice = None
    if conn is None:
        conn, notice = _replace_corrupt(
            db_path, problem or "unknown damage", busy_timeout, replace_corrupt
        )
    try:
        migrate(conn, str(db_path))
    except sqlite3.DatabaseError as err:
        conn.close()
        raise StoreError(f"The database {db_path} could not be prepared: {err}.") from err
    except BaseException:
        conn.close()
        raise
    return conn, notice


def _replace_corrupt(
    db_path: Path, problem: str, busy_timeout: float, allowed: bool
) -> tuple[sqlite3.Connection, str]:
    if not allowed:
        raise StoreError(
            f"The database {db_path} is damaged ({problem}), but a recorder is still using it. "
            "Stop the recorder and open it again to have the damaged file moved aside."
        )
    moved = move_aside(db_path)
    notice = (
        f"The database {db_path} was damaged ({problem}). It was moved to {moved} and a new, "
        "empty database was created; the old file was kept in case you want to recover it."
    )
    return connect(db_path, busy_timeout=busy_timeout), notice
