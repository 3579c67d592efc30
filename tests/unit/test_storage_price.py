"""The storage price: the shipped ``[storage]`` row with its source, the user's override in
``[cost]``, bad values refused in words; and the definitions of storage cost (per month to
keep, GB-months over a window)."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.config import load_config, parse_config
from costmeter.config_writer import dump_config
from costmeter.core.errors import ConfigError
from costmeter.cost.pricing import load_default_pricing, parse_pricing
from costmeter.cost.storage import SECONDS_PER_MONTH, SizePoint, gb_months, monthly_cost


def test_the_shipped_table_prices_storage_with_a_published_source() -> None:
    p = load_default_pricing()
    assert p.storage_gb_month == 0.08
    assert "EBS" in p.storage_source and "gp3" in p.storage_source
    assert p.storage_url and p.storage_url.startswith("https://aws.amazon.com/") and p.storage_date


def test_the_user_overrides_it_and_the_source_says_so(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[cost]\nstorage_gb_month = 0.023\n", encoding="utf-8")
    config = load_config(path)
    pricing = config.pricing()
    assert pricing.storage_gb_month == 0.023 and str(path) in pricing.storage_source
    # The Settings page writes the file back: the override is not lost.
    assert "storage_gb_month = 0.023" in dump_config(config)


@pytest.mark.parametrize("value", ["-1", "1e9", '"cheap"', "nan"])
def test_a_bad_price_is_refused_with_file_line_and_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"[cost]\nstorage_gb_month = {value}\n", tmp_path / "c.toml")
    text = str(err.value)
    assert "line 2" in text and "storage_gb_month" in text


def test_a_price_table_without_storage_prices_it_at_zero_and_says_so() -> None:
    text = (Path(__file__).parents[2] / "resources" / "pricing.toml").read_text(encoding="utf-8")
    start = text.index("[storage]")
    end = text.index("[unknown_gpu]")
    p = parse_pricing(text[:start] + text[end:], path="t.toml")
    assert p.storage_gb_month == 0.0 and "no storage price" in p.storage_source
    with pytest.raises(ConfigError, match="gb_month"):
        parse_pricing(text.replace("gb_month = 0.08", 'gb_month = "x"'), path="t.toml")


def test_monthly_cost_is_gb_times_price() -> None:
    assert monthly_cost(5_000_000_000, 0.08) == pytest.approx(0.40)
    assert monthly_cost(-5, 0.08) == 0.0


def test_gb_months_hold_each_size_until_the_next_measurement() -> None:
    gb = 1_000_000_000
    month = SECONDS_PER_MONTH
    points = [
        SizePoint(1, "/a", 0.0, 2 * gb),  # before the window: holds into it
        SizePoint(1, "/a", 0.5 * month, 4 * gb),
        SizePoint(2, "/b", 0.25 * month, 1 * gb),
    ]
    months, runs, at_end = gb_months(points, 0.0, month)
    # /a: 2 GB for half a month + 4 GB for half; /b: 1 GB for three quarters.
    assert months == pytest.approx(2 * 0.5 + 4 * 0.5 + 1 * 0.75)
    assert (runs, at_end) == (2, 5 * gb)
    later, _, _ = gb_months(points, 0.5 * month, month)
    assert later == pytest.approx(4 * 0.5 + 1 * 0.5)


def test_a_folder_two_runs_write_to_is_counted_once() -> None:
    gb = 1_000_000_000
    month = SECONDS_PER_MONTH
    points = [SizePoint(1, "/sweep", 0.0, 1 * gb), SizePoint(2, "/sweep", 0.5 * month, 3 * gb)]
    months, runs, at_end = gb_months(points, 0.0, month)
    assert months == pytest.approx(1 * 0.5 + 3 * 0.5) and (runs, at_end) == (2, 3 * gb)


def test_the_settings_form_keeps_the_storage_price(tmp_path: Path) -> None:
    from costmeter.service.form_text import number_text
    from costmeter.service.settings_form import FIELDS, build_config

    path = tmp_path / "config.toml"
    path.write_text("[cost]\nstorage_gb_month = 0.023\n", encoding="utf-8")
    config = load_config(path)
    texts = {}
    for key, spec in FIELDS.items():
        value = spec.read(config)
        texts[key] = value if isinstance(value, str) else number_text(value)
    forever = {"retention.hour_days": True}  # the default: kept forever
    built, problems = build_config(texts, forever, (), path)
    assert problems == {} and built is not None
    assert built.cost.storage_gb_month == 0.023
    texts["cost.storage_gb_month"] = "-2"
    _none, problems = build_config(texts, forever, (), path)
    assert "cost.storage_gb_month" in problems
