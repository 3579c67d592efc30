"""The agent's request-head parser on requests someone else wrote: llhttp's sample requests.

``tests/data/agent/llhttp-request-sample.md`` is Node.js's HTTP parser test file, kept as
published (MIT; see PROVENANCE.md). Each ```http block is turned into bytes the way llhttp's
own harness does (test/md-test.ts: escaped newlines dropped, newlines made CRLF, ``\\r \\n \\t
\\xNN`` unescaped), and its ```log block says what llhttp made of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from costmeter.service.agent.http1 import BadRequest, HeadTooLarge, head_end, parse_head

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "agent" / "llhttp-request-sample.md"

#: Requests llhttp reads in its strict mode and this agent refuses on purpose (400): an HTTP/0.9
#: request line, and empty lines before the request line (RFC 9112 lets a server refuse them;
#: they come after a body on a kept-alive connection, which this agent never has). What llhttp
#: reads only in a lenient mode (obsolete line folding, a CR without LF) is refused as well.
REFUSED_ON_PURPOSE = {"Prefix newline", "No HTTP version", "Request starting with CRLF"}


@dataclass
class Sample:
    name: str
    raw: bytes
    log: str
    lenient: bool


def _bytes(block: str) -> bytes:
    text = block.removesuffix("\n")
    text = re.sub(r"\\(\r\n|\r|\n)", "", text)
    text = re.sub(r"\r\n|\r|\n", "\r\n", text)
    for escaped, char in (("\\r", "\r"), ("\\n", "\n"), ("\\t", "\t"), ("\\f", "\f")):
        text = text.replace(escaped, char)
    text = re.sub(r"\\x([0-9a-fA-F]+)", lambda m: chr(int(m.group(1), 16)), text)
    # \xff is one byte in llhttp's tests (latin-1); everything else in the file is UTF-8
    return text.encode("utf-8") if max(map(ord, text), default=0) > 0xFF else text.encode("latin-1")


def samples() -> list[Sample]:
    text = SAMPLE.read_text(encoding="utf-8")
    found = []
    for section in re.split(r"\n## ", text)[1:]:
        name = section.split("\n", 1)[0].strip()
        block = re.search(r"```http\n(.*?)```", section, re.S)
        log = re.search(r"```log\n(.*?)```", section, re.S)
        kind = re.search(r'"type": ?"(request[^"]*)"', section)
        if block and log and kind:
            lenient = kind.group(1) != "request"
            found.append(Sample(name, _bytes(block.group(1)), log.group(1), lenient))
    return found


def test_the_data_file_holds_the_samples() -> None:
    names = [s.name for s in samples()]
    assert len(names) >= 16 and "curl GET" in names and "Firefox GET" in names
    assert sum(s.lenient for s in samples()) >= 3


def _our_reading(raw: bytes) -> tuple[str, str, dict[str, str]] | str:
    try:
        end = head_end(raw)
    except HeadTooLarge:
        return "too large"
    if end is None:
        return "no end"  # the agent waits for more, then answers 408
    try:
        return parse_head(raw[:end])
    except BadRequest:
        return "refused"


@pytest.mark.parametrize("sample", samples(), ids=lambda s: s.name)
def test_llhttp_samples(sample: Sample) -> None:
    ours = _our_reading(sample.raw)
    llhttp_ok = "headers complete" in sample.log and "error code=" not in sample.log
    if not llhttp_ok or sample.lenient or sample.name in REFUSED_ON_PURPOSE:
        assert isinstance(ours, str), f"{sample.name}: read as {ours!r}"
        return
    assert not isinstance(ours, str), f"{sample.name}: {ours}"
    method, target, headers = ours
    assert method == re.search(r'span\[method\]="([^"]*)"', sample.log).group(1)  # type: ignore[union-attr]
    assert target == re.search(r'span\[url\]="([^"]*)"', sample.log).group(1)  # type: ignore[union-attr]
    fields = re.findall(r'span\[header_field\]="([^"]*)"', sample.log)
    assert set(headers) == {f.lower() for f in fields}


def test_what_is_refused_on_purpose_is_what_llhttp_reads() -> None:
    """The list above is not stale: each of those is a request llhttp reads whole."""
    by_name = {s.name: s for s in samples()}
    for name in REFUSED_ON_PURPOSE:
        assert "headers complete" in by_name[name].log, name
