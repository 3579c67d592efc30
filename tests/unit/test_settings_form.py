"""The Settings form's text to a ``Config``, Qt-free: numbers, refusals in words, what applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.config import Config, RetentionConfig, SamplingConfig
from costmeter.service.form_text import FieldError, number_text, parse_number, split_patterns
from costmeter.service.settings_form import FIELDS, build_config, in_words, what_applies


def _texts(**over: str) -> dict[str, str]:
    base = Config()
    texts = {}
    for key, spec in FIELDS.items():
        value = spec.read(base)
        texts[key] = value if isinstance(value, str) else number_text(value)
    texts.update({k.replace("__", "."): v for k, v in over.items()})
    return texts


@pytest.mark.parametrize(
    ("text", "value"), [("", None), (" 3 ", 3.0), ("0.25", 0.25), ("1e3", 1000.0)]
)
def test_numbers_are_read_as_typed(text: str, value: float | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["1_000", "inf", "nan", "1,5", "abc"])
def test_what_float_would_take_but_a_person_would_not_mean_is_refused(text: str) -> None:
    with pytest.raises(FieldError, match=rf"enter a number such as 2, not “{text}”"):
        parse_number(text, "2")


def test_numbers_are_written_back_as_a_person_types_them() -> None:
    assert number_text(3.0) == "3" and number_text(None) == ""
    assert float(number_text(0.1 + 0.2)) == 0.1 + 0.2  # every digit the float needs


def test_patterns_split_on_commas_outside_brackets() -> None:
    assert split_patterns(r"A100*, H100{1,3}, a\,b ,,") == ["A100*", "H100{1,3}", r"a\,b"]


def test_the_form_of_a_default_config_builds_that_config(tmp_path: Path) -> None:
    forever = {
        k: True for k in FIELDS if k.startswith("retention.") and FIELDS[k].read(Config()) is None
    }
    config, problems = build_config(_texts(), forever, (), tmp_path / "config.toml")
    assert problems == {} and config is not None
    assert config.sampling == Config().sampling and config.retention == Config().retention


def test_refusals_are_put_in_words_per_field(tmp_path: Path) -> None:
    texts = _texts(sampling__interval_s="0", cost__tariff_per_kwh="cheap", retention__raw_days="")
    config, problems = build_config(texts, {}, (), tmp_path / "config.toml")
    assert config is None
    assert problems["cost.tariff_per_kwh"][1] == (
        "Electricity tariff: enter a number such as 0.25, not “cheap”."
    )
    assert problems["retention.raw_days"][0] == "Enter a number such as 7."
    beside, summary = problems["sampling.interval_s"]
    assert beside.startswith("Must be") and summary.startswith("Sampling interval: must be")


def test_coarser_data_must_be_kept_at_least_as_long(tmp_path: Path) -> None:
    texts = _texts(retention__minute_days="30", retention__hour_days="10")
    config, problems = build_config(texts, {}, (), tmp_path / "config.toml")
    assert config is None
    assert problems["retention.hour_days"][1] == (
        "Retention: 1-hour data must be kept at least as long as 1-minute data (30 days)."
    )
    # "forever" for the finer data and a number for the coarser is refused too
    forever = {"retention.minute_days": True}
    _, problems = build_config(texts, forever, (), tmp_path / "config.toml")
    assert "(forever)" in problems["retention.hour_days"][1]


def test_the_loaders_message_is_rephrased_for_the_field() -> None:
    assert in_words("interval_s must be greater than 0, got 0.0.", "sampling.interval_s") == (
        "Must be greater than 0, got 0.0.",
        "Sampling interval: must be greater than 0, got 0.0.",
    )


def test_what_applies_now_and_what_waits_for_a_restart() -> None:
    base = Config()
    assert what_applies(base, base) == "Prices and alerts apply now."
    later = Config(
        sampling=SamplingConfig(interval_s=5.0, process_scan_interval_s=10.0),
        retention=RetentionConfig(raw_days=1.0, minute_days=90.0, hour_days=730.0),
    )
    assert what_applies(base, later).endswith(
        "Changes to the sampling intervals and retention apply the next time Costmeter starts."
    )
