"""``[sources.NAME]`` tables through the config writer: a save from Settings keeps them as
written, the Hosts page's add/replace/remove edit them in place, names are checked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from costmeter.config import SourceConfig, load_config
from costmeter.config_writer import add_source, remove_source, replace_source, save_config
from costmeter.core.errors import ConfigError

HAND_WRITTEN = """\
# the lab's config
[sampling]
interval_s = 2.0

[hosts.gpu-box-1]
url = "http://10.0.0.5:9464"

[sources.lab]  # the lab's Prometheus
url = "http://127.0.0.1:9090"
# a week, in seconds
backfill = 604800
match = '{cluster="a"}'
step = "30s"
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "config.toml"
    file.write_text(HAND_WRITTEN, encoding="utf-8")
    return file


def test_a_settings_save_keeps_the_sources_as_written(path: Path) -> None:
    config = load_config(path)
    saved = save_config(dataclasses.replace(config, sampling=config.sampling), path)
    assert saved.sources == config.sources
    assert saved.sources[0].backfill_s == 604800 and saved.sources[0].step_s == 30
    text = path.read_text(encoding="utf-8")
    for line in ("# the lab's Prometheus", "backfill = 604800", "match = '{cluster=\"a\"}'"):
        assert line in text
    assert 'step = "30s"' in text


def test_add_replace_remove_edit_the_file_in_place(path: Path) -> None:
    new = SourceConfig("cluster-b", "https://prom-b:9090", match='{cluster="b"}', backfill_s=0)
    config = add_source(path, new)
    assert [s.name for s in config.sources] == ["lab", "cluster-b"]
    assert load_config(path).sources[1] == new
    text = path.read_text(encoding="utf-8")
    assert "[sources.cluster-b]" in text and "backfill = 0" in text
    assert "# the lab's config" in text and "[hosts.gpu-box-1]" in text

    lab = load_config(path).sources[0]
    config = replace_source(path, "lab", dataclasses.replace(lab, backfill_s=2 * 86400))
    assert config.sources[0].backfill_s == 2 * 86400
    text = path.read_text(encoding="utf-8")
    assert 'backfill = "2d"' in text and "# the lab's Prometheus" in text

    config = remove_source(path, "lab")
    assert [s.name for s in config.sources] == ["cluster-b"]
    assert load_config(path).hosts[0].name == "gpu-box-1"
    assert remove_source(path, "lab") == config  # already gone: no error, no write


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("lab", "already a source named lab"),
        ("gpu-box-1", "there is a host named gpu-box-1"),
        ("bad name", "source name 'bad name' may use only"),
    ],
)
def test_a_refused_name_leaves_the_file_unchanged(path: Path, name: str, words: str) -> None:
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=words):
        add_source(path, SourceConfig(name, "http://p:9090"))
    assert path.read_bytes() == before
    with pytest.raises(ConfigError, match="no source named gone"):
        replace_source(path, "gone", SourceConfig("gone", "http://p:9090"))
    assert path.read_bytes() == before
