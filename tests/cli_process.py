"""The `costmeter` command run as a user runs it (a process of its own) on a database file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PY = sys.executable


def costmeter(*args: str, db: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``costmeter COMMAND --db DB ARGS...`` in the database's folder."""
    return subprocess.run(
        [PY, "-m", "costmeter", *args[:1], "--db", str(db), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=db.parent,
    )


def runs_json(db: Path) -> list[dict[str, Any]]:
    """``costmeter runs --format json``, which must succeed."""
    out = costmeter("runs", "--format", "json", db=db)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))
