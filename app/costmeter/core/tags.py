"""Run tags: ``KEY=VALUE`` pairs a user puts on runs (``--tag team=vision``) to say who pays.

One set of rules for the command line, the launch dialog and the store: a key is 1 to
``MAX_KEY`` letters, digits, ``_``, ``.`` or ``-``; a value is 1 to ``MAX_VALUE`` printable
characters (no newline or tab); at most ``MAX_TAGS`` tags on a run; a key given twice keeps its
last value. Every refusal is a ``TagError`` whose message says what is wrong and how to write it.
Standard library only (``costmeter.cli.arg_types`` imports this for ``--help``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MAX_KEY = 64
MAX_VALUE = 256
MAX_TAGS = 32

_KEY = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_KEY}}}")
#: In a list of tags (the dialog's field), a comma ends a tag only where the next one starts:
#: ``note=a,b, owner=alice`` is two tags, ``note`` keeping its comma.
_NEXT_TAG = re.compile(r",\s*(?=[A-Za-z0-9_.-]+\s*=)")


class TagError(ValueError):
    """A tag (or a set of them) that cannot be kept; the message says why, in words."""


def parse_tag(text: str) -> tuple[str, str]:
    """``"team=vision"`` -> ``("team", "vision")``; spaces around key and value are dropped."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not sep:
        raise TagError(f"'{shown}' is not a tag; write KEY=VALUE, for example team=vision.")
    if not key:
        raise TagError(
            f"'{shown}' has no key before '='; write KEY=VALUE, for example team=vision."
        )
    if len(key) > MAX_KEY:
        raise TagError(f"The tag key '{key[:20]}...' is {len(key)} characters; at most {MAX_KEY}.")
    if not _KEY.fullmatch(key):
        bad = next(c for c in key if not _KEY.fullmatch(c))
        raise TagError(
            f"The tag key '{key}' has {bad!r} in it: a key uses only letters, digits, '_', "
            "'.' and '-'."
        )
    if not value:
        raise TagError(f"The tag '{key}' has no value; write {key}=VALUE.")
    if len(value) > MAX_VALUE:
        raise TagError(
            f"The value of the tag '{key}' is {len(value)} characters; at most {MAX_VALUE}."
        )
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise TagError(
            f"The value of the tag '{key}' has the character {bad!r}, which cannot be printed: "
            "a tag value is one line of visible text."
        )
    return key, value


def merge_tags(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The tags of a run from ``(key, value)`` pairs in the order given (the last of a key wins);
    TagError when there are more than ``MAX_TAGS`` keys."""
    tags: dict[str, str] = {}
    for key, value in pairs:
        tags.pop(key, None)  # the last one given also comes last
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise TagError(f"{len(tags)} tags on one run; at most {MAX_TAGS}.")
    return tags


def parse_tags(texts: Iterable[str]) -> dict[str, str]:
    """Every ``KEY=VALUE`` of ``texts`` (``--tag`` given several times)."""
    return merge_tags(parse_tag(t) for t in texts)


def parse_tag_list(text: str) -> dict[str, str]:
    """The dialog's field: ``team=vision, owner=alice`` (commas or new lines between tags)."""
    items: list[str] = []
    for line in text.splitlines():
        items.extend(p for p in _NEXT_TAG.split(line) if p.strip())
    return parse_tags(items)


def format_tags(tags: Mapping[str, str]) -> str:
    """``team=vision, owner=alice``: what ``parse_tag_list`` reads back to the same tags."""
    return ", ".join(f"{k}={v}" for k, v in tags.items())


def clean_tags(raw: object) -> dict[str, str]:
    """Tags read back from a store or a spec: the pairs that still follow the rules, the rest
    left out (a damaged row shows fewer tags rather than failing to load)."""
    if not isinstance(raw, Mapping):
        return {}
    found = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        try:
            k, v = parse_tag(f"{key}={value}")
        except TagError:
            continue
        found[k] = v
    return found
