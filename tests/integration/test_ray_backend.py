"""The Ray backend's tests, on a real Ray cluster of their own, inside a network namespace.

Ray connects over the machine's interface address and probes an outside address at start
even when told 127.0.0.1, so the cluster and the tests that talk to it run in a new network
namespace where only loopback exists (``unshare -n``). This test starts pytest there on the
plugin's tests and ``tests/integration/ray_netns``, then checks that no process of the
cluster is left.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "costmeter-ray"
MARK_ENV = "COSTMETER_RAY_TEST_MARK"


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
def test_the_ray_backend_passes_on_a_cluster_of_its_own() -> None:
    pytest.importorskip("ray")
    mark = secrets.token_hex(8)
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    inner = (
        'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider -o addopts="" '
        "--strict-markers -ra --durations=5 plugins/costmeter-ray/tests tests/integration/ray_netns"
    )
    env = {
        **os.environ,
        MARK_ENV: mark,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(PLUGIN / "src"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    begun = time.monotonic()
    try:
        result = subprocess.run(
            [*unshare, "sh", "-c", inner, sys.executable],
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
    assert left == [], f"processes of the Ray test cluster were left running: {left}"
    print(f"Ray tests took {took:.1f} s:\n{output[-1500:]}")
