"""``costmeter record`` pulling real agent processes and a Prometheus exporter on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from costmeter.service.remote.agent_client import AgentClient
from costmeter.service.remote.status_db import read_statuses
from costmeter.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_prom_mapping import OTHER, PARENT, dcgm_page

import agent_process

pytestmark = pytest.mark.integration

COSTMETER = [sys.executable, "-m", "costmeter"]


@pytest.fixture
def env_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def costmeter(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COSTMETER, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def agent_ticks(url: str, token: str | None = None) -> list[int]:
    """Every tick in the agent's buffer, as stored ms timestamps."""
    client = AgentClient(url, token=token)
    out: list[int] = []
    since = None
    while True:
        page = client.samples(since, 3600)
        out += [round(t.ts * 1000) for t in page.ticks]
        if page.ticks:
            since = page.ticks[-1].ts
        if not page.more:
            return out


def stored_ticks(db: Path, host: str) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT s.ts FROM host_samples s JOIN hosts h ON h.id = s.host_id"
            " WHERE h.hostname = ? ORDER BY s.ts",
            (host,),
        ).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def test_record_pulls_an_agent_into_the_store_with_its_host(env_home: Path) -> None:
    agent = agent_process.start_agent(
        env_home / "a", "--simulate", "2", "--interval", "0.5", "--name", "box-a"
    )
    db = env_home / "rec.db"
    try:
        rec = costmeter(
            "record", "--no-local", "--remote", agent.url, "--interval", "0.5",
            "--duration", "4", "--db", str(db),
        )  # fmt: skip
        assert rec.returncode == 0, rec.stderr
        assert "recording 1 remote host every 0.5 s" in rec.stderr
        assert "box-a: connected" in rec.stderr
        buffered = agent_ticks(agent.url)
    finally:
        agent.stop()
    stored = stored_ticks(db, "box-a")
    assert len(stored) >= 6
    # Everything the agent had sampled up to the recorder's last tick is in the store.
    assert [t for t in buffered if t <= stored[-1]] == stored
    with Store.open(db) as store:
        devices = store.devices("box-a")
        assert len(devices) == 2 and {d.host for d in devices} == {"box-a"}
        usage = [u for u in store.device_usage(0, time.time() + 10) if u.host == "box-a"]
        assert len(usage) == 2 and all(u.energy_measured_j > 0 for u in usage)
    (status,) = read_statuses(db)
    assert (status.name, status.kind, status.state) == ("box-a", "agent", "connected")
    report = costmeter("report", "--db", str(db), "--since", "1h")
    assert report.returncode == 0
    assert "box-a: connected" in report.stdout


def test_a_wrong_token_is_an_error_state_and_the_right_one_works(env_home: Path) -> None:
    good = env_home / "good.token"
    bad = env_home / "bad.token"
    for path, text in ((good, "s3cret-token-1"), (bad, "wrong-token")):
        path.write_text(text + "\n")
        path.chmod(0o600)
    agent = agent_process.start_agent(
        env_home / "a", "--simulate", "1", "--interval", "0.5", "--name", "box-t",
        "--token-file", str(good),
    )  # fmt: skip
    try:
        db_bad = env_home / "bad.db"
        rec = costmeter(
            "record", "--no-local", "--remote", agent.url, "--token-file", str(bad),
            "--interval", "0.5", "--duration", "2", "--db", str(db_bad),
        )  # fmt: skip
        assert rec.returncode == 0, rec.stderr
        assert "refused the token (HTTP 401)" in rec.stderr
        assert [s.state for s in read_statuses(db_bad)] == ["error"]
        db = env_home / "good.db"
        rec = costmeter(
            "record", "--no-local", "--remote", agent.url, "--token-file", str(good),
            "--interval", "0.5", "--duration", "2", "--db", str(db),
        )  # fmt: skip
        assert rec.returncode == 0, rec.stderr
        assert len(stored_ticks(db, "box-t")) >= 2
    finally:
        agent.stop()


