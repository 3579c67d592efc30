""" "Test connection" on the Hosts page: one GET to an agent's /v1/info or an exporter's /metrics.

The GET is the collector's own (``service.remote.http.Fetcher``: no redirects, a bounded body, an
overall deadline); only the sentences are the probe's, written for someone filling in a form.
Called on a worker thread (never the GUI thread); it returns a sentence saying what it found, or
raises ``ProbeError`` with a sentence saying why the host could not be read (refused, timeout,
wrong token, TLS, not an agent), never a traceback.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse

from costmeter.core.errors import CostmeterError
from costmeter.service.remote.http import PROTOCOL, Fetcher, RemoteError, netloc

#: A probe reads at most this much of the answer (a big exporter's /metrics fits).
MAX_BYTES = 16 * 1024 * 1024
TIMEOUT_S = 5.0


class ProbeError(CostmeterError):
    """The host could not be read; the message says why, in words."""


def probe(url: str, kind: str, token: str | None, *, timeout: float = TIMEOUT_S) -> str:
    """What the host at ``url`` says it is, e.g. "reached gpu-box-1: 8 GPUs, Costmeter 0.1.0"."""
    base = url.rstrip("/")
    target = base + "/v1/info" if kind == "agent" else base
    if kind != "agent" and not urllib.parse.urlsplit(base).path.strip("/"):
        target = base + "/metrics"
    body = _get(target, token, timeout)
    return _agent(body, target) if kind == "agent" else _prometheus(body, target)


def _get(target: str, token: str | None, timeout: float) -> bytes:
    try:
        fetcher = Fetcher(token=token or None, timeout_s=timeout)
    except CostmeterError as err:  # a token no header can carry
        raise ProbeError(str(err)) from err
    try:
        return fetcher.get(target, max_bytes=MAX_BYTES)
    except RemoteError as err:
        raise ProbeError(_in_words(err, target, token, timeout)) from err


def _in_words(err: RemoteError, target: str, token: str | None, timeout: float) -> str:
    host = netloc(target)
    if err.status is not None:
        return _http_error(err.status, err.cause, target, token)
    if err.cause is None:
        if err.kind == PROTOCOL:
            return f"{target} answered with more than {MAX_BYTES >> 20} MiB."
        return str(err)
    return _url_error(err.cause, host, timeout)


def _http_error(code: int, reason: object, target: str, token: str | None) -> str:
    if code == 401:
        return (
            "the host refused the token (401): it is wrong."
            if token
            else "the host asks for a token (401): enter the agent's token."
        )
    if code == 403:
        return "the host refused access (403 Forbidden)."
    if code == 404:
        return f"nothing is served at {target} (404): check the URL and the kind of host."
    if 300 <= code < 400:
        return (
            f"{target} redirects elsewhere (HTTP {code}); enter the address it redirects to "
            "(a token is never sent on to another address)."
        )
    return f"{target} answered HTTP {code} {reason or ''}".rstrip() + "."


def _url_error(reason: object, host: str, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return (
            f"the connection to {host} was refused: nothing listens there (is the agent running?)."
        )
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"{host} did not answer within {timeout:g} s."
    if isinstance(reason, ssl.SSLError):
        return f"the TLS handshake with {host} failed: {_tls(reason)}."
    if isinstance(reason, http.client.HTTPException):  # it hung up, or did not speak HTTP
        return f"{host} could not be read: {reason}."
    if isinstance(reason, socket.gaierror):
        return f"the name in {host} could not be resolved ({reason.strerror or reason})."
    if isinstance(reason, OSError) and reason.strerror:
        return f"{host} could not be reached: {reason.strerror}."
    return f"{host} could not be reached: {reason}."


def _tls(err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"its certificate is not trusted ({err.verify_message})"
    return str(err.reason or err)


def _agent(body: bytes, target: str) -> str:
    from costmeter.sampling.wire import decode_info

    try:
        info = decode_info(json.loads(body.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProbeError(
            f"{target} did not answer like a Costmeter agent (not JSON); is it a Prometheus "
            "exporter? Then choose the kind prometheus."
        ) from err
    except CostmeterError as err:
        raise ProbeError(f"{target} answered, but not like a Costmeter agent: {err}") from err
    gpus = len(info.devices)
    what = f"{gpus} GPU" + ("" if gpus == 1 else "s")
    if info.gpu_mode == "simulated":
        what += " (simulated)"
    return f"reached {info.host.hostname}: {what}, Costmeter {info.version}."


def _prometheus(body: bytes, target: str) -> str:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        families = list(text_string_to_metric_families(body.decode("utf-8")))
    except (UnicodeDecodeError, ValueError) as err:
        raise ProbeError(f"{target} did not answer with Prometheus metrics: {err}") from err
    names = {f.name for f in families}
    gpus = {
        s.labels.get("UUID") or s.labels.get("gpu")
        for f in families
        if f.name.startswith("DCGM_FI_DEV_")
        for s in f.samples
    } - {None}
    series = sum(len(f.samples) for f in families)
    parts = [f"{len(families)} metrics, {series} series"]
    if gpus:
        parts.append(f"{len(gpus)} GPU{'' if len(gpus) == 1 else 's'} (dcgm-exporter)")
    if any(n.startswith("node_cpu") for n in names):
        parts.append("node_exporter CPU")
    if not families:
        raise ProbeError(f"{target} answered, but with no Prometheus metrics.")
    return f"reached {target}: " + ", ".join(parts) + "."
