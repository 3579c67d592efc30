"""[hosts.NAME] and [advice] tables: parsed into typed values, mistakes named with their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.config import RemoteHostConfig, parse_config
from costmeter.core.errors import ConfigError


def test_hosts_are_read_in_file_order_with_their_token_source(tmp_path: Path) -> None:
    text = """
[hosts.gpu-box-1]
url = "http://10.0.0.5:9464/"
token_file = "tokens/box1"

[hosts.dcgm]
url = "https://dcgm.example:9400/metrics"
kind = "prometheus"
token = "keyring"
enabled = false
"""
    config = parse_config(text, tmp_path / "config.toml")
    assert config.hosts == (
        RemoteHostConfig(
            name="gpu-box-1",
            url="http://10.0.0.5:9464",
            kind="agent",
            token_file=tmp_path / "tokens" / "box1",
        ),
        RemoteHostConfig(
            name="dcgm",
            url="https://dcgm.example:9400/metrics",
            kind="prometheus",
            token_keyring=True,
            enabled=False,
        ),
    )


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ('url = "ftp://x"', 3, "needs url"),
        ('url = "http://x"\nkind = "ssh"', 4, "agent or prometheus"),
        ('url = "http://x"\ntoken = "s3cret"', 4, "never kept in this file"),
        ('url = "http://x"\nport = 9', 4, "unknown key 'port'"),
        ('url = "http://x"\nenabled = "yes"', 4, "true or false"),
    ],
)
def test_host_mistakes_name_the_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as err:
        parse_config(f"\n[hosts.box]\n{body}\n", tmp_path / "c.toml")
    assert err.value.line == line


def test_a_host_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hosts.box must be a table"):
        parse_config('[hosts]\nbox = "http://x"\n', tmp_path / "c.toml")


def test_advice_thresholds_are_numbers(tmp_path: Path) -> None:
    config = parse_config("[advice]\nidle_minutes = 15\n", tmp_path / "c.toml")
    assert config.advice["idle_minutes"] == 15.0
    with pytest.raises(ConfigError, match="idle_minutes"):
        parse_config('[advice]\nidle_minutes = "long"\n', tmp_path / "c.toml")
