"""Node samples end to end: Costmeter's NodeSampler runs on a Ray node (simulated GPUs set by
COSTMETER_SIMULATE in the cluster's environment) and its samples reach the store.

Runs only inside a network namespace of its own (``tests/integration/test_ray_backend.py``
starts it there); anywhere else the ``ray_cluster`` fixture skips it.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Not importorskip: Ray must not be imported before the cluster fixture sets the token.
if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed.", allow_module_level=True)

from costmeter_ray.backend import RayBackend
from costmeter_ray.testing import LocalRayCluster, ray_cluster

from costmeter.core import SystemClock
from costmeter.plugin_api import BackendConfig, Capability, RunState
from costmeter.plugin_testing import python_spec, submit, wait_finished
from costmeter.sampling.node import NodeSampler
from costmeter.service.node_ingest import NodeIngest
from costmeter.store import Store, Writer

__all__ = ["ray_cluster"]
pytestmark = [pytest.mark.slow, pytest.mark.integration]
NODE = "ray-test-node"


@pytest.fixture
def backend(ray_cluster: LocalRayCluster, tmp_path: Path) -> Iterator[RayBackend]:
    config = BackendConfig(
        {"address": ray_cluster.address, "sample_interval_s": 0.5},
        tmp_path,
        node_sampler=NodeSampler,
    )
    made = RayBackend(config)
    yield made
    made.close()


def test_node_samples_show_the_run_on_its_gpu_and_reach_the_store(
    backend: RayBackend, tmp_path: Path
) -> None:
    assert Capability.NODE_SAMPLES in backend.metadata.capabilities
    code = "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass"  # busy: CPU time
    handle = submit(backend, python_spec(code, gpus=1), tmp_path / "run")
    status = wait_finished(backend, handle)
    assert status.state is RunState.SUCCEEDED, status
    (gpu,) = status.gpu_indices
    readings = backend.node_samples(handle, 0.0)
    assert len(readings) >= 3, readings
    assert {r["tick"].host for r in readings} == {NODE}
    assert readings[0]["gpu_mode"] == "simulated"
    holders = {(d.index, p.pid) for r in readings for d in r["tick"].devices for p in d.processes}
    started = status.started or 0.0
    seen_pids = {p for _, p in holders}
    assert len(seen_pids) == 1 and {i for i, _ in holders} == {gpu}, holders
    (pid,) = seen_pids
    procs = [p for r in readings for p in r["tick"].host_sample.processes if p.pid == pid]
    assert procs and max(p.cpu_time_s for p in procs) > 0.5
    assert backend.node_samples(handle, readings[-1]["tick"].ts) == []

    db = tmp_path / "history.db"
    writer = Writer(db, clock=SystemClock())
    writer.start()
    try:
        ingest = NodeIngest(writer, cpu_tdp_w=65.0)
        assert ingest.ingest(readings) == len(readings)
        assert ingest.ingest(backend.node_samples(handle, 0.0)) == 0  # nothing twice
        writer.flush(timeout=10)
    finally:
        writer.stop()
    with Store.open(db) as store:
        assert [h.hostname for h in store.hosts()] == [NODE]
        assert [d.index for d in store.devices(NODE)] == [0, 1]
        used = {u.index: u for u in store.device_usage(started - 1, time.time())}
        assert used[gpu].energy_j > 0
