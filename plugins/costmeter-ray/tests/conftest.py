"""Fixtures: Costmeter's for plugin authors, a throwaway Ray cluster, and backends on it.

The fixtures are imported rather than listed in ``pytest_plugins`` so that this directory also
runs inside Costmeter's own test session (a conftest below the root may not declare plugins).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from costmeter_ray.backend import RayBackend
from costmeter_ray.testing import LocalRayCluster, ray_cluster

from costmeter.plugin_api import BackendConfig
from costmeter.plugin_testing import backend_config, make_spec, run_dir

__all__ = ["backend_config", "make_spec", "ray_backend", "ray_cluster", "run_dir"]


@pytest.fixture(scope="session")
def _session_backend(
    ray_cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RayBackend]:
    """Held for the whole session so the process keeps one connection to the cluster."""
    state = tmp_path_factory.mktemp("ray-session-state")
    backend = RayBackend(BackendConfig({"address": ray_cluster.address}, state))
    backend.resources()  # connect once, here
    yield backend
    backend.close()


@pytest.fixture
def ray_backend(
    _session_backend: RayBackend, ray_cluster: LocalRayCluster, tmp_path: Path
) -> Iterator[RayBackend]:
    state = tmp_path / "ray-state"
    state.mkdir()
    backend = RayBackend(BackendConfig({"address": ray_cluster.address}, state))
    yield backend
    backend.close()