class _Exporter(http.server.BaseHTTPRequestHandler):
    """dcgm-exporter stand-in: the energy counter grows, an XID appears on the third scrape."""

    scrapes = 0

    def do_GET(self) -> None:
        cls = type(self)
        cls.scrapes += 1
        body = dcgm_page(
            energy_mj=1_000_000 + 150_000 * cls.scrapes, xid=79 if cls.scrapes >= 3 else 0
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_record_scrapes_dcgm_exporter_text(env_home: Path, exporter: str) -> None:
    db = env_home / "scrape.db"
    rec = costmeter(
        "record", "--no-local", "--scrape", exporter, "--interval", "0.5", "--duration", "3",
        "--db", str(db),
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    with Store.open(db) as store:
        devices = {d.uuid: d for d in store.devices("gpu-node-7")}
        assert set(devices) == {OTHER, PARENT, f"MIG-{PARENT}/7", f"MIG-{PARENT}/1"}
        assert devices[f"MIG-{PARENT}/7"].name == "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
        usage = {u.uuid: u for u in store.device_usage(0, time.time() + 10)}
    # 150 J between scrapes, measured from the cumulative counter.
    assert usage[OTHER].energy_measured_j == pytest.approx(usage[OTHER].energy_j)
    assert usage[OTHER].energy_j >= 150.0
    conn = sqlite3.connect(db)
    try:
        events = conn.execute(
            "SELECT d.uuid, e.kind, e.value FROM device_events e JOIN devices d ON d.id ="
            " e.device_id"
        ).fetchall()
    finally:
        conn.close()
    assert events == [(OTHER, "xid", 79)]
    (status,) = read_statuses(db)
    assert (status.name, status.kind) == ("gpu-node-7", "prometheus")


class _CuttableProxy:
    """A TCP relay on a fixed 127.0.0.1 port that can be cut (connections refused) and restored:
    a network outage between the recorder and an agent that keeps sampling."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.mark.slow
def test_a_60_second_outage_is_backfilled_without_a_gap(env_home: Path) -> None:
    """The network to a sampling agent is cut for 60 s, then the agent process itself is
    stopped (SIGTERM) and restarted on the same buffer and port: every tick it sampled ends up
    in the store, and meanwhile the host shows as disconnected."""
    name = "box-o"
    agent_dir = env_home / "agent"
    agent = agent_process.start_agent(
        agent_dir, "--simulate", "2", "--interval", "1", "--name", name
    )
    port = int(agent.url.rsplit(":", 1)[1])
    proxy = _CuttableProxy(port)
    db = env_home / "outage.db"
    recorder = subprocess.Popen(
        [*COSTMETER, "record", "--no-local", "--remote", f"http://127.0.0.1:{proxy.port}",
         "--interval", "1", "--db", str(db)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip

    def state() -> str | None:
        rows = [s for s in read_statuses(db) if s.name == name]
        return rows[0].state if rows else None

    try:
        wait_for(lambda: state() == "connected", 30, "the first contact")
        time.sleep(3)
        proxy.cut()
        cut_at = time.time()
        wait_for(lambda: state() == "disconnected", 15, "the host to show as disconnected")
        report = costmeter("report", "--db", str(db), "--since", "1h")
        assert f"{name}: disconnected since" in report.stdout
        time.sleep(max(0.0, 60 - (time.time() - cut_at)))
        proxy.restore()
        # Then the agent process goes away and comes back on the same buffer and port.
        time.sleep(2)
        agent.stop()
        time.sleep(3)
        agent = agent_process.start_agent(
            agent_dir, "--simulate", "2", "--interval", "1", "--name", name,
            "--listen", f"127.0.0.1:{port}", "--db", str(agent.db),
        )  # fmt: skip

        def caught_up() -> bool:
            rows = [s for s in read_statuses(db) if s.name == name]
            return bool(rows) and rows[0].state == "connected" and (rows[0].lag_s or 99) < 3

        wait_for(caught_up, 60, "the backfill")
        time.sleep(2)
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            _, err = recorder.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, err = recorder.communicate(timeout=10)
        buffered = agent_ticks(agent.url)
        agent.stop()
        proxy.cut()
    assert recorder.returncode == 0, err
    stored = stored_ticks(db, name)
    window = [t for t in buffered if stored[0] <= t <= stored[-1]]
    outage = [t for t in window if cut_at * 1000 <= t <= (cut_at + 60) * 1000]
    assert len(outage) >= 55  # the agent kept sampling through the cut
    missing = sorted(set(window) - set(stored))
    assert missing == [], f"{len(missing)} ticks missing, first {missing[:5]}"
    assert len(stored) >= len(outage) + 5  # and ticks from before and after the cut
    assert os.path.getsize(db) > 0


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def test_https_agent_certificate_is_verified(env_home: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = _self_signed(env_home)
    agent = agent_process.start_agent(
        env_home / "a", "--simulate", "1", "--interval", "0.5", "--name", "box-tls",
        "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    try:
        assert agent.url.startswith("https://")
        untrusted = env_home / "untrusted.db"
        rec = costmeter(
            "record", "--no-local", "--remote", agent.url, "--interval", "0.5",
            "--duration", "2", "--db", str(untrusted),
        )  # fmt: skip
        assert rec.returncode == 0, rec.stderr
        assert "TLS certificate could not be verified" in rec.stderr
        assert [s.state for s in read_statuses(untrusted)] == ["error"]
        trusted = env_home / "trusted.db"
        rec = costmeter(
            "record", "--no-local", "--remote", agent.url, "--interval", "0.5",
            "--duration", "2", "--db", str(trusted), env={**os.environ, "SSL_CERT_FILE": str(cert)},
        )  # fmt: skip
        assert rec.returncode == 0, rec.stderr
        assert len(stored_ticks(trusted, "box-tls")) >= 2
    finally:
        agent.stop()
