"""Building a run backend the same way everywhere (``costmeter run``/``sweep``/``plugins``, the
desktop app): its options from the ``[backends.NAME]`` table of the configuration (with any
given on the command line on top), a state directory beside the database, and Costmeter's node
sampler for backends that sample the machines their runs land on (plugin API 1.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from costmeter.config import Config
from costmeter.plugin_api import BackendConfig
from costmeter.runs.registry import GuardedBackend, Registry, get_backend
from costmeter.sampling.node import NodeSampler


def backend_state_dir(db_path: Path, name: str) -> Path:
    """``<database folder>/backends/<name>``, made if missing."""
    path = Path(db_path).parent / "backends" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def backend_config(
    name: str,
    *,
    config: Config | None,
    state_dir: Path,
    overrides: Mapping[str, object] | None = None,
) -> BackendConfig:
    """What backend ``name`` is built with: its configured options, ``overrides`` on top."""
    options: dict[str, object] = config.backend_options(name) if config is not None else {}
    options.update(overrides or {})
    return BackendConfig(options=options, state_dir=state_dir, node_sampler=NodeSampler)


def open_backend(
    name: str,
    db_path: Path,
    config: Config | None,
    *,
    overrides: Mapping[str, object] | None = None,
    registry: Registry | None = None,
) -> GuardedBackend:
    """Load backend ``name``; raises ``PluginLoadError`` with a sentence."""
    made = backend_config(
        name, config=config, state_dir=backend_state_dir(db_path, name), overrides=overrides
    )
    if registry is not None:
        return registry.get_backend(name, made)
    return get_backend(name, made)
