"""Configuration loading: defaults, overrides, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.config import Config, KeyLocator, default_config_path, load_config
from costmeter.core.errors import ConfigError
from costmeter.cost.pricing import load_default_pricing


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


def test_a_missing_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml")
    assert config == Config()
    assert config.sampling.interval_s == 1.0
    assert config.sampling.process_scan_interval_s == 10.0
    assert (config.retention.raw_days, config.retention.minute_days) == (7.0, 90.0)
    assert config.retention.hour_days is None
    assert config.pricing() == load_default_pricing()


def test_default_path_is_in_the_user_config_dir() -> None:
    path = default_config_path()
    assert path.name == "config.toml" and path.parent.name == "costmeter"


def test_a_full_file_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[sampling]
interval_s = 0.5
process_scan_interval_s = 30

[retention]
raw_days = 3
minute_days = 30
hour_days = "forever"

[cost]
currency = "eur"
tariff_per_kwh = 0.31
carbon_g_per_kwh = 350
cpu_core_hour = 0.02
cpu_tdp_w = 180
""",
    )
    config = load_config(path)
    assert config.interval_s == 0.5 and config.process_scan_interval_s == 30.0
    assert config.retention.raw_days == 3.0 and config.retention.hour_days is None
    pricing = config.pricing()
    assert pricing.currency == "EUR"
    assert pricing.tariff_per_kwh == 0.31 and str(path) in pricing.tariff_source
    assert pricing.carbon_g_per_kwh == 350.0
    assert pricing.cpu_core_hour == 0.02 and pricing.cpu_tdp_w == 180.0


def test_user_gpu_rows_override_and_add(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[cost.gpu]]
name = "A100 80GB"
hourly = 1.10
source = "our reserved instances"
date = 2025-03-01

[[cost.gpu]]
name = "RTX 3090"
match = ["RTX 3090"]
hourly = 0.22
""",
    )
    pricing = load_config(path).pricing()
    default = load_default_pricing()
    a100 = pricing.gpu_price("NVIDIA A100-SXM4-80GB")
    assert default.gpu_price("NVIDIA A100-SXM4-80GB").hourly != 1.10
    assert a100.hourly == 1.10
    assert a100.source == "our reserved instances"
    assert a100.row is not None and a100.row.date == "2025-03-01"
    assert pricing.gpu_price("NVIDIA A100-SXM4-40GB") == default.gpu_price("NVIDIA A100-SXM4-40GB")
    rtx = pricing.gpu_price("NVIDIA GeForce RTX 3090")
    assert rtx.hourly == 0.22 and str(path) in rtx.source


def test_syntax_error_names_line_and_key(tmp_path: Path) -> None:
    err = error_for(tmp_path, "[sampling]\ninterval_s = 1\nprocess_scan_interval_s = = 3\n")
    assert err.line == 3
    assert err.key == "sampling.process_scan_interval_s"
    assert "not valid TOML" in str(err) and "column" in str(err)
    assert "(at line" not in str(err)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    err = error_for(tmp_path, "# comment\n[sampling]\nintervall = 2\n")
    assert err.line == 3 and err.key == "sampling.intervall"
    assert "unknown key 'intervall' in [sampling]; did you mean 'interval_s'?" in str(err)


def test_unknown_section_is_named(tmp_path: Path) -> None:
    err = error_for(tmp_path, "[samplng]\ninterval_s = 2\n")
    assert err.line == 1 and "did you mean 'sampling'?" in str(err)


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    err = error_for(tmp_path, '[sampling]\ninterval_s = "fast"\n')
    assert (err.line, err.key) == (2, "sampling.interval_s")
    assert "interval_s must be a number of seconds, got 'fast'" in str(err)


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    err = error_for(tmp_path, "[cost]\ncpu_tdp_w = true\n")
    assert err.key == "cost.cpu_tdp_w" and "got True" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("[sampling]\ninterval_s = 0\n", 2, "sampling.interval_s", "greater than 0"),
        ("[cost]\n\ntariff_per_kwh = -0.1\n", 3, "cost.tariff_per_kwh", "cannot be negative"),
        ("[retention]\nraw_days = 10\nminute_days = 5\n", 3, "retention.minute_days", "at least"),
        ("[retention]\nhour_days = 'later'\n", 2, "retention.hour_days", '"forever"'),
        ('[cost]\ncurrency = "dollars"\n', 2, "cost.currency", "three-letter"),
    ],
)
def test_out_of_range_values(tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    err = error_for(tmp_path, text)
    assert (err.line, err.key) == (line, key)
    assert words in str(err)


GPU_ROWS = """[cost]
tariff_per_kwh = 0.2

