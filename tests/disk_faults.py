"""Real disk faults for tests: a small tmpfs that fills up, read-only bind mounts.

Both need root (``mount``). A command run through ``in_private_mounts`` gets a mount namespace of
its own (``unshare -m``): its mounts vanish with it and the machine's mounts are never touched.
In-process tests use ``tmpfs`` below, which mounts under the test's own temporary folder and
unmounts on the way out. ``mount_unavailable()`` says why a test cannot run (it skips with that).

Importing it: ``sys.path.insert(0, str(Path(__file__).resolve().parents[1]))``, then
``import disk_faults`` (as for ``agent_process``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

PRIVATE = ["unshare", "--mount", "--propagation", "private"]


@functools.cache
def mount_unavailable() -> str | None:
    """None when this process can mount a tmpfs in a private namespace, else the reason."""
    if os.geteuid() != 0:
        return "needs root: a full disk and a read-only mount are made with mount(8)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs unshare(1) and mount(8) (util-linux)"
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [*PRIVATE, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        return f"mount is refused here ({done.stderr.strip() or done.returncode})"
    return None


def private_mounts_command(setup: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run after the shell commands ``setup``, in a mount namespace of its own."""
    script = f'set -e\n{setup}\nset +e\n"$@"\n'
    return [*PRIVATE, "sh", "-c", script, "sh", *argv]


def in_private_mounts(
    setup: str, argv: Sequence[str], *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        private_mounts_command(setup, argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def q(path: Path | str) -> str:
    return shlex.quote(str(path))


def fill_command(directory: Path) -> str:
    """Shell that fills the file system holding ``directory`` (``dd`` stops at ENOSPC)."""
    return f"dd if=/dev/zero of={q(directory / 'filler')} bs=4k 2>/dev/null || true"


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` in this process's namespace, unmounted after."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its file system is full; the filler's path."""
    filler = directory / "filler"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                break
    return filler
