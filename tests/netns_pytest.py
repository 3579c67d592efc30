"""Run a plugin's own tests in a network namespace of their own (a cluster on loopback that
nothing else can reach), and check that they all ran and left no process behind."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def leftovers(mark_env: str, mark: str) -> list[str]:
    """Live processes whose environment carries ``mark_env=mark`` (started by this test)."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(mark_env) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def run_pytest_in_netns(
    what: str,
    *,
    unshare: Sequence[str],
    setup: str,
    targets: str,
    mark_env: str,
    env: Mapping[str, str] | None = None,
) -> str:
    """``pytest targets`` inside ``unshare`` after the shell commands ``setup``; fails unless
    every test passed (none skipped) and no process of the run is left. Returns the output."""
    mark = secrets.token_hex(8)
    inner = (
        f'{setup} && exec "$0" -m pytest -q -p no:cacheprovider -o addopts="" '
        f"--strict-markers -ra --durations=5 {targets}"
    )
    begun = time.monotonic()
    try:
        result = subprocess.run(
            [*unshare, "sh", "-c", inner, sys.executable],
            cwd=ROOT,
            env={**os.environ, **(env or {}), mark_env: mark},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        left = leftovers(mark_env, mark)
    took = time.monotonic() - begun
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = [line for line in output.splitlines() if " passed" in line][-1]
    assert "skipped" not in summary and "error" not in summary, output  # all of it ran
    assert left == [], f"processes of the {what} test cluster were left running: {left}"
    print(f"{what} tests took {took:.1f} s:\n{output[-1500:]}")
    return output
