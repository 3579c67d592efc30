"""The Slurm backend's tests (plugins/costmeter-slurm/tests), on a real Slurm of their own.

The plugin's tests start slurm-wlm and munge on loopback (``tests/slurm_cluster.py``) as
root; they run in a separate pytest, inside a network namespace where only loopback exists
(``unshare -n``), so no Slurm traffic can leave the machine. Afterwards no process of the
cluster or of its jobs may be left: each carries this test's mark in its environment (the
daemons inherit it, and sbatch exports it to the jobs).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from slurm_cluster import SlurmCluster  # noqa: E402

PLUGIN = ROOT / "plugins" / "costmeter-slurm"
MARK_ENV = "COSTMETER_SLURM_TEST_MARK"


def leftovers(mark: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(MARK_ENV) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
@pytest.mark.integration
def test_the_slurm_backend_passes_on_a_cluster_of_its_own() -> None:
    reason = SlurmCluster.available()
    if reason is not None:
        pytest.skip(reason)
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare (util-linux) and ip (iproute2) are needed for a loopback-only run")
    try:
        metadata.distribution("costmeter-slurm")
    except metadata.PackageNotFoundError:
        pytest.fail("costmeter-slurm is not installed: pip install -e plugins/costmeter-slurm")
    mark = secrets.token_hex(8)
    # Slurm binds its ports to the wildcard address with AI_ADDRCONFIG, which glibc refuses
    # while the only addresses are 127.x: a TEST-NET-1 address on lo (never routed, and the
    # namespace has no other interface) lets it bind.
    inner = (
        "ip link set lo up && ip addr add 192.0.2.1/32 dev lo && "
        'exec "$0" -m pytest -q -p no:cacheprovider -o addopts="" '
        "--strict-markers -ra --durations=5 plugins/costmeter-slurm/tests"
    )
    env = {**os.environ, MARK_ENV: mark}
    begun = time.monotonic()
    try:
        result = subprocess.run(
            ["unshare", "-n", "sh", "-c", inner, sys.executable],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        left = leftovers(mark)
    took = time.monotonic() - begun
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = [line for line in output.splitlines() if " passed" in line][-1]
    assert "skipped" not in summary and "error" not in summary, output  # all of it ran
    assert left == [], f"processes of the Slurm test cluster were left running: {left}"
    print(f"Slurm tests took {took:.1f} s:\n{output[-1500:]}")
