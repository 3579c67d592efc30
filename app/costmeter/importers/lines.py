"""Reading a log file line by line with a bound on line length, so a file without newlines (or
a binary file) cannot make the importer hold it whole in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

#: Longer lines are reported and skipped. nvidia-smi's widest query lines are ~1,500 characters.
MAX_LINE_CHARS = 8192


def read_lines(
    stream: BinaryIO, max_chars: int = MAX_LINE_CHARS
) -> Iterator[tuple[int, str | None]]:
    """Yield ``(line number, text)``; text is None for a line that is too long or not UTF-8
    (with a reason from :func:`why_unreadable`). A UTF-8 byte-order mark is dropped."""
    lineno = 0
    limit = max_chars * 4 + 2  # UTF-8 needs at most 4 bytes a character
    while True:
        raw = stream.readline(limit)
        if not raw:
            return
        lineno += 1
        too_long = len(raw) >= limit and not raw.endswith(b"\n")
        while too_long:  # skip the rest of that line without keeping it
            rest = stream.readline(limit)
            if not rest or rest.endswith(b"\n"):
                break
        if too_long:
            yield lineno, None
            continue
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield lineno, None
            continue
        text = text.rstrip("\r\n")
        if len(text) > max_chars or "\x00" in text:
            yield lineno, None
            continue
        yield lineno, text


def why_unreadable(max_chars: int = MAX_LINE_CHARS) -> str:
    return f"not UTF-8 text, or longer than {max_chars:,} characters"
