"""Run directories and logs only their owner can read: a run's output may hold secrets (tokens
printed by a script, data), and the default umask (022) would make them world-readable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
LOG_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Make ``path`` and any missing parents with mode 0700. Directories that already exist
    are left as they are: they are the user's (or were made private when made)."""
    missing = []
    here = Path(path)
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for made in reversed(missing):
        try:
            made.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another thread: keep what it made
            continue
        os.chmod(made, DIR_MODE)  # mkdir's mode passes through the umask


def open_private_log(path: Path) -> BinaryIO:
    """Open ``path`` for appending, created with mode 0600 if missing (an existing file keeps
    its mode: it is not ours to change)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
    return os.fdopen(fd, "ab")
