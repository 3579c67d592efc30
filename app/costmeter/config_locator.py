"""Finding the line of a key in a TOML text, for configuration errors that name it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from costmeter.core.errors import ConfigError

KeyPath = tuple[str | int, ...]


# --- finding the line of a key -------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*(\]\]?)\s*(?:#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_KEY_PART = re.compile(_PART)
_TRIPLE_QUOTES = ('"""', "'''")


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in _KEY_PART.findall(text))


class KeyLocator:
    """Maps key paths such as ``("cost", "gpu", 1, "hourly")`` to 1-based line numbers.

    It scans the text line by line, following ``[table]`` and ``[[array]]`` headers (an array
    element is addressed by its 0-based index) and skipping the inside of multi-line strings and
    arrays. Keys inside inline tables are not found; ``line_of`` then falls back to the nearest
    enclosing key or header.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        self._counts: dict[KeyPath, int] = {}
        self._headers: list[tuple[int, KeyPath]] = []
        current: KeyPath = ()
        depth = 0  # brackets still open from a multi-line value
        quote: str | None = None  # an unterminated multi-line string
        for lineno, line in enumerate(text.splitlines(), start=1):
            if quote is not None:
                end = line.find(quote)
                if end >= 0:
                    depth, quote = _scan_value(line[end + 3 :], depth)
                continue
            if depth > 0:
                depth, quote = _scan_value(line, depth)
                continue
            header = _HEADER.match(line)
            if header and len(header.group(1)) == len(header.group(3)):
                names = _split_key(header.group(2))
                current = self._resolve(names, header.group(1) == "[[", lineno)
                self._lines.setdefault(current, lineno)
                self._headers.append((lineno, current))
                continue
            key = _KEY.match(line)
            if key:
                self._lines.setdefault(current + _split_key(key.group(1)), lineno)
                depth, quote = _scan_value(line[key.end() :], 0)

    def _resolve(self, names: tuple[str, ...], is_array: bool, lineno: int) -> KeyPath:
        """The location of a header, inserting the current index of enclosing arrays."""
        location: KeyPath = ()
        for i, name in enumerate(names):
            location = (*location, name)
            if is_array and i == len(names) - 1:
                count = self._counts.get(location, 0)
                self._counts[location] = count + 1
                self._lines.setdefault(location, lineno)
                return (*location, count)
            if location in self._counts:
                location = (*location, self._counts[location] - 1)
        return location

    def table_at(self, lineno: int) -> KeyPath:
        """The table that a line belongs to (the last header at or above it)."""
        table: KeyPath = ()
        for header_line, path in self._headers:
            if header_line > lineno:
                break
            table = path
        return table

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest ancestor that appears; None if none does."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def _scan_value(text: str, depth: int) -> tuple[int, str | None]:
    """Bracket depth after ``text``, skipping strings and comments, and any open triple quote."""
    i = 0
    while i < len(text):
        if text.startswith(_TRIPLE_QUOTES, i):
            quote = text[i : i + 3]
            end = text.find(quote, i + 3)
            if end < 0:
                return depth, quote
            i = end + 3
            continue
        char = text[i]
        if char in "\"'":
            i += 1
            while i < len(text) and text[i] != char:
                i += 2 if char == '"' and text[i] == "\\" else 1
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return depth, None


def syntax_error(path: Path, text: str, err: tomllib.TOMLDecodeError) -> ConfigError:
    """tomllib's message with its "(at line L, column C)" turned into ConfigError's fields."""
    message = str(err)
    line: int | None = None
    key: str | None = None
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found:
        line = int(found.group(1))
        message = f"{message[: found.start()]} at column {found.group(2)}"
        lines = text.splitlines()
        key_match = _KEY.match(lines[line - 1]) if 0 < line <= len(lines) else None
        if key_match:
            table = KeyLocator(text).table_at(line)
            key = key_name(table + _split_key(key_match.group(1)))
    else:
        message = message.replace("(at end of document)", "at the end of the file")
    message = message[:1].lower() + message[1:]
    return ConfigError(f"this is not valid TOML: {message}.", path=str(path), line=line, key=key)


# --- checking values -----------------------------------------------------------------------

#: key -> (what it must be, default, must be > 0 (else >= 0), may be "forever")


def key_name(path: KeyPath) -> str:
    return ".".join(str(p) for p in path if not isinstance(p, int))
