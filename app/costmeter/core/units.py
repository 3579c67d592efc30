"""Parsing and formatting of durations, sizes and energy for people."""

from __future__ import annotations

import re

_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """``"90"``/``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"`` -> seconds; compound forms
    such as ``"1h30m"`` are accepted too."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", text.strip(), re.IGNORECASE)
    joined = "".join(n + u for n, u in parts)
    if not parts or joined.lower() != re.sub(r"\s+", "", text).lower():
        raise ValueError(
            f"'{text}' is not a duration; use a number with s, m, h, d or w (90s, 15m, 24h, 7d)."
        )
    total = sum(float(n) * _SECONDS[u.lower()] for n, u in parts)
    if total <= 0:
        raise ValueError(f"'{text}' is not a positive duration.")
    return total


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_energy_kwh(kwh: float) -> str:
    if abs(kwh) < 1:
        return f"{kwh * 1000:.1f} Wh"
    return f"{kwh:.2f} kWh"
