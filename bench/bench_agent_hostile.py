"""A client with the token against a real agent while idle connections are held open.

Run: .venv/bin/python bench/bench_agent_hostile.py [--seconds 8] [--idle 0 40 200] [--spread]
Starts a real `costmeter agent --simulate 1` on 127.0.0.1 with a token (and again with TLS),
opens N connections that never send a byte (re-opened as soon as the agent closes one, like an
attacker would), then sends one request with the token every 50 ms for --seconds and prints the
share served (HTTP 200) and the latency p50/p95 of every request, served or not. The idle
connections come from the client's own address, 127.0.0.1 (--spread: from 127.0.0.2-11).
The old figures (the threaded server, 32 slots, issue 12 item 6) are printed beside.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import os
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

TOKEN = "bench-token-0123456789abcdef"
PREFIX = "costmeter agent listening on "
#: From the issue (threaded server, 32 slots): share of a legitimate client's requests served.
OLD = {("http", 0): "100 %", ("http", 40): "37 %", ("http", 200): "0 %", ("https", 40): "36 %"}


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
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
    key_path.chmod(0o600)
    return cert_path, key_path


def start_agent(folder: Path, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    token = folder / "agent.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    cmd = [
        sys.executable, "-m", "costmeter", "agent", "--listen", "127.0.0.1:0", "--simulate", "1",
        "--interval", "1", "--db", str(folder / "buffer.db"), "--token-file", str(token), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            if time.monotonic() > deadline or not sel.select(deadline - time.monotonic()):
                proc.kill()
                raise SystemExit("the agent did not start")
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                raise SystemExit("the agent exited")
            line += chunk
    return line.decode().strip().removeprefix(PREFIX), proc


class IdleFlood:
    """``n`` connections that never send a byte; one reopened whenever the agent closes one."""

    def __init__(self, url: str, n: int, sources: list[str]) -> None:
        parts = urlsplit(url)
        self.address = (str(parts.hostname), int(parts.port or 0))
        self.sources = sources
        self.n = n
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        source = self.sources[self.opened % len(self.sources)]
        self.opened += 1
        sock = socket.create_connection(self.address, timeout=5, source_address=(source, 0))
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            for _ in range(self.n):
                sel.register(self._open(), selectors.EVENT_READ)
            while not self.stop.is_set():
                for key, _ in sel.select(0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    sel.unregister(sock)
                    sock.close()  # answered or closed by the agent: open another
                    with contextlib.suppress(OSError):
                        sel.register(self._open(), selectors.EVENT_READ)
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]


def measure(url: str, context: ssl.SSLContext | None, seconds: float) -> tuple[int, list[float]]:
    served, latencies = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        request = urllib.request.Request(
            url + "/v1/info", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as reply:
                reply.read()
                served += reply.status == 200
        except (urllib.error.URLError, OSError):
            pass
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    return served, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--idle", type=int, nargs="+", default=[0, 40, 200])
    parser.add_argument("--spread", action="store_true", help="idle ones from 127.0.0.2-11")
    args = parser.parse_args()
    sources = [f"127.0.0.{i}" for i in range(2, 12)] if args.spread else ["127.0.0.1"]
    print(f"{'scheme':6} {'idle':>5} {'served':>14} {'p50 ms':>8} {'p95 ms':>8}  old (issue)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cert, key = self_signed(folder)
        for scheme in ("http", "https"):
            extra = ("--tls-cert", str(cert), "--tls-key", str(key)) if scheme == "https" else ()
            url, proc = start_agent(folder, *extra)
            context = ssl.create_default_context(cafile=str(cert)) if scheme == "https" else None
            try:
                for n in args.idle:
                    flood = IdleFlood(url, n, sources)
                    flood.thread.start()
                    time.sleep(0.5)
                    served, lat = measure(url, context, args.seconds)
                    flood.stop.set()
                    flood.thread.join(10)
                    share = f"{served}/{len(lat)} {100 * served / len(lat):.0f}%"
                    p50 = statistics.median(lat) * 1000
                    p95 = statistics.quantiles(lat, n=20)[-1] * 1000 if len(lat) > 1 else p50
                    print(
                        f"{scheme:6} {n:>5} {share:>14} {p50:>8.1f} {p95:>8.1f}  "
                        f"{OLD.get((scheme, n), '')}",
                        flush=True,
                    )
            finally:
                proc.terminate()
                proc.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
