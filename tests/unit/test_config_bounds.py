"""Every number in the configuration file is finite and inside its bound: the same absurd values as
on the command line, written as TOML (which has ``nan`` and ``inf`` literals), are refused with the
file, line, key, value and bound; sane and boundary values are read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from costmeter.advice.thresholds import Thresholds
from costmeter.config import load_config
from costmeter.core import bounds as b
from costmeter.core.errors import ConfigError

BAD = ("nan", "inf", "-inf", "-1", "0", "1e-300", "1e308", '"abc"')

#: (table, key, its bound, a sane value). The bound comes from the brief's table, not the loader.
KEYS: list[tuple[str, str, b.Bound, str]] = [
    ("sampling", "interval_s", b.INTERVAL_S, "0.5"),
    ("sampling", "process_scan_interval_s", b.SCAN_INTERVAL_S, "30"),
    ("retention", "hour_days", b.RETENTION_DAYS, "365"),
    ("cost", "tariff_per_kwh", b.PRICE_PER_KWH, "0.31"),
    ("cost", "carbon_g_per_kwh", b.CARBON_G_PER_KWH, "350"),
    ("cost", "cpu_core_hour", b.PRICE_PER_CORE_HOUR, "0.04"),
    ("cost", "cpu_tdp_w", b.POWER_W, "280"),
    ("alerts", "idle_allocated_minutes", b.MINUTES, "45"),
    ("alerts", "daily_budget", b.BUDGET, "25"),
    ("cost.gpu", "hourly", b.PRICE_PER_GPU_HOUR, "1.5"),
] + [
    ("advice", f.name, b.advice_bound(f.name), str(f.default))
    for f in dataclasses.fields(Thresholds)
]


def _toml(table: str, key: str, value: str) -> str:
    if table == "cost.gpu":
        return f'[[cost.gpu]]\nname = "A100 80GB"\n{key} = {value}\n'
    return f"[{table}]\n{key} = {value}\n"


def _allowed(bound: b.Bound, literal: str) -> bool:
    if literal.startswith('"'):
        return False
    return bound.allows(float(literal))


CASES = [
    pytest.param(table, key, bound, bad, id=f"{table}.{key}={bad}")
    for table, key, bound, _good in KEYS
    for bad in BAD
    if not _allowed(bound, bad)
]


@pytest.mark.parametrize(("table", "key", "bound", "bad"), CASES)
def test_a_number_out_of_bounds_names_file_line_key_value_and_bound(
    tmp_path: Path, table: str, key: str, bound: b.Bound, bad: str
) -> None:
    path = tmp_path / "config.toml"
    text = _toml(table, key, bad)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert err.value.line == text.splitlines().index(f"{key} = {bad}") + 1
    assert err.value.key is not None and err.value.key.endswith(key)
    shown = "'abc'" if bad == '"abc"' else b.show(float(bad))
    assert f"got {shown}" in message
    assert bound.range_text() in message, message


@pytest.mark.parametrize(
    ("table", "key", "bound", "good"),
    [pytest.param(t, k, bd, g, id=f"{t}.{k}") for t, k, bd, g in KEYS],
)
def test_sane_values_and_both_ends_are_read(
    tmp_path: Path, table: str, key: str, bound: b.Bound, good: str
) -> None:
    values = [good, repr(float(bound.high))]
    if not bound.low_open:
        values.append(repr(float(bound.low)))
    for value in values:
        path = tmp_path / "config.toml"
        path.write_text(_toml(table, key, value), encoding="utf-8")
        load_config(path)  # raises if refused


def test_zero_still_means_free_for_prices(tmp_path: Path) -> None:
    """A tariff of 0 is real (electricity included in the rent): >= 0, not > 0."""
    path = tmp_path / "config.toml"
    path.write_text("[cost]\ntariff_per_kwh = 0\ncpu_core_hour = 0\n", encoding="utf-8")
    assert load_config(path).cost.tariff_per_kwh == 0.0


def test_the_issue_examples(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[sampling]\ninterval_s = 1e-300\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"interval_s is too small, got 1e-300; give a value"):
        load_config(path)
    path.write_text("[cost]\ntariff_per_kwh = 1e308\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tariff_per_kwh is too large, got 1e\+308; give"):
        load_config(path)
