"""Parsing and formatting of durations, sizes and energy for people."""

from __future__ import annotations

import re

from costmeter.core.bounds import BUDGET, DURATION_S, Bound, BoundError, clip

_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, bound: Bound = DURATION_S, label: str = "") -> float:
    """``"90"``/``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"`` -> seconds; compound forms
    such as ``"1h30m"`` are accepted too. Raises BoundError (a ValueError) naming ``label`` and
    the text when it is no duration or is outside ``bound`` (above 0, at most 10 years)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", text.strip(), re.IGNORECASE)
    joined = "".join(n + u for n, u in parts)
    if not parts or joined.lower() != re.sub(r"\s+", "", text).lower():
        who = f"{label} " if label else ""
        raise BoundError(
            f"{who}'{clip(text)}' is not {bound.what}; use a number with s, m, h, d or w "
            "(90s, 15m, 24h, 7d)."
        )
    total = sum(float(n) * _SECONDS[u.lower()] for n, u in parts)
    return bound.check(total, label, shown=text.strip())


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


_MONEY = re.compile(r"^\s*[$€£¥₹]?\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]{3})?\s*$")


def parse_money(text: str, bound: Bound = BUDGET, label: str = "") -> float:
    """``"2.50"``, ``"$2.50"``, ``"2.50 EUR"`` -> 2.5; BoundError (a ValueError) naming ``label``
    and the text when it is no amount or is outside ``bound`` (above 0, at most 1e9)."""
    m = _MONEY.match(text)
    if m is None:
        who = f"{label} " if label else ""
        raise BoundError(
            f"{who}'{clip(text)}' is not {bound.what}; write for example 2.50 or $2.50."
        )
    return bound.check(float(m.group(1)), label, shown=text.strip())
