"""[hosts.NAME] tables written, replaced and removed by the Hosts page, checked before saving."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmeter.config import Config, RemoteHostConfig, load_config
from costmeter.config_writer import (
    add_host,
    dump_config,
    host_name_problem,
    remove_host,
    replace_host,
    save_config,
)
from costmeter.core.errors import ConfigError


def _host(name: str = "gpu-box-1", **changes: object) -> RemoteHostConfig:
    base = RemoteHostConfig(name=name, url="http://10.0.0.5:9464")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_hosts_and_advice_survive_a_save_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[hosts."box.lan"]\nurl = "https://box.lan:9464"\ntoken = "keyring"\n\n'
        '[hosts.dcgm]\nurl = "http://127.0.0.1:9400/metrics"\nkind = "prometheus"\n'
        "enabled = false\n\n[advice]\nidle_minutes = 45\n",
        encoding="utf-8",
    )
    before = load_config(path)
    saved = save_config(before, path)  # what the Settings page does
    assert saved.hosts == before.hosts
    assert [h.name for h in saved.hosts] == ["box.lan", "dcgm"]
    assert saved.advice == {"idle_minutes": 45.0}
    assert load_config(path) == before


def test_add_writes_a_table_and_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[sampling]\ninterval_s = 2.5\n", encoding="utf-8")
    token = tmp_path / "tokens" / "gpu-box-1.token"
    saved = add_host(path, _host(token_file=token))
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["hosts"]["gpu-box-1"] == {
        "url": "http://10.0.0.5:9464",
        "kind": "agent",
        "token_file": str(token),
        "enabled": True,
    }
    assert data["sampling"]["interval_s"] == 2.5
    assert saved.hosts == (_host(token_file=token),)
    assert load_config(path).hosts == saved.hosts


def test_add_reads_the_file_fresh_so_hand_edits_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    add_host(path, _host("a"))
    path.write_text(
        path.read_text(encoding="utf-8") + '\n[hosts.b]\nurl = "http://b:1"\n', encoding="utf-8"
    )
    saved = add_host(path, _host("c", kind="prometheus", url="http://c:9400/metrics"))
    assert [h.name for h in saved.hosts] == ["a", "b", "c"]
    assert saved.hosts[2].kind == "prometheus"


def test_a_taken_or_bad_name_is_refused_and_the_file_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    add_host(path, _host("a"))
    text = path.read_bytes()
    with pytest.raises(ConfigError, match="already a host named a"):
        add_host(path, _host("a", url="http://other:1"))
    with pytest.raises(ConfigError, match="only letters, digits"):
        add_host(path, _host("bad name"))
    with pytest.raises(ConfigError, match="needs url"):  # the loader's own check
        add_host(path, _host("z", url="ftp://x"))
    assert path.read_bytes() == text


def test_replace_renames_in_place_and_remove_drops_only_that_host(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    for name in ("a", "b", "c"):
        add_host(path, _host(name))
    saved = replace_host(path, "b", _host("b2", token_keyring=True, enabled=False))
    assert [h.name for h in saved.hosts] == ["a", "b2", "c"]
    assert saved.hosts[1].token_keyring and not saved.hosts[1].enabled
    assert 'token = "keyring"' in path.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="already a host named c"):
        replace_host(path, "b2", _host("c"))
    with pytest.raises(ConfigError, match="no host named gone"):
        replace_host(path, "gone", _host("gone"))
    saved = remove_host(path, "a")
    assert [h.name for h in saved.hosts] == ["b2", "c"]
    assert remove_host(path, "a") == saved  # already gone: nothing to do
    assert load_config(path).hosts == saved.hosts
    assert (tmp_path / "config.toml.bak").exists()


def test_a_file_with_a_mistake_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[sampling]\ninterval_s = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="interval_s"):
        add_host(path, _host())
    assert path.read_text(encoding="utf-8") == "[sampling]\ninterval_s = -1\n"


@pytest.mark.parametrize(
    ("name", "ok"),
    [("gpu-box-1", True), ("box.lan", True), ("A_1", True), ("", False), ("-x", False),
     ("a b", False), ("a/b", False), ("x" * 64, False), ("é", False)],
)  # fmt: skip
def test_host_names(name: str, ok: bool) -> None:
    assert (host_name_problem(name) is None) is ok


_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
_urls = st.builds(
    lambda scheme, host, port: f"{scheme}://{host}:{port}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True),
    st.integers(1, 65535),
)


@settings(max_examples=60, deadline=None)
@given(
    hosts=st.lists(
        st.builds(
            RemoteHostConfig,
            name=_names,
            url=_urls,
            kind=st.sampled_from(["agent", "prometheus"]),
            token_keyring=st.booleans(),
            enabled=st.booleans(),
        ),
        max_size=4,
        unique_by=lambda h: h.name,
    )
)
def test_any_hosts_read_back_equal(hosts: list[RemoteHostConfig]) -> None:
    from costmeter.config import parse_config

    config = Config(hosts=tuple(hosts), path=Path("/tmp/c.toml"))
    assert parse_config(dump_config(config), Path("/tmp/c.toml")).hosts == tuple(hosts)
