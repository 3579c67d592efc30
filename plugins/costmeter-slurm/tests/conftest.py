"""Fixtures: Costmeter's for plugin authors, and one real Slurm cluster for the session.

The cluster (``tests/slurm_cluster.py`` of the Costmeter tree: slurm-wlm + munge on loopback,
4 generic GPUs, 8 CPUs declared) needs root and Debian's ``slurm-wlm`` and ``munge``; tests
that use it skip with the reason otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from costmeter_slurm.backend import SlurmBackend

from costmeter.plugin_api import BackendConfig, RunHandle
from costmeter.plugin_testing import backend_config, make_spec, python_spec, run_dir, submit

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "slurm"
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from slurm_cluster import SlurmCluster  # noqa: E402

__all__ = ["backend_config", "make_spec", "run_dir", "slurm_backend", "slurm_cluster"]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = SlurmCluster.available()
    if reason is not None:
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("cluster"), gpus=4, cpus=8) as cluster:
        yield cluster


def cluster_options(cluster: SlurmCluster, **more: object) -> dict[str, object]:
    return {**cluster.options, "poll_interval_s": 0.25, **more}


@dataclass(frozen=True)
class EarlyRun:
    backend: SlurmBackend
    handle: RunHandle


@pytest.fixture(scope="session")
def time_limit_run(
    slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> EarlyRun:
    """A run past its one-minute time limit, submitted with the session's first cluster test.

    Slurm needs 60 to 90 s to end it (minutes are its unit, and its controller checks limits
    every 30 s): submitted early, that wait overlaps the other tests; test_time_limit.py,
    which sorts last, reads the outcome.
    """
    where = tmp_path_factory.mktemp("time-limit")
    backend = SlurmBackend(BackendConfig(cluster_options(slurm_cluster), where))
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(150)\nprint('woke')"
    handle = submit(backend, python_spec(code, time_limit_s=60), where / "run")
    return EarlyRun(backend, handle)


@pytest.fixture
def slurm_backend(
    slurm_cluster: SlurmCluster, time_limit_run: EarlyRun, tmp_path: Path
) -> Iterator[SlurmBackend]:
    state = tmp_path / "slurm-state"
    state.mkdir()
    backend = SlurmBackend(BackendConfig(cluster_options(slurm_cluster), state))
    yield backend
    backend.close()
