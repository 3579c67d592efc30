"""Text typed into a form, read as numbers and pattern lists, with every refusal in words.

Qt-free: the Settings page, the price table and their tests share it.
"""

from __future__ import annotations

import math


class FieldError(ValueError):
    """A value typed into a field that is not what the field takes; ``str`` is for the user."""


def number_text(value: float | None) -> str:
    """A number as a person would type it: ``3`` not ``3.0``, all the digits a float needs."""
    if value is None:
        return ""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def parse_number(text: str, example: str = "1.5") -> float | None:
    """The number in ``text``; None when it is empty. Raises FieldError in words otherwise."""
    text = text.strip()
    if not text:
        return None
    refusal = FieldError(f"enter a number such as {example}, not “{text}”.")
    try:
        value = float(text)
    except ValueError:
        raise refusal from None
    if "_" in text or not math.isfinite(value):  # float() takes "1_000", "inf" and "nan"
        raise refusal
    return value


def split_patterns(text: str) -> list[str]:
    """Patterns separated by commas; a comma inside brackets (``{1,3}``) or escaped stays."""
    parts: list[str] = []
    current: list[str] = []
    depth, escaped = 0, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]
