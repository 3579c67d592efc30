from __future__ import annotations

import pytest

from costmeter.core.units import format_bytes, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 604800),
        ("1h30m", 5400),
        ("2w", 1209600),
        ("0.5h", 1800),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-3h", "0", "h"])
def test_parse_duration_rejects_nonsense_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_formatting() -> None:
    assert format_duration(42) == "42 s"
    assert format_duration(5400) == "1.5 h"
    assert format_bytes(80 * 1024**3) == "80.0 GiB"
    assert format_bytes(512) == "512 B"
