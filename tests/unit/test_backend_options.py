"""Backend options: ``[backends.NAME]`` in the config file, ``--backend-option`` on top, the
same BackendConfig (with the node sampler) for runs and for ``costmeter plugins``."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import textwrap
from pathlib import Path

import pytest

from costmeter.cli import plugins_cmd
from costmeter.cli.main import build_parser
from costmeter.cli.run_session import UsageError, backend_overrides
from costmeter.config import Config, load_config
from costmeter.config_writer import dump_config, save_config
from costmeter.core.errors import ConfigError
from costmeter.plugin_api import ENTRY_POINT_GROUP
from costmeter.runs.registry import Registry
from costmeter.sampling.node import NodeSampler
from costmeter.service.backends import backend_config, open_backend

CONFIG = """\
[sampling]
interval_s = 2

[backends.ray]
address = "127.0.0.1:6379"
sample_interval_s = 0.5

[backends.echo]
logs = true
nested = { a = 1, "b c" = [1, 2] }
"""

ECHO = """
from costmeter.plugin_api import *

class Echo:
    API_VERSION = "1.1"

    def __init__(self, config):
        self.config = config

    @property
    def metadata(self):
        caps = set()
        if self.config.options.get("logs"):
            caps.add(Capability.LOGS)
        if self.config.node_sampler is not None:
            caps.add(Capability.NODE_SAMPLES)
        return BackendMetadata("echo", "1", "1.1", capabilities=frozenset(caps))

    def resources(self):
        return Resources()

    def submit(self, spec, placement, env, run_dir):
        return RunHandle("echo", "k")

    def status(self, handle):
        return RunStatus(RunState.SUCCEEDED, exit_code=0)

    def cancel(self, handle, grace_s=10.0):
        pass

    def read_logs(self, handle, offset=0):
        return LogChunk("", offset, True)

    def node_samples(self, handle, since_ts=0.0):
        return []

    def close(self):
        pass
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    (tmp_path / "echo_backend_mod.py").write_text(textwrap.dedent(ECHO))
    monkeypatch.syspath_prepend(str(tmp_path))
    return Registry([md.EntryPoint("echo", "echo_backend_mod:Echo", ENTRY_POINT_GROUP)])


def test_backend_tables_are_read_and_kept_when_saved(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONFIG))
    assert config.backend_options("ray") == {"address": "127.0.0.1:6379", "sample_interval_s": 0.5}
    assert config.backend_options("echo")["nested"] == {"a": 1, "b c": [1, 2]}
    assert config.backend_options("local") == {}
    assert Config().backend_options("ray") == {}
    again = save_config(config, tmp_path / "saved.toml")  # the Settings page's writer
    assert again.backends == config.backends
    assert "[backends.ray]" in dump_config(config)


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("backends = 3\n", 1, "backends", "backends must be a table"),
        ('[sampling]\ninterval_s = 1\n[backends]\nray = "x"\n', 4, "backends.ray",
         "backends.ray must be a table of the backend's options such as [backends.ray]"),
        ("[backendz]\nx = 1\n", 1, "backendz", "did you mean 'backends'?"),
    ],
)  # fmt: skip
def test_mistakes_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, words: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.path, err.line, err.key) == (str(path), line, key)
    assert words in str(err) and str(path) in str(err)


def test_backend_options_on_the_command_line() -> None:
    args = build_parser().parse_args(
        ["run", "--backend", "ray", "--backend-option", "address=127.0.0.1:6379",
         "--backend-option", "num_gpus=2", "--backend-option", 'namespace="x y"',
         "--backend-option", "flag=true", "--backend-option", "empty=", "--", "true"]
    )  # fmt: skip
    assert backend_overrides(args) == {
        "address": "127.0.0.1:6379",
        "num_gpus": 2,
        "namespace": "x y",
        "flag": True,
        "empty": "",
    }
    for bad in ("address", "=1", "a b=1"):
        with pytest.raises(UsageError, match="is not KEY=VALUE"):
            backend_overrides(argparse.Namespace(backend_option=[bad]))


def test_the_backend_gets_configured_options_overrides_and_the_node_sampler(
    tmp_path: Path, echo: Registry
) -> None:
    config = load_config(_write(tmp_path, CONFIG))
    made = backend_config("ray", config=config, state_dir=tmp_path, overrides={"namespace": "n"})
    assert made.options == {
        "address": "127.0.0.1:6379",
        "sample_interval_s": 0.5,
        "namespace": "n",
    }
    assert made.node_sampler is NodeSampler and made.state_dir == tmp_path
    backend = open_backend(
        "echo", tmp_path / "db" / "c.db", config, overrides={"logs": False}, registry=echo
    )
    assert {str(c) for c in backend.capabilities} == {"node-samples"}
    assert (tmp_path / "db" / "backends" / "echo").is_dir()


def test_plugins_probes_each_backend_with_its_configured_options(
    tmp_path: Path, echo: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, CONFIG)
    assert plugins_cmd.run(argparse.Namespace(format="json", config=str(path)), echo) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "ok" and row["capabilities"] == ["logs", "node-samples"]
    bad = _write(tmp_path, "backends = 1\n")
    assert plugins_cmd.run(argparse.Namespace(format="json", config=str(bad)), echo) == 0
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)
    assert row["status"] == "ok" and row["capabilities"] == ["node-samples"]
    assert "probed without their options" in captured.err
