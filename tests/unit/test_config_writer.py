"""Writing the configuration: faithful round trip, atomic replace with a backup, nothing invalid."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import costmeter.config_writer as writer
from costmeter.config import (
    AlertsConfig,
    Config,
    CostConfig,
    RetentionConfig,
    SamplingConfig,
    StorageConfig,
    load_config,
    parse_config,
)
from costmeter.config_writer import backup_path, dump_config, save_config, toml_string
from costmeter.core import bounds
from costmeter.core.errors import ConfigError
from costmeter.cost.pricing import PriceRow, load_default_pricing, make_row

WHERE = Path("/configs/costmeter/config.toml")

# --- strategies ----------------------------------------------------------------------------

# Any character a UTF-8 file can hold, control characters included (they must be escaped).
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_words = _text.filter(lambda s: s.strip() != "")


def _within(bound: bounds.Bound) -> st.SearchStrategy[float]:
    """Any float the loader accepts for a key with this bound (ends included)."""
    return st.floats(bound.low, bound.high, exclude_min=bound.low_open, allow_nan=False)


_DEFAULT_MODELS = [row.model for row in load_default_pricing().gpu_rows]


@st.composite
def _retention(draw: st.DrawFn) -> RetentionConfig:
    """Days that never shrink from raw to 1-hour data; "forever" (None) only at the end."""
    kept = draw(st.integers(0, 3))
    days = sorted(draw(st.lists(_within(bounds.RETENTION_DAYS), min_size=kept, max_size=kept)))
    values: list[float | None] = [*days, *[None] * (3 - kept)]
    return RetentionConfig(*values)


@st.composite
def _gpu_row(draw: st.DrawFn) -> PriceRow:
    patterns = st.lists(
        st.one_of(_words.map(re.escape), st.sampled_from(["A100.*80GB", r"RTX\s*3090", "T4$"])),
        min_size=1,
        max_size=3,
    )
    model, match = draw(
        st.one_of(
            st.tuples(st.sampled_from(_DEFAULT_MODELS), st.just([])),  # keeps the default's
            st.tuples(_words, patterns),
        )
    )
    return make_row(
        model=model,
        match=match,
        hourly=draw(_within(bounds.PRICE_PER_GPU_HOUR)),
        source=draw(_words.filter(lambda s: not s.startswith("your configuration ("))),
        date=draw(st.one_of(st.just(""), _words, st.just("2025-03-01"))),
        url=draw(st.one_of(st.none(), _words)),
        user=True,
        includes_energy=draw(st.booleans()),
    )


_configs = st.builds(
    Config,
    sampling=st.builds(
        SamplingConfig,
        interval_s=_within(bounds.INTERVAL_S),
        process_scan_interval_s=_within(bounds.SCAN_INTERVAL_S),
    ),
    retention=_retention(),
    cost=st.builds(
        CostConfig,
        currency=st.one_of(st.none(), st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        tariff_per_kwh=st.one_of(st.none(), _within(bounds.PRICE_PER_KWH)),
        carbon_g_per_kwh=st.one_of(st.none(), _within(bounds.CARBON_G_PER_KWH)),
        cpu_core_hour=st.one_of(st.none(), _within(bounds.PRICE_PER_CORE_HOUR)),
        cpu_tdp_w=st.one_of(st.none(), _within(bounds.POWER_W)),
        gpu=st.lists(_gpu_row(), max_size=4).map(tuple),
    ),
    alerts=st.builds(
        AlertsConfig,
        idle_allocated_minutes=_within(bounds.MINUTES),
        daily_budget=st.one_of(st.none(), _within(bounds.BUDGET)),
    ),
    storage=st.builds(
        StorageConfig,
        database=st.one_of(
            st.none(),
            st.lists(_words.filter(lambda s: "/" not in s and "\x00" not in s), min_size=1).map(
                lambda parts: Path("/", *parts)
            ),
        ),
    ),
)


# --- round trip ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(_configs)
def test_what_is_written_reads_back_equal(config: Config) -> None:
    text = dump_config(config, path=WHERE)
    tomllib.loads(text)  # plain TOML, whatever the strings hold
    assert parse_config(text, WHERE) == dataclasses.replace(config, path=WHERE)


@given(_text)
def test_strings_survive_escaping(text: str) -> None:
    assert tomllib.loads(f"s = {toml_string(text)}")["s"] == text


def test_the_defaults_make_a_short_file_that_reads_back_as_the_defaults() -> None:
    text = dump_config(Config())
    assert "[cost]" not in text and "[storage]" not in text and "daily_budget" not in text
    assert 'hour_days = "forever"' in text
    assert parse_config(text, WHERE) == Config(path=WHERE)


def test_cost_holds_only_what_the_user_set() -> None:
    text = dump_config(Config(cost=CostConfig(tariff_per_kwh=0.3)))
    assert "tariff_per_kwh = 0.3" in text
    assert "currency" not in text and "carbon" not in text and "[[cost.gpu]]" not in text


def test_a_row_without_a_source_names_the_new_file_when_read_back(tmp_path: Path) -> None:
    row = make_row(
        model="RTX 3090",
        match=["RTX 3090"],
        hourly=0.2,
        source="your configuration (/old/place/config.toml)",
        user=True,
    )
    path = tmp_path / "config.toml"
    text = dump_config(Config(cost=CostConfig(gpu=(row,))), path=path)
    assert "/old/place" not in text
    saved = save_config(Config(cost=CostConfig(gpu=(row,))), path)
    assert saved.cost.gpu[0].source == f"your configuration ({path})"


# --- saving --------------------------------------------------------------------------------


def test_save_writes_a_file_that_load_config_reads(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "config.toml"
    config = Config(
        sampling=SamplingConfig(interval_s=2.5),
        retention=RetentionConfig(raw_days=3, minute_days=30, hour_days=400),
        cost=CostConfig(currency="EUR", tariff_per_kwh=0.31),
        alerts=AlertsConfig(daily_budget=12.5),
        storage=StorageConfig(database=tmp_path / "my data.db"),
    )
    saved = save_config(config, path)
    assert saved == dataclasses.replace(config, path=path)
    assert load_config(path) == saved
    assert saved.pricing().currency == "EUR"
    assert not backup_path(path).exists()  # nothing was there before
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_save_keeps_the_previous_file_as_bak(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    original = "# my notes\n[sampling]\ninterval_s = 3\n"
    path.write_text(original, encoding="utf-8")
    save_config(Config(sampling=SamplingConfig(interval_s=4)), path)
    assert backup_path(path).read_text(encoding="utf-8") == original
    assert load_config(path).interval_s == 4.0
    # The same settings saved again change nothing, so the backup still holds the notes.
    save_config(Config(sampling=SamplingConfig(interval_s=4)), path)
    assert backup_path(path).read_text(encoding="utf-8") == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "config.toml.bak"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and links")
def test_save_keeps_permissions_and_follows_a_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "costmeter.toml"
    real.parent.mkdir()
    real.write_text("[sampling]\ninterval_s = 3\n", encoding="utf-8")
    real.chmod(0o600)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    save_config(Config(sampling=SamplingConfig(interval_s=5)), link)
    assert link.is_symlink() and load_config(link).interval_s == 5.0
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert backup_path(real).read_text(encoding="utf-8") == "[sampling]\ninterval_s = 3\n"


def _one_row(model: str, match: tuple[str, ...]) -> Config:
    row = make_row(model=model, match=match, hourly=1.0, source="x", user=True)
    return Config(cost=CostConfig(gpu=(row,)))


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        (
            Config(retention=RetentionConfig(raw_days=10, minute_days=5)),
            "retention.minute_days",
            "minute_days (5) must be at least raw_days (10)",
        ),
        (
            Config(sampling=SamplingConfig(interval_s=0)),
            "sampling.interval_s",
            "interval_s must be greater than 0, got 0",
        ),
        (
            Config(cost=CostConfig(tariff_per_kwh=-0.1)),
            "cost.tariff_per_kwh",
            "tariff_per_kwh cannot be negative, got -0.1",
        ),
        (Config(cost=CostConfig(currency="US")), "cost.currency", "three-letter currency code"),
        (
            Config(alerts=AlertsConfig(daily_budget=float("nan"))),
            "alerts.daily_budget",
            "must be a finite number",
        ),
        (
            _one_row("Mystery", ()),
            "cost.gpu.name",
            "'Mystery' is not a model in the default price table",
        ),
        (
            _one_row("A\ud800", ("A",)),
            "cost.gpu.name",
            "not valid TOML",
        ),
    ],
)
def test_an_invalid_config_is_refused_and_nothing_is_written(
    tmp_path: Path, config: Config, key: str, words: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[sampling]\ninterval_s = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        save_config(config, path)
    err = info.value
    assert words in str(err) and words in err.message
    assert err.path == str(path) and err.key == key and err.line is not None
    assert path.read_text(encoding="utf-8") == "[sampling]\ninterval_s = 3\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_a_failed_replace_leaves_the_file_and_no_temporary_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[sampling]\ninterval_s = 3\n", encoding="utf-8")
    real_replace = os.replace

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == path:
            raise PermissionError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", failing_replace)
    with pytest.raises(ConfigError, match="could not be written: Permission denied"):
        save_config(Config(sampling=SamplingConfig(interval_s=9)), path)
    assert path.read_text(encoding="utf-8") == "[sampling]\ninterval_s = 3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "config.toml.bak"]


# --- editing the user's file ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(_configs, _configs)
def test_a_file_edited_from_another_configuration_reads_back_as_the_new_one(
    before: Config, after: Config
) -> None:
    current = dump_config(before, path=WHERE)
    text = dump_config(after, path=WHERE, current=current)
    assert parse_config(text, WHERE) == dataclasses.replace(after, path=WHERE)
    # Editing a file that already says it changes nothing.
    assert dump_config(after, path=WHERE, current=text) == text


def test_a_save_keeps_the_users_comments_key_order_and_spelling(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    original = (
        "# My GPU box. Ask Ana before changing the tariff.\n"
        "\n"
        "[alerts]\n"
        "daily_budget = 40  # the lab's budget\n"
        "idle_allocated_minutes = 30\n"
        "\n"
        "# sample slower on battery\n"
        "[sampling]\n"
        "process_scan_interval_s = 20\n"
        "interval_s = 2\n"
        "\n"
        "[cost]\n"
        "tariff_per_kwh = 0.25   # night rate\n"
        "currency = 'EUR'\n"
    )
    path.write_text(original, encoding="utf-8")
    config = load_config(path)
    changed = dataclasses.replace(config, sampling=SamplingConfig(2.0, 15.0))
    saved = save_config(changed, path)
    text = path.read_text(encoding="utf-8")
    assert saved == changed and load_config(path) == changed
    for kept in (
        "# My GPU box. Ask Ana before changing the tariff.\n",
        "daily_budget = 40  # the lab's budget\n",
        "# sample slower on battery\n",
        "tariff_per_kwh = 0.25   # night rate\n",
        "currency = 'EUR'\n",
        "interval_s = 2\n",
    ):
        assert kept in text
    assert "process_scan_interval_s = 15.0\n" in text
    # The user's order of tables and keys, not the writer's.
    order = [text.index(s) for s in ("[alerts]", "[sampling]", "process_scan", "interval_s =")]
    assert order == sorted(order)
    assert text.index("[cost]") > text.index("[sampling]")
    assert backup_path(path).read_text(encoding="utf-8") == original


def test_a_key_the_config_drops_is_removed_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[alerts]\n# over this, mail me\ndaily_budget = 40\n\n[storage]\ndatabase = '/d/x.db'\n",
        encoding="utf-8",
    )
    config = load_config(path)
    saved = save_config(
        dataclasses.replace(config, alerts=AlertsConfig(), storage=StorageConfig()), path
    )
    text = path.read_text(encoding="utf-8")
    assert "daily_budget" not in text and "[storage]" not in text
    assert "# over this, mail me" in text
    assert saved.alerts == AlertsConfig() and saved.storage == StorageConfig()


def test_a_file_that_is_not_toml_is_kept_as_bak_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[sampling\ninterval_s = = 3\n", encoding="utf-8")
    saved = save_config(Config(sampling=SamplingConfig(interval_s=4)), path)
    assert saved.interval_s == 4.0 and load_config(path) == saved
    assert backup_path(path).read_text(encoding="utf-8") == "[sampling\ninterval_s = = 3\n"


@pytest.mark.parametrize(
    "text",
    [
        "sampling.interval_s = 2  # dotted keys\nalerts.daily_budget = 5\n",
        'cost = { currency = "EUR", tariff_per_kwh = 0.2 }\n[sampling]\ninterval_s = 3\n',
        '[[cost.gpu]]\nname = "H100 SXM 80GB"\nhourly = 2.0\n\n[cost]\ncurrency = "EUR"\n',
        '[hosts]\nbox.url = "http://10.0.0.1:9464"\n',
        '[cost]\ncurrency = "EUR"\n[sampling]\ninterval_s = 2\n'
        '[[cost.gpu]]\nname = "H100 SXM 80GB"\nhourly = 2.0\n',
    ],
    ids=["dotted-keys", "inline-table", "rows-before-their-table", "dotted-host", "split-table"],
)
def test_files_written_in_any_toml_style_are_edited_to_the_new_settings(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    before = load_config(path)
    row = make_row(model="A100 80GB", match=(), hourly=1.5, source="me", user=True)
    after = dataclasses.replace(
        before,
        sampling=SamplingConfig(5.0, 10.0),
        cost=dataclasses.replace(before.cost, tariff_per_kwh=0.4, gpu=(*before.cost.gpu, row)),
    )
    assert save_config(after, path) == after
    assert load_config(path) == after
    assert backup_path(path).read_text(encoding="utf-8") == text