[[cost.gpu]]
name = "A100 80GB"
hourly = 1.5

[[cost.gpu]]
name = "Mine"
match = [
  "RTX 3090",
  "RTX 3080",
]
hourly = "cheap"
"""


def test_error_in_the_second_gpu_row_points_at_its_line(tmp_path: Path) -> None:
    err = error_for(tmp_path, GPU_ROWS)
    assert (err.line, err.key) == (14, "cost.gpu.hourly")
    assert "hourly must be a price per hour, got 'cheap'" in str(err)


def test_unknown_key_in_a_gpu_row(tmp_path: Path) -> None:
    err = error_for(tmp_path, '[[cost.gpu]]\nname = "A100 80GB"\nhourly = 1\nsorce = "me"\n')
    assert (err.line, err.key) == (4, "cost.gpu.sorce")
    assert "in [[cost.gpu]] (entry 1); did you mean 'source'?" in str(err)


def test_a_key_like_no_other_lists_the_allowed_ones(tmp_path: Path) -> None:
    err = error_for(tmp_path, "[sampling]\nzzz = 1\n")
    assert "the keys allowed there are interval_s, process_scan_interval_s." in str(err)


def test_a_new_model_needs_match_patterns(tmp_path: Path) -> None:
    err = error_for(tmp_path, '[[cost.gpu]]\nname = "Mystery"\nhourly = 1\n')
    assert err.line == 2 and "needs a 'match' list" in str(err)


def test_a_bad_pattern_is_reported_at_its_line(tmp_path: Path) -> None:
    err = error_for(tmp_path, '[[cost.gpu]]\nname = "x"\nhourly = 1\nmatch = ["(open"]\n')
    assert (err.line, err.key) == (4, "cost.gpu.match")


def test_a_gpu_row_without_a_price(tmp_path: Path) -> None:
    err = error_for(tmp_path, '\n[[cost.gpu]]\nname = "A100 80GB"\n')
    assert err.line == 2 and "needs a 'hourly' key" in str(err)


def test_locator_on_nested_tables_and_arrays_of_tables() -> None:
    text = """top = 1
[a]
x = 1
[a.b]
x = 2  # a comment
"quoted key" = 3
[[arr]]
x = 10
[arr.sub]
y = 11
[[arr]]
x = 20
s = '''
hidden = not a key
'''
list = [
  [1, 2],
]
[[arr.inner]]
z = 30
[[arr.inner]]
z = 31
dotted.key = 4
[c]
inline = { x = 1 }
"""
    loc = KeyLocator(text)
    assert loc.line_of(("top",)) == 1
    assert loc.line_of(("a", "x")) == 3
    assert loc.line_of(("a", "b", "x")) == 5
    assert loc.line_of(("a", "b", "quoted key")) == 6
    assert loc.line_of(("arr", 0, "x")) == 8
    assert loc.line_of(("arr", 0, "sub", "y")) == 10
    assert loc.line_of(("arr", 1, "x")) == 12
    assert loc.line_of(("arr", 1, "list")) == 16
    assert loc.line_of(("arr", 1, "inner", 0, "z")) == 20
    assert loc.line_of(("arr", 1, "inner", 1, "z")) == 22
    assert loc.line_of(("arr", 1, "inner", 1, "dotted", "key")) == 23
    assert loc.line_of(("arr",)) == 7
    # Not found: falls back to the nearest enclosing key or header.
    assert loc.line_of(("c", "inline", "x")) == 25
    assert loc.line_of(("arr", 1, "missing")) == 11
    assert loc.line_of(("arr", 1, "hidden")) == 11  # inside a multi-line string
    assert loc.line_of(("nowhere",)) is None
    assert loc.table_at(14) == ("arr", 1)


def test_user_rows_are_owned_hardware_unless_they_say_the_price_includes_energy(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        '[[cost.gpu]]\nname = "RTX 3090"\nmatch = ["RTX 3090"]\nhourly = 0.1\n\n'
        '[[cost.gpu]]\nname = "A100 80GB"\nhourly = 1.5\nincludes_energy = true\n',
    )
    pricing = load_config(path).pricing()
    owned = pricing.gpu_price("NVIDIA GeForce RTX 3090").row
    rented = pricing.gpu_price("NVIDIA A100-SXM4-80GB").row
    assert owned is not None and not owned.includes_energy
    assert rented is not None and rented.includes_energy


def test_includes_energy_must_be_a_boolean(tmp_path: Path) -> None:
    err = error_for(
        tmp_path, '[[cost.gpu]]\nname = "A100 80GB"\nhourly = 1\nincludes_energy = "yes"\n'
    )
    assert err.key is not None and "includes_energy" in err.key
    assert "true or false" in str(err)
