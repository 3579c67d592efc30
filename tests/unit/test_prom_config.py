"""[sources.NAME] tables and record's --prometheus options: typed values, mistakes named."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from costmeter.cli.main import build_parser
from costmeter.cli.record_cmd import sources
from costmeter.config import Config, SourceConfig, check_selector, parse_config
from costmeter.core.errors import ConfigError


def test_sources_are_read_in_file_order_with_durations_and_selectors(tmp_path: Path) -> None:
    text = """
[sources.fleet]
url = "http://prom.example:9090/"
match = 'cluster="a", job=~"dcgm.*"'
backfill = "12h"
step = 15
token_file = "tokens/prom"

[sources.old]
url = "https://thanos.example/prometheus"
kind = "prometheus"
backfill = 0
step = "30s"
token = "keyring"
enabled = false
"""
    config = parse_config(text, tmp_path / "config.toml")
    assert config.sources == (
        SourceConfig(
            name="fleet",
            url="http://prom.example:9090",
            token_file=tmp_path / "tokens" / "prom",
            match='{cluster="a", job=~"dcgm.*"}',
            backfill_s=12 * 3600.0,
            step_s=15.0,
        ),
        SourceConfig(
            name="old",
            url="https://thanos.example/prometheus",
            token_keyring=True,
            backfill_s=0.0,
            step_s=30.0,
            enabled=False,
        ),
    )
    assert parse_config("", tmp_path / "c.toml").sources == ()
    one = parse_config('[sources.s]\nurl = "http://h:9090"\n', tmp_path / "c.toml").sources[0]
    assert (one.backfill_s, one.step_s, one.kind, one.match) == (
        7 * 86400.0,
        60.0,
        "prometheus",
        None,
    )


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ('backfill = "7x"', "backfill", "is not a duration to fill back"),
        ("backfill = -1", "backfill", "cannot be negative"),
        ("step = 120", "step", "give a value from 1 to 60"),
        ('step = "2m"', "step", "is not a query step in seconds"),
        ("step = 0.5", "step", "is too small"),
        ("match = 'up{a=\"b\"}'", "match", "must be a label selector"),
        ('match = "a=b"', "match", "no label matcher"),
        ('match = "{}"', "match", "at least one matcher"),
        ('kind = "thanos"', "kind", "kind must be prometheus"),
        ('url = "prom:9090"', "url", 'needs url = "http://HOST:9090"'),
        ('urll = "x"', "urll", "did you mean 'url'"),
        ('token = "abc"', "token", 'token can only be "keyring"'),
        ("enabled = 1", "enabled", "must be true or false"),
    ],
)
def test_a_bad_source_value_is_named_with_its_line(
    tmp_path: Path, line: str, key: str, words: str
) -> None:
    url = "" if line.startswith("url") else 'url = "http://a:9090"\n'
    text = f'[hosts.h]\nurl = "http://h:1"\n\n[sources.s]\n{url}{line}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "config.toml")
    err = caught.value
    assert words in err.message
    assert err.key == f"sources.s.{key}"
    assert err.line == (5 if url == "" else 6)


def test_a_source_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources.s must be a table such as \[sources.s\]"):
        parse_config('sources.s = "http://x"\n', tmp_path / "config.toml")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('cluster="a"', '{cluster="a"}'),
        ('{ cluster = "a" ,job!~"x,y" }', '{cluster = "a", job!~"x,y"}'),
        (r'{path="a\"b", env!="prod"}', r'{path="a\"b", env!="prod"}'),
    ],
)
def test_selectors_are_normalised(given: str, expected: str) -> None:
    assert check_selector(given) == expected


def _record_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["record", *argv])


def test_record_prometheus_makes_a_source_named_after_its_address(tmp_path: Path) -> None:
    args = _record_args(
        "--prometheus", "http://127.0.0.1:9090/", "--match", 'cluster="a"', "--backfill", "0",
        "--step", "15s", "--token-file", str(tmp_path / "t"),
    )  # fmt: skip
    (found,) = sources(args, Config())
    assert found == SourceConfig(
        name="127.0.0.1:9090",
        url="http://127.0.0.1:9090",
        token_file=tmp_path / "t",
        match='{cluster="a"}',
        backfill_s=0.0,
        step_s=15.0,
    )


def test_record_source_options_without_prometheus_are_refused() -> None:
    with pytest.raises(ConfigError, match="--backfill is an option of --prometheus"):
        sources(_record_args("--backfill", "1d"), Config())
    with pytest.raises(ConfigError, match="--match holds 'x', which is no label matcher"):
        sources(_record_args("--prometheus", "http://h:9090", "--match", "x"), Config())
    with pytest.raises(ConfigError, match="--prometheus: 'ftp://h' is not an http"):
        sources(_record_args("--prometheus", "ftp://h"), Config())
    with pytest.raises(SystemExit):
        _record_args("--prometheus", "http://h:9090", "--step", "5m")
