"""The little HTTP/1.1 the agent speaks: reading a request head, writing an answer.

One request per connection, no body, GET and HEAD only; nothing here does any I/O, so the
server can feed it bytes from an event loop and the tests can feed it anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

#: The request line and headers together, in bytes.
MAX_HEAD_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(status: int, doc: Mapping[str, Any]) -> Response:
    return Response(status, json.dumps(doc, separators=(",", ":")).encode("utf-8"))


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status,
        json.dumps({"error": message}).encode("utf-8"),
        headers=dict(headers or {}),
    )


class BadRequest(Exception):
    """A query the endpoint cannot answer (-> 400 with this sentence)."""


class HeadTooLarge(Exception):
    """The head did not end within ``MAX_HEAD_BYTES``."""


#: path -> handler(query string) -> Response
Route = Callable[[str], Response]


def head_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Where the head in ``buf`` ends (the index of its blank line), None while it goes on.

    ``start``: where to look from (what was already looked at holds no blank line). Raises
    HeadTooLarge once the head is, or must be, longer than ``MAX_HEAD_BYTES``.
    """
    end = buf.find(b"\r\n\r\n", start)
    if end < 0:
        end = buf.find(b"\n\n", start)
    if end > MAX_HEAD_BYTES or (end < 0 and len(buf) > MAX_HEAD_BYTES):
        raise HeadTooLarge
    return end if end >= 0 else None


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, target, lower-cased headers); BadRequest with a sentence that echoes nothing."""
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("the request line is not 'METHOD /path HTTP/1.1'.")
    method, target, _ = parts
    if not method.isalpha() or not target.startswith("/"):
        raise BadRequest("the request line is not 'METHOD /path HTTP/1.1'.")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("a request header is malformed.")
        key = name.lower()
        if key in headers and key in ("authorization", "content-length", "host"):
            raise BadRequest(f"the header {name} is given twice.")
        headers[key] = value.strip()
    return method, target, headers


def encode(response: Response, head_only: bool) -> bytes:
    reason = HTTPStatus(response.status).phrase
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        *(f"{k}: {v}" for k, v in response.headers.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body
