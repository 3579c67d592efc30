"""The example backend against Costmeter's conformance checks, plus its own option."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from costmeter_example.backend import ExampleBackend

from costmeter.plugin_api import BackendConfig, BackendError, RunSpec, RunState
from costmeter.plugin_testing import (
    BackendConformance,
    read_all_logs,
    submit,
    wait_finished,
)


class TestExampleConformance(BackendConformance):
    def make_backend(self, config: BackendConfig) -> ExampleBackend:
        return ExampleBackend(config)


def test_prefix_runs_in_front_of_the_command(
    backend_config: BackendConfig, make_spec: Callable[..., RunSpec], run_dir: Path
) -> None:
    config = BackendConfig({"prefix": ["env", "FROM_PREFIX=yes"]}, backend_config.state_dir)
    backend = ExampleBackend(config)
    handle = submit(backend, make_spec("import os; print(os.environ['FROM_PREFIX'])"), run_dir)
    assert wait_finished(backend, handle).state is RunState.SUCCEEDED
    assert read_all_logs(backend, handle).strip() == "yes"


def test_a_bad_prefix_is_refused_with_a_sentence(backend_config: BackendConfig) -> None:
    config = BackendConfig({"prefix": "nice -n 10"}, backend_config.state_dir)
    with pytest.raises(BackendError, match="must be a list of strings"):
        ExampleBackend(config)


def test_a_missing_command_is_a_backend_error(
    backend_config: BackendConfig, make_spec: Callable[..., RunSpec], run_dir: Path
) -> None:
    backend = ExampleBackend(backend_config)
    with pytest.raises(BackendError, match="not found"):
        submit(backend, make_spec(argv=("no-such-command-costmeter",)), run_dir)
