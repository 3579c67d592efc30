"""The Slurm backend's tests (plugins/costmeter-slurm/tests), on a real Slurm of their own.

The plugin's tests start slurm-wlm and munge on loopback (``tests/slurm_cluster.py``) as
root; they run in a separate pytest, inside a network namespace where only loopback exists
(``unshare -n``), so no Slurm traffic can leave the machine. Afterwards no process of the
cluster or of its jobs may be left: each carries this test's mark in its environment (the
daemons inherit it, and sbatch exports it to the jobs).
"""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from netns_pytest import run_pytest_in_netns  # noqa: E402
from slurm_cluster import SlurmCluster  # noqa: E402

PLUGIN = ROOT / "plugins" / "costmeter-slurm"
MARK_ENV = "COSTMETER_SLURM_TEST_MARK"


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
    # Slurm binds its ports to the wildcard address with AI_ADDRCONFIG, which glibc refuses
    # while the only addresses are 127.x: a TEST-NET-1 address on lo (never routed, and the
    # namespace has no other interface) lets it bind.
    run_pytest_in_netns(
        "Slurm",
        unshare=["unshare", "-n"],
        setup="ip link set lo up && ip addr add 192.0.2.1/32 dev lo",
        targets="plugins/costmeter-slurm/tests",
        mark_env=MARK_ENV,
    )
