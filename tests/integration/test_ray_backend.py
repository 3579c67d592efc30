"""The Ray backend's tests, on a real Ray cluster of their own, inside a network namespace.

Ray connects over the machine's interface address and probes an outside address at start
even when told 127.0.0.1, so the cluster and the tests that talk to it run in a new network
namespace where only loopback exists (``unshare -n``). This test starts pytest there on the
plugin's tests and ``tests/integration/ray_netns``, then checks that no process of the
cluster is left.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "costmeter-ray"
sys.path.insert(0, str(ROOT / "tests"))
from netns_pytest import run_pytest_in_netns  # noqa: E402

MARK_ENV = "COSTMETER_RAY_TEST_MARK"


@pytest.mark.slow
@pytest.mark.integration
def test_the_ray_backend_passes_on_a_cluster_of_its_own() -> None:
    pytest.importorskip("ray")
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    run_pytest_in_netns(
        "Ray",
        unshare=unshare,
        setup="ip link set lo up",
        targets="plugins/costmeter-ray/tests tests/integration/ray_netns",
        mark_env=MARK_ENV,
        env={
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(PLUGIN / "src"), os.environ.get("PYTHONPATH", "")) if p
            )
        },
    )
