"""``record --remote/--token-file/--scrape``: pairing tokens with URLs, and the host list."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from costmeter.cli.record_cmd import pair_tokens, remote_hosts
from costmeter.config import Config, RemoteHostConfig
from costmeter.core import ConfigError


def test_no_token_files_means_no_tokens() -> None:
    assert pair_tokens(["http://a:1", "http://b:2"], []) == [None, None]


def test_one_token_file_serves_every_remote() -> None:
    assert pair_tokens(["http://a:1", "http://b:2"], ["/t"]) == [Path("/t"), Path("/t")]


def test_as_many_files_as_remotes_pair_in_order() -> None:
    assert pair_tokens(["http://a:1", "http://b:2"], ["/ta", "/tb"]) == [Path("/ta"), Path("/tb")]


def test_a_count_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="2 --token-file options for 3 --remote URLs"):
        pair_tokens(["http://a:1", "http://b:2", "http://c:3"], ["/t1", "/t2"])
    with pytest.raises(ConfigError, match="no --remote is given"):
        pair_tokens([], ["/t"])


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"remote": [], "scrape": [], "token_file": []}
    base.update(kw)
    return argparse.Namespace(**base)


def test_config_hosts_and_command_line_urls_are_collected_together() -> None:
    config = Config(
        hosts=(
            RemoteHostConfig(name="box1", url="http://box1:9464"),
            RemoteHostConfig(name="off", url="http://off:9464", enabled=False),
        )
    )
    hosts = remote_hosts(
        _args(
            remote=["http://127.0.0.1:9000/"],
            token_file=["/tok"],
            scrape=["http://dcgm:9400/metrics, http://dcgm:9100"],
        ),
        config,
    )
    assert [(h.name, h.url, h.kind) for h in hosts] == [
        ("box1", "http://box1:9464", "agent"),
        ("", "http://127.0.0.1:9000", "agent"),
        ("", "http://dcgm:9400/metrics,http://dcgm:9100", "prometheus"),
    ]
    assert hosts[1].token_file == Path("/tok")


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:9464", "http://"])
def test_bad_urls_are_refused_with_a_sentence(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http:// or https:// URL"):
        remote_hosts(_args(remote=[url]), Config())


def test_the_same_url_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        remote_hosts(_args(remote=["http://a:1", "http://a:1/"]), Config())
