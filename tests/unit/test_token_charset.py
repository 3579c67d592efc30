"""Bearer tokens: a byte-order mark is not part of one, and only RFC 6750's characters are.

The accepted examples are tokens others published (figures kept, see
tests/data/agent/PROVENANCE.md): RFC 6750 section 2.1, RFC 6749 sections 4.1.4 and 5.1, and the
JWT of RFC 7519 section 3.1 (a Kubernetes service-account token has the same shape).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from costmeter.config import RemoteHostConfig
from costmeter.core import ConfigError
from costmeter.service.remote.http import Fetcher
from costmeter.service.remote.pollers import AgentPoller
from costmeter.service.tokens import check_token, read_token_file, save_token

PUBLISHED = [
    "mF_9.B5f-4.1JqM",  # RFC 6750, 2.1
    "2YotnFZFEjr1zCsicMWpAA",  # RFC 6749, 4.1.4 and 5.1
    "tGzv3JOkF0XG5Qx2TlKWIA",  # RFC 6749, 5.1 (its refresh token)
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",  # RFC 7519, 3.1
    "dGhpcyBpcyBiYXNlNjQ+Lw==",  # standard base64 with its padding
]


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "agent.token"
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("token", PUBLISHED)
def test_published_tokens_are_accepted(tmp_path: Path, token: str) -> None:
    assert check_token(token, "the token") == token
    # as Windows Notepad saves it: a byte-order mark, the token, CRLF
    assert read_token_file(_file(tmp_path, b"\xef\xbb\xbf" + token.encode() + b"\r\n")) == token


def test_a_bom_and_whitespace_around_the_token_are_not_part_of_it(tmp_path: Path) -> None:
    for data in (b"\xef\xbb\xbftok-1\n", b"  \xef\xbb\xbf tok-1 \n\n", b"\ttok-1\r\n"):
        assert read_token_file(_file(tmp_path, data)) == "tok-1"


@pytest.mark.parametrize(
    ("token", "position", "what"),
    [
        ("s3cret-tökén", "character 9 of 12", "U+00F6 LATIN SMALL LETTER O WITH DIAERESIS"),
        ("токен-123", "character 1 of 9", "U+0442 CYRILLIC SMALL LETTER TE"),
        ("abc\u200bdef", "character 4 of 7", "U+200B ZERO WIDTH SPACE"),
        ("abc\x7fdef", "character 4 of 7", "U+007F a control character"),
        ("pass:word", "character 5 of 9", "U+003A COLON"),
        ("ab=cd", "character 3 of 5", "U+003D EQUALS SIGN) before its end"),
    ],
)
def test_a_refused_character_is_named_by_position_without_the_token(
    tmp_path: Path, token: str, position: str, what: str
) -> None:
    with pytest.raises(ConfigError) as err:
        read_token_file(_file(tmp_path, token.encode()))
    message = str(err.value)
    assert position in message and what in message and "RFC 6750" in message
    assert token not in message and "agent.token" in message


def test_a_file_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not UTF-8 text \\(byte 4 is not\\)"):
        read_token_file(_file(tmp_path, b"abc\xff\xfe"))


def test_a_token_typed_into_the_app_is_checked_before_it_is_kept(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="character 2 of 4"):
        save_token("box", "aéb1", use_keyring=False, token_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written
    kept = save_token("box", "\ufeffok-token ", use_keyring=False, token_dir=tmp_path)
    assert kept is not None and read_token_file(kept) == "ok-token"


class _Auth(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Auth)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_the_client_refuses_a_bad_token_once_with_a_sentence(server: str) -> None:
    """It used to raise UnicodeEncodeError inside http.client on every request."""
    with pytest.raises(ConfigError, match="character 2 of 4"):
        Fetcher(token="tök1")
    assert Fetcher(token=PUBLISHED[0]).get(server + "/x", max_bytes=10) == b"{}"
    assert _Auth.seen[-1] == f"Bearer {PUBLISHED[0]}"


def test_the_poller_reports_a_bad_token_file_as_a_config_error(tmp_path: Path, server: str) -> None:
    host = RemoteHostConfig(name="box", url=server, token_file=_file(tmp_path, "tök-1".encode()))
    poller = AgentPoller(host, interval_s=1.0, start_from=lambda name: None)
    for _ in range(3):  # every retry: the same sentence (the collector shows it, no traceback)
        with pytest.raises(ConfigError, match="character 2 of 5"):
            poller.poll()
        poller.reset()
    assert _Auth.seen == [] or all("ö" not in s for s in _Auth.seen)
