"""The recorder lock: one writer per database file, released by the kernel if the holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from costmeter.core.errors import StoreLockedError
from costmeter.store.errors import classify


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(db_path)}.lock")


def _command_line() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return " ".join([name, *sys.argv[1:]])[:200]


class RecorderLock:
    """An exclusive ``flock`` on ``<db>.lock``; the file holds the owner's PID and command."""

    def __init__(self, db_path: str | os.PathLike[str], *, command: str | None = None) -> None:
        self.db_path = Path(db_path)
        self.path = lock_path(db_path)
        self.command = command if command is not None else _command_line()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ``StoreLockedError`` naming the process that has it.

        Any other failure (read-only folder, full disk) is a ``StoreError`` that names its cause;
        no file descriptor is left open and no lock is left held on any path out.
        """
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Private: the file names the recorder's command line.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise _classify(err, self.db_path) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreLockedError(
                f"Another Costmeter recorder ({holder}) is already writing {self.db_path}. "
                "Stop it first, or pass --db to record into another file."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{self.command}\n".encode(), 0)
        except BaseException as err:
            os.close(fd)  # closing also drops the flock
            if isinstance(err, OSError):
                raise _classify(err, self.db_path) from err
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the lock up. The file stays: removing it could race with a new holder."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RecorderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _classify(err: OSError, db_path: Path) -> Exception:
    return classify(err, db_path, doing="locked for recording")


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 1024, 0).decode(errors="replace")
    except OSError:
        text = ""
    lines = text.splitlines()
    pid = lines[0].strip() if lines else ""
    command = lines[1].strip() if len(lines) > 1 else ""
    if pid and command:
        return f"PID {pid}, `{command}`"
    if pid:
        return f"PID {pid}"
    return "unknown PID"


def lock_holder(db_path: str | os.PathLike[str]) -> str | None:
    """Who holds the recorder lock (``PID 1234, `costmeter record```), or None if nobody does."""
    path = lock_path(db_path)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        return None
    finally:
        os.close(fd)


def is_locked(db_path: str | os.PathLike[str]) -> bool:
    """Whether some other open file description holds the recorder lock right now."""
    return lock_holder(db_path) is not None
