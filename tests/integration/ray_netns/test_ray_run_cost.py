"""`costmeter run --backend ray` end to end: a monitor on simulated GPUs here, the run on the
test cluster's node (simulated GPUs too, named ``ray-test-node``), and its cost from that
node's samples, which the run service fetched and wrote with this machine's.

Runs only inside a network namespace of its own (``tests/integration/test_ray_backend.py``
starts it there); anywhere else the ``ray_cluster`` fixture skips it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

# Not importorskip: Ray must not be imported before the cluster fixture sets the token.
if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed.", allow_module_level=True)

from costmeter_ray.testing import CLUSTER_ENV, LocalRayCluster, ray_cluster

from costmeter.cli.main import main
from costmeter.config import Config
from costmeter.service.run_costs import cost_of_run
from costmeter.store import Store
from costmeter.store.runs import RunStore

__all__ = ["ray_cluster"]
pytestmark = [pytest.mark.slow, pytest.mark.integration]
NODE = CLUSTER_ENV["COSTMETER_NODE_NAME"]
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 2: pass\nprint('done')"


def test_costmeter_run_on_ray_is_priced_with_the_nodes_gpu(
    ray_cluster: LocalRayCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[backends.ray]\naddress = "{ray_cluster.address}"\n')
    code = main(
        ["run", "--db", str(db), "--config", str(config), "--backend", "ray",
         "--backend-option", "sample_interval_s=0.5", "--simulate", "a100", "--interval", "0.5",
         "--gpus", "1", "--name", "on-ray", "--", sys.executable, "-c", BUSY]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "done" in out.out and "run 1 (on-ray) succeeded" in out.err, out.err

    with RunStore.open(db) as store:
        row = store.get(1)
        assert row is not None
        assert (row.status, row.node, row.backend) == ("succeeded", NODE, "ray")
        assert row.energy_kwh is not None and row.energy_kwh > 0
        assert row.cost is not None and row.cost > 0
        cost = cost_of_run(store, row, Config().pricing())
    (device,) = cost.devices  # the node's GPU, not this machine's
    assert (device.host, device.index) == (NODE, row.gpus[0])
    assert device.cost > 0 and device.energy_kwh > 0
    assert cost.cost == pytest.approx(row.cost)
    with Store.open(db) as store:
        assert NODE in {h.hostname for h in store.hosts()}

    assert main(["runs", "--db", str(db), "--format", "json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["status"], shown["node"]) == ("on-ray", "succeeded", NODE)
    assert shown["cost"] == pytest.approx(row.cost) and shown["gpu_hours"] > 0
