"""Real ``costmeter agent`` processes on 127.0.0.1: the endpoints, auth, bounds and the buffer."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from costmeter.sampling import wire

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent_process import AgentProcess, run_agent, start_agent

pytestmark = pytest.mark.integration
SIM = ("--simulate", "2", "--interval", "0.2", "--name", "gpu-box")
TOKEN = "s3cret-token-for-tests-0123456789"
ENDPOINTS = ("/metrics", "/v1/info", "/v1/samples")


def get(url: str, token: str | None = None, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10, **kw) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def get_json(url: str, token: str | None = None) -> Any:
    status, _, body = get(url, token)
    assert status == 200, body
    return json.loads(body)


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def raw_request(url: str, data: bytes, *, timeout: float = 15.0) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def token_file(folder: Path, mode: int = 0o600) -> Path:
    path = folder / "agent.token"
    path.write_text(TOKEN + "\n")
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    proc = start_agent(tmp_path_factory.mktemp("open"), *SIM)
    try:
        wait_for(lambda: get_json(proc.url + "/v1/info")["newest"] is not None)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    folder = tmp_path_factory.mktemp("locked")
    proc = start_agent(folder, *SIM, "--token-file", str(token_file(folder)))
    try:
        yield proc
    finally:
        proc.stop()


def test_info_describes_the_host_and_its_gpus(agent: AgentProcess) -> None:
    doc = get_json(agent.url + "/v1/info")
    info = wire.decode_info(doc)
    assert info.host.hostname == "gpu-box" and info.gpu_mode == "simulated"
    assert [d.index for d in info.devices] == [0, 1]
    assert all(d.host == "gpu-box" for d in info.devices)
    assert info.interval_s == pytest.approx(0.2)
    assert info.oldest is not None and info.newest is not None and info.oldest <= info.newest
    assert info.version == doc["version"] and info.version


def test_samples_page_through_the_buffer_without_gaps_or_repeats(agent: AgentProcess) -> None:
    wait_for(
        lambda: wire.decode_samples_page(get_json(agent.url + "/v1/samples")).ticks.__len__() >= 8
    )
    first = wire.decode_samples_page(get_json(agent.url + "/v1/samples?limit=3"))
    assert len(first.ticks) == 3 and first.more
    assert first.next_since == first.ticks[-1].ts
    seen = list(first.ticks)
    assert first.next_since is not None
    since = first.next_since
    for _ in range(50):
        page = wire.decode_samples_page(get_json(f"{agent.url}/v1/samples?since={since!r}&limit=3"))
        assert all(t.ts > since for t in page.ticks)
        seen += page.ticks
        if not page.more:
            break
        assert page.next_since is not None
        since = page.next_since
    stamps = [t.ts for t in seen]
    assert stamps == sorted(set(stamps)) and len(stamps) >= 8
    assert first.oldest == stamps[0]
    tick = seen[-1]
    assert tick.host == "gpu-box" and len(tick.devices) == 2 and tick.host_sample is not None
    # the cumulative energy counter, as sampled: it only grows
    energy = [t.devices[0].energy_mj for t in seen]
    assert all(e is not None for e in energy) and energy == sorted(energy)  # type: ignore[type-var]
    # simulated processes stay on their GPUs (unlike a run's node sampler)
    assert any(d.processes for t in seen for d in t.devices)


def test_samples_after_the_newest_is_an_empty_page(agent: AgentProcess) -> None:
    page = wire.decode_samples_page(get_json(agent.url + "/v1/samples?since=4000000000"))
    assert page.ticks == () and not page.more and page.next_since is None


@pytest.mark.parametrize(
    "query",
    [
        "since=abc",
        "since=nan",
        "since=inf",
        "limit=0",
        "limit=-1",
        "limit=x",
        "since=1&since=2",
        "bogus=1",
        "limit=99999999999999",
    ],
)
def test_bad_queries_get_400_with_a_sentence(agent: AgentProcess, query: str) -> None:
    status, _, body = get(f"{agent.url}/v1/samples?{query}")
    assert status == 400
    assert json.loads(body)["error"].endswith(".")


def test_limit_is_capped(agent: AgentProcess) -> None:
    page = wire.decode_samples_page(get_json(agent.url + "/v1/samples?limit=100000"))
    assert 0 < len(page.ticks) <= 3600


def test_metrics_parse_with_prometheus_client(agent: AgentProcess) -> None:
    status, headers, body = get(agent.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    util = families["costmeter_gpu_utilization_percent"]
    assert {s.labels["gpu"] for s in util.samples} == {"0", "1"}
    assert all(
        s.labels["host"] == "gpu-box" and s.labels["uuid"].startswith("GPU-") for s in util.samples
    )
    assert all(0 <= s.value <= 100 for s in util.samples)
    assert families["costmeter_gpu_energy_joules"].type == "counter"
    assert all(s.value > 0 for s in families["costmeter_gpu_energy_joules"].samples)
    for name in (
        "costmeter_gpu_power_watts",
        "costmeter_gpu_memory_used_bytes",
        "costmeter_gpu_memory_total_bytes",
        "costmeter_gpu_temperature_celsius",
        "costmeter_gpu_sm_clock_hertz",
        "costmeter_host_cpu_utilization_percent",
        "costmeter_host_memory_used_bytes",
        "costmeter_host_load_average",
        "costmeter_agent_info",
    ):
        assert families[name].samples, name
    # the documented names are the served names
    doc = (Path(__file__).resolve().parents[2] / "docs" / "AGENT.md").read_text()
    for name in families:
        assert f"`{name}" in doc, f"{name} is not documented in docs/AGENT.md"


def test_head_gives_headers_only(agent: AgentProcess) -> None:
    reply = raw_request(agent.url, b"HEAD /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head(agent: AgentProcess, method: str) -> None:
    reply = raw_request(
        agent.url,
        f"{method} /v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd".encode(),
    )
    assert reply.startswith(b"HTTP/1.1 405") and b"Allow: GET, HEAD" in reply


def test_unknown_path_is_404_and_bodies_are_refused(agent: AgentProcess) -> None:
    assert get(agent.url + "/v1/../etc/passwd")[0] == 404
    assert get(agent.url + "/admin")[0] == 404
    reply = raw_request(agent.url, b"GET /v1/info HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert reply.startswith(b"HTTP/1.1 413")
    assert raw_request(agent.url, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")


def test_an_oversized_request_is_refused(agent: AgentProcess) -> None:
    huge = b"GET /v1/info HTTP/1.1\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\n"
    assert raw_request(agent.url, huge).startswith(b"HTTP/1.1 431")
    long_url = b"GET /v1/samples?since=" + b"1" * 10_000 + b" HTTP/1.1\r\n\r\n"
    assert raw_request(agent.url, long_url).startswith(b"HTTP/1.1 431")
    assert get(agent.url + "/v1/info")[0] == 200  # still serving


@pytest.mark.slow
def test_a_slow_request_is_cut_off_while_others_are_served(agent: AgentProcess) -> None:
    parts = urlsplit(agent.url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as slow:
        slow.sendall(b"GET /v1/info HTTP/1.1\r\n")
        # another client is served while the slow one dribbles
        assert get(agent.url + "/v1/info")[0] == 200
        reply = b""
        for _ in range(40):  # one header line every 0.5 s, for up to 20 s: never ends
            readable, _, _ = select.select([slow], [], [], 0.5)
            if readable:
                reply = slow.recv(4096)
                break
            slow.sendall(b"X: y\r\n")
    elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    assert elapsed < 15


def test_a_token_is_needed_on_every_endpoint(locked: AgentProcess) -> None:
    for path in ENDPOINTS:
        for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
            status, headers, body = get(locked.url + path, token)
            assert status == 401, (path, token)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert json.loads(body)["error"]
        status, _, _ = get(locked.url + path, TOKEN)
        assert status == 200, path
    basic = urllib.request.Request(locked.url + "/v1/info", headers={"Authorization": "Basic eDp5"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(basic, timeout=10)
    assert err.value.code == 401
    err.value.close()
    assert TOKEN not in locked.stderr()  # refusals are logged without the token


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = token_file(tmp_path, 0o644)
    result = run_agent(tmp_path, *SIM, "--token-file", str(path), "--db", str(tmp_path / "b.db"))
    assert result.returncode == 2
    assert "can be read by other users" in result.stderr and f"chmod 600 {path}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0"])
def test_listening_beyond_loopback_needs_a_token(tmp_path: Path, address: str) -> None:
    result = run_agent(tmp_path, *SIM, "--listen", address, "--db", str(tmp_path / "b.db"))
    assert result.returncode == 2
    assert "without a token" in result.stderr and "--token-file" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_bad_listen_and_half_tls_are_refused(tmp_path: Path) -> None:
    for args in (
        ("--listen", "nonsense"),
        ("--listen", "127.0.0.1:99999"),
        ("--tls-cert", str(tmp_path / "missing.pem")),
        ("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "k.pem")),
        ("--simulate", "no-such-gpu"),
        ("--interval", "0"),
        ("--buffer-hours", "-1"),
        ("--name", "x" * 300),
    ):
        result = run_agent(tmp_path, *SIM, *args, "--db", str(tmp_path / "b.db"))
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr and result.stderr.strip(), args


def test_a_port_in_use_is_a_sentence(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_agent(tmp_path, *SIM, "--listen", f"127.0.0.1:{port}", "--db", "b.db")
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def test_tls_with_a_token(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    proc = start_agent(
        tmp_path,
        *SIM,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--token-file",
        str(token_file(tmp_path)),
    )
    try:
        assert proc.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        status, _, body = get(proc.url + "/v1/info", TOKEN, context=trusted)
        assert status == 200 and wire.decode_info(json.loads(body)).gpu_mode == "simulated"
        assert get(proc.url + "/v1/info", None, context=trusted)[0] == 401
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            get(proc.url + "/v1/info", TOKEN, context=ssl.create_default_context())
        # a client that opens a connection and never says hello holds no one else up
        parts = urlsplit(proc.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10):
            assert get(proc.url + "/v1/info", TOKEN, context=trusted)[0] == 200
        plain = "http://" + proc.url.removeprefix("https://")
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            get(plain + "/v1/info", TOKEN)
        assert get(proc.url + "/metrics", TOKEN, context=trusted)[0] == 200  # still serving
    finally:
        proc.stop()


def test_the_buffer_survives_a_restart(tmp_path: Path) -> None:
    first = start_agent(tmp_path, *SIM)
    try:
        wait_for(lambda: len(get_json(first.url + "/v1/samples")["samples"]) >= 5)
        served = wire.decode_samples_page(get_json(first.url + "/v1/samples?limit=3600"))
    finally:
        assert first.stop() == 0
    assert "stopped;" in first.stderr()
    second = start_agent(tmp_path, *SIM)  # the same --db
    try:
        info = wire.decode_info(get_json(second.url + "/v1/info"))
        assert info.oldest == served.ticks[0].ts
        page = wire.decode_samples_page(get_json(second.url + "/v1/samples?limit=3600"))
        stamps = [t.ts for t in page.ticks]
        assert {t.ts for t in served.ticks} <= set(stamps)
        assert stamps == sorted(set(stamps))
        # and the same ticks, not only the same times
        by_ts = {t.ts: t for t in page.ticks}
        assert all(by_ts[t.ts] == t for t in served.ticks)
    finally:
        assert second.stop() == 0
