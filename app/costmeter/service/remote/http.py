"""One bounded HTTP GET for the collector: timeouts, bearer token, TLS, clean errors.

Errors are :class:`RemoteError` with ``kind``: ``unreachable`` (refused, reset, timed out, DNS:
the host shows as disconnected and is retried), ``auth`` (401/403: the token is wrong), or
``protocol`` (any other HTTP status, or a body too large to be a real answer).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from costmeter import __version__
from costmeter.core.errors import CostmeterError
from costmeter.service.tokens import check_token

#: How much of an error answer's body is kept (RemoteError.body).
MAX_ERROR_BODY = 4096

UNREACHABLE = "unreachable"
AUTH = "auth"
PROTOCOL = "protocol"


class RemoteError(CostmeterError):
    """``status``: the HTTP status when the host answered one; ``cause``: what failed below
    (a socket or TLS error), so a caller can put the failure in its own words."""

    def __init__(
        self,
        message: str,
        kind: str,
        *,
        status: int | None = None,
        cause: object = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        #: The start of an error answer's body (a query API explains a refusal there).
        self.body = body
        # Without its traceback: a kept error must not keep the failed request's frames alive.
        self.cause = cause.with_traceback(None) if isinstance(cause, BaseException) else cause


def check_url(url: str) -> str:
    """``url`` without a trailing slash; ConfigError-like RemoteError when it is not http(s)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(
            f"{url!r:.200} is not an http:// or https:// URL with a host name.", PROTOCOL
        )
    return url.strip().rstrip("/")


def netloc(url: str) -> str:
    """``host:port`` of a URL, for naming a host before it has said its own name."""
    parts = urllib.parse.urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url


class Fetcher:
    """GETs for one host; keeps its TLS context (verification on; ``ca_file`` to add a CA)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        ca_file: Path | None = None,
        total_s: float | None = None,
    ) -> None:
        # Refused here, once, with a sentence: a header cannot carry it (http.client would
        # raise UnicodeEncodeError on every request).
        self.token = check_token(token, "the token") if token is not None else None
        self.timeout_s = timeout_s
        #: A whole answer must arrive within this (a trickling server is cut off).
        self.total_s = total_s if total_s is not None else max(timeout_s * 6, 30.0)
        self._ca_file = ca_file
        self._opener: urllib.request.OpenerDirector | None = None
        self._https_opener: urllib.request.OpenerDirector | None = None

    def _opener_for(self, url: str) -> urllib.request.OpenerDirector:
        """Plain HTTP needs no TLS context (loading the CA store costs ~0.1 s of CPU)."""
        if url.lower().startswith("https:"):
            if self._https_opener is None:
                self._https_opener = urllib.request.build_opener(
                    urllib.request.HTTPSHandler(context=_tls_context(self._ca_file)),
                    _NoRedirect(),
                )
            return self._https_opener
        if self._opener is None:
            self._opener = urllib.request.build_opener(_NoRedirect())
        return self._opener

    def get(self, url: str, *, max_bytes: int, accept: str = "*/*") -> bytes:
        request = urllib.request.Request(url, method="GET")
        request.add_header("Accept", accept)
        request.add_header("User-Agent", f"costmeter/{__version__}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        where = netloc(url)
        try:
            with self._opener_for(url).open(request, timeout=self.timeout_s) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > max_bytes:
                    raise RemoteError(
                        f"{where} sent an answer of {int(length)} bytes, more than the "
                        f"{max_bytes} this client reads.",
                        PROTOCOL,
                    )
                body = self._read(response, max_bytes, where)
        except urllib.error.HTTPError as err:
            try:
                head = err.read(MAX_ERROR_BODY)
            except (OSError, http.client.HTTPException):
                head = b""
            err.close()
            if err.code in (401, 403):
                raise RemoteError(
                    f"{where} refused the token (HTTP {err.code}): check the token file "
                    "given for this host.",
                    AUTH,
                    status=err.code,
                ) from None
            raise RemoteError(
                f"{where} answered HTTP {err.code} ({err.reason}) for {_path(url)}.",
                PROTOCOL,
                status=err.code,
                cause=err.reason,
                body=head,
            ) from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, ssl.SSLCertVerificationError):
                raise RemoteError(
                    f"{where}'s TLS certificate could not be verified "
                    f"({err.reason.verify_message}); if it is signed by your own CA, point "
                    "SSL_CERT_FILE at that CA's certificate.",
                    PROTOCOL,
                    cause=err.reason,
                ) from None
            raise RemoteError(
                f"{where} is unreachable ({_reason(err.reason)}).", UNREACHABLE, cause=err.reason
            ) from None
        except TimeoutError as err:
            raise RemoteError(
                f"{where} did not answer within {self.timeout_s:g} s.", UNREACHABLE, cause=err
            ) from None
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            raise RemoteError(
                f"{where} is unreachable ({_reason(err)}).", UNREACHABLE, cause=err
            ) from None
        if len(body) > max_bytes:
            raise RemoteError(
                f"{where} sent more than the {max_bytes} bytes this client reads.", PROTOCOL
            )
        return body

    def _read(self, response: http.client.HTTPResponse, max_bytes: int, where: str) -> bytes:
        """The body, in chunks, within an overall deadline (a trickling server is cut off)."""
        deadline = time.monotonic() + self.total_s
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = response.read1(min(1 << 16, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise RemoteError(f"{where} sent its answer too slowly.", UNREACHABLE)
        return b"".join(chunks)


_CONTEXTS: dict[str | None, ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """One verifying context per CA file, shared by every host (SSLContext is thread-safe)."""
    key = str(ca_file) if ca_file else None
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            context = _CONTEXTS[key] = ssl.create_default_context(cafile=key)
        return context


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would send the bearer token elsewhere: treat it as an error instead."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path or "/"


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return "unknown host name"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror).lower()
    text = str(reason)
    return text[:200] if text else type(reason).__name__
