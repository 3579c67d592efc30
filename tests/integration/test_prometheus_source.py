"""A real Prometheus as a source: backfill, report, restart, outage, tokens, chunking.

Debian's ``prometheus`` 2.42 is started on loopback by tests/prometheus_server.py over a TSDB
that ``promtool`` filled with hours of dcgm-exporter and node_exporter history. The expected
energy is computed from the generator's own series (its counter, and its power x time), never
from what Costmeter stored. A tiny loopback proxy stands in front of Prometheus where a test
needs a bearer token (Prometheus itself only does basic auth) or a server that goes away and
comes back on another port.
"""

from __future__ import annotations

import http.client
import http.server
import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from costmeter.config import SourceConfig
from costmeter.core.clock import SystemClock
from costmeter.service.remote import prom_source
from costmeter.service.remote.backoff import Backoff
from costmeter.service.remote.prom_source import SourceRunner
from costmeter.service.remote.status import CONNECTED, DISCONNECTED, ERROR
from costmeter.store import Writer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import prometheus_server as ps_harness
from prometheus_server import PrometheusServer, dcgm_history, write_history_blocks

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(ps_harness.available() is not None, reason=str(ps_harness.available())),
]

COSTMETER = [sys.executable, "-m", "costmeter"]
STEP = 60.0
GPUS, HOSTS = 4, 2
HOURS = 5


@dataclass(frozen=True)
class History:
    tsdb: Path
    start: float
    end: float


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """HOURS of history of GPUS GPUs on HOSTS hosts, ending two steps before now."""
    root = tmp_path_factory.mktemp("history")
    end = (time.time() // STEP - 2) * STEP
    start = end - HOURS * 3600
    tsdb = root / "data"
    for low, high in ps_harness.history_windows(start, end):
        write_history_blocks(tsdb, dcgm_history(GPUS, HOSTS, low, high, STEP))
    return History(tsdb, start, end)


@pytest.fixture(scope="module")
def prometheus(history: History, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with PrometheusServer(tmp_path_factory.mktemp("prom"), tsdb=history.tsdb) as prom:
        yield prom.url


class Proxy:
    """Forwards GETs to ``upstream``; answers 401 without the bearer token when one is set; a
    request it cannot forward gets its connection closed without an answer (a server gone)."""

    def __init__(self, upstream: str, token: str | None = None) -> None:
        self.upstream = upstream
        self.token = token
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if me.token and self.headers["Authorization"] != f"Bearer {me.token}":
                    self._send(401, b"Unauthorized")
                    return
                try:
                    with urllib.request.urlopen(me.upstream + self.path, timeout=30) as answer:
                        self._send(answer.status, answer.read())
                except urllib.error.HTTPError as err:
                    self._send(err.code, err.read())
                except (OSError, http.client.HTTPException):
                    self.close_connection = True  # no answer at all

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


# -- what the generated history says, independently of Costmeter ------------------------------
def _gpus() -> dict[str, ps_harness.GpuSeries]:
    template = ps_harness.gpu_template()
    placed = ps_harness.gpus_of(GPUS, HOSTS)
    return {
        ps_harness.gpu_uuid(host, local): ps_harness.GpuSeries(serial, STEP, template)
        for serial, (host, local) in enumerate(placed)
    }


def expected_energy_j(gpu: ps_harness.GpuSeries, first: float, last: float) -> float:
    """The counter's increase over the steps after ``first`` up to ``last``; a reset counts on
    from zero."""
    total = 0
    for k in range(round(first / STEP) + 1, round(last / STEP) + 1):
        before, now = gpu.energy_mj(k - 1), gpu.energy_mj(k)
        total += now - before if now >= before else now
    return total / 1000.0


def power_energy_j(gpu: ps_harness.GpuSeries, first: float, last: float) -> float:
    """Power x time over the same steps."""
    return sum(
        gpu.power_mw(k - 1) * STEP / 1000.0
        for k in range(round(first / STEP) + 1, round(last / STEP) + 1)
    )


# -- what Costmeter stored -------------------------------------------------------------------
def stored(db: Path) -> dict[str, list[tuple[float, int, int]]]:
    """uuid -> [(ts s, dt_ms, energy_mj)] in time order."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT d.uuid, s.ts, s.dt_ms, coalesce(s.energy_mj, 0) FROM device_samples s"
            " JOIN devices d ON d.id = s.device_id ORDER BY d.uuid, s.ts"
        ).fetchall()
    out: dict[str, list[tuple[float, int, int]]] = {}
    for uuid, ts, dt_ms, mj in rows:
        out.setdefault(uuid, []).append((ts / 1000.0, dt_ms, mj))
    return out


def host_rows(db: Path) -> dict[str, list[tuple[float, float]]]:
    """host -> [(ts s, cpu %)] in time order."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT h.hostname, s.ts, s.cpu_pct_x100 FROM host_samples s"
            " JOIN hosts h ON h.id = s.host_id ORDER BY h.hostname, s.ts"
        ).fetchall()
    out: dict[str, list[tuple[float, float]]] = {}
    for host, ts, pct in rows:
        out.setdefault(host, []).append((ts / 1000.0, (pct or 0) / 100.0))
    return out


def assert_whole(
    db: Path, history: History, first: float
) -> dict[str, list[tuple[float, int, int]]]:
    """Every GPU has exactly one sample per step from ``first`` to the history's end, each
    after the first an interval of one step, and the energy the history says."""
    gpus = _gpus()
    samples = stored(db)
    assert set(samples) == set(gpus)
    for uuid, rows in samples.items():
        inside = [r for r in rows if r[0] <= history.end]
        assert [r[0] for r in inside] == [
            first + i * STEP for i in range(round((history.end - first) / STEP) + 1)
        ]
        assert all(dt == STEP * 1000 for _, dt, _ in inside[1:]), "a step without its interval"
        got_j = sum(mj for _, _, mj in inside) / 1000.0
        assert got_j == pytest.approx(expected_energy_j(gpus[uuid], first, history.end), rel=1e-9)
    return samples


def run_cycle(runner: SourceRunner) -> None:
    delay = runner.run_once()
    assert runner.status.state == CONNECTED, runner.status
    assert delay >= 0.2


def make_runner(
    url: str, db: Path, writer: Writer, clock: list[float], **config: object
) -> SourceRunner:
    options: dict[str, object] = {"backfill_s": HOURS * 3600.0, "step_s": STEP, **config}
    source = SourceConfig(name="fleet", url=url, **options)  # type: ignore[arg-type]
    return SourceRunner(
        source, writer, store_path=db, cpu_tdp_w=100.0, clock=lambda: clock[0],
        backoff=Backoff(0.05, 0.1), settle_s=0.0,
    )  # fmt: skip


def open_writer(db: Path) -> Writer:
    writer = Writer(db, clock=SystemClock(), flush_interval=0.05)
    writer.start()
    return writer


def costmeter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COSTMETER, *args], capture_output=True, text=True, timeout=120, env=env)


# -- the tests -------------------------------------------------------------------------------
def test_record_backfills_and_report_gives_the_historys_energy(
    prometheus: str, history: History, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path)}
    done = costmeter("record", "--prometheus", prometheus, "--no-local", "--once", "--backfill",
                     f"{HOURS}h", "--db", str(db), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{prometheus[7:]}: connected" in done.stderr
    samples = stored(db)
    first = min(rows[0][0] for rows in samples.values())
    assert history.start <= first <= history.start + 2 * STEP  # backfill reaches HOURS back
    assert_whole(db, history, first)
    cpu = host_rows(db)
    assert set(cpu) == {"gpu-node-000", "gpu-node-001"}  # node_exporter joined to its GPUs
    for rows in cpu.values():  # the history: idle 70 %, iowait 1 %: 29 % busy, reboots aside
        busy = [pct for ts, pct in rows[1:] if ts <= history.end]
        assert sorted(busy)[len(busy) // 2] == pytest.approx(29.0, abs=0.01)

    report = costmeter(
        "report", "--db", str(db), "--since", f"{HOURS + 1}h", "--format", "json", env=env
    )
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    gpus = _gpus()
    by_uuid = {d["uuid"]: d for d in data["devices"]}
    assert set(by_uuid) == set(gpus)
    for uuid, gpu in gpus.items():
        expected_kwh = expected_energy_j(gpu, first, history.end) / 3.6e6
        assert by_uuid[uuid]["energy_kwh"] == pytest.approx(expected_kwh, rel=1e-6)
        assert by_uuid[uuid]["energy_source"] == "measured"
        # The generator's power x time says the same within 2 % (its counter drifts from it
        # in busy phases, and loses a step at each reset).
        assert by_uuid[uuid]["energy_kwh"] == pytest.approx(
            power_energy_j(gpu, first, history.end) / 3.6e6, rel=0.02
        )
    (status,) = data["remote_hosts"]
    assert (status["name"], status["kind"], status["state"]) == (
        prometheus[7:],
        "source",
        "connected",
    )


def test_a_restart_resumes_where_the_store_stops_without_gap_or_duplicate(
    prometheus: str, history: History, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    clock = [history.start + 2 * 3600]
    writer = open_writer(db)
    try:
        run_cycle(make_runner(prometheus, db, writer, clock))
    finally:
        writer.stop()
    first_run = stored(db)
    stop_at = max(rows[-1][0] for rows in first_run.values())
    assert stop_at == history.start + 2 * 3600
    first = min(rows[0][0] for rows in first_run.values())
    # Costmeter restarted: a new writer and runner, nothing in memory; now is the history's end.
    clock[0] = history.end + 30
    writer = open_writer(db)
    try:
        runner = make_runner(prometheus, db, writer, clock)
        run_cycle(runner)
        run_cycle(runner)  # following: nothing new, nothing written twice
    finally:
        writer.stop()
    samples = assert_whole(db, history, first)
    for uuid, rows in samples.items():
        assert rows[: len(first_run[uuid])] == first_run[uuid]  # the first run's rows untouched


def test_an_outage_shows_as_disconnected_and_the_gap_is_filled_after(
    history: History, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    clock = [history.start + 3600]
    writer = open_writer(db)
    try:
        with PrometheusServer(tmp_path, tsdb=history.tsdb) as prom, Proxy(prom.url) as proxy:
            runner = make_runner(proxy.url, db, writer, clock)
            run_cycle(runner)
            first = min(rows[0][0] for rows in stored_after_flush(writer, db).values())
            prom.stop()
            clock[0] = history.start + 2 * 3600
            runner.run_once()
            assert runner.status.state == DISCONNECTED
            assert "is unreachable" in (runner.status.error or "")
            with PrometheusServer(tmp_path, tsdb=history.tsdb) as again:
                proxy.upstream = again.url
                clock[0] = history.end + 30
                run_cycle(runner)
    finally:
        writer.stop()
    assert_whole(db, history, first)


def stored_after_flush(writer: Writer, db: Path) -> dict[str, list[tuple[float, int, int]]]:
    assert writer.flush(30)
    return stored(db)


def test_a_bearer_token_is_sent_and_a_wrong_one_is_said_plainly(
    prometheus: str, history: History, tmp_path: Path
) -> None:
    right = tmp_path / "right"
    right.write_text("s3cret-token\n")
    right.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("guessed\n")
    wrong.chmod(0o600)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path)}
    with Proxy(prometheus, token="s3cret-token") as proxy:
        refused = costmeter(
            "record", "--prometheus", proxy.url, "--token-file", str(wrong), "--no-local",
            "--once", "--backfill", "1h", "--db", str(tmp_path / "w.db"), env=env,
        )  # fmt: skip
        assert refused.returncode == 1
        assert (
            f"{proxy.url[7:]}: error ({proxy.url[7:]} refused the token (HTTP 401)"
            in refused.stderr
        )
        assert "a source could not be read up to now" in refused.stderr
        db = tmp_path / "c.db"
        clock = [history.end + 30]
        writer = open_writer(db)
        try:
            runner = make_runner(proxy.url, db, writer, clock, token_file=right, backfill_s=3600.0)
            run_cycle(runner)
            right.chmod(0o644)
            runner._api = None  # as after a failure: the token is read again
            runner.run_once()
            assert runner.status.state == ERROR
            assert "can be read by other users" in (runner.status.error or "")
        finally:
            writer.stop()
    assert len(stored(db)) == GPUS


def test_a_query_the_server_refuses_is_an_error_with_its_reason(
    prometheus: str, history: History, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    writer = open_writer(db)
    try:
        runner = make_runner(prometheus, db, writer, [history.end], match='{job=~"("}')
        runner.run_once()
    finally:
        writer.stop()
    assert runner.status.state == ERROR
    assert "refused the series query (HTTP 400): bad_data:" in (runner.status.error or "")
    assert "error parsing regexp" in (runner.status.error or "")


def test_small_windows_and_batches_store_what_one_big_query_stores(
    prometheus: str, history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [history.start + 3 * 3600]
    whole = tmp_path / "whole.db"
    writer = open_writer(whole)
    try:
        run_cycle(make_runner(prometheus, whole, writer, clock))
    finally:
        writer.stop()
    monkeypatch.setattr(prom_source, "POINTS_PER_QUERY", 1500)  # 1 GPU x 16 series: 92 steps
    monkeypatch.setattr(prom_source, "MAX_BATCH_GPUS", 1)
    chunked = tmp_path / "chunked.db"
    writer = open_writer(chunked)
    try:
        runner = make_runner(prometheus, chunked, writer, clock)
        run_cycle(runner)
        assert runner._window([["gpu-node-000"]]) < 3600  # several windows
    finally:
        writer.stop()
    assert stored(chunked) == stored(whole)
    assert host_rows(chunked) == host_rows(whole)
    assert len(stored(whole)) == GPUS and math.isfinite(clock[0])


def test_following_a_live_scrape_reads_each_new_step(tmp_path: Path) -> None:
    """Prometheus scraping a real dcgm-exporter page every second; backfill 0 = follow only."""
    page = (
        Path(__file__).resolve().parents[1] / "data/exporters/aiperf-dcgm-single-gpu.txt"
    ).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=exporter.serve_forever, daemon=True)
    thread.start()
    db = tmp_path / "c.db"
    try:
        url = f"http://127.0.0.1:{exporter.server_address[1]}/metrics"
        with PrometheusServer(tmp_path, scrape_urls=[url], scrape_interval_s=1.0) as prom:
            api = prom_source.PromApi(prom.url)
            deadline = time.monotonic() + 30
            while not api.series(
                ["DCGM_FI_DEV_POWER_USAGE"], start=time.time() - 60, end=time.time()
            ):
                assert time.monotonic() < deadline, "Prometheus did not scrape the page"
                time.sleep(0.2)
            writer = open_writer(db)
            sources = prom_source.PromSources(
                [SourceConfig(name="live", url=prom.url, backfill_s=0.0, step_s=1.0)],
                writer, store_path=db, cpu_tdp_w=100.0,
            )  # fmt: skip
            try:
                sources.start()
                assert sources.wait_settled(), sources.statuses()
                (runner,) = sources.runners
                deadline = time.monotonic() + 20
                while "ed7e7a5e585f" not in runner._last:
                    assert time.monotonic() < deadline, runner.status
                    time.sleep(0.1)
                first = runner._last["ed7e7a5e585f"]
                while runner._last["ed7e7a5e585f"] < first + 3:
                    assert time.monotonic() < deadline, runner.status
                    time.sleep(0.1)
                assert [s.state for s in sources.statuses()] == [CONNECTED]
            finally:
                sources.stop()
                writer.stop()
    finally:
        exporter.shutdown()
        exporter.server_close()
        thread.join()
    (rows,) = stored(db).values()
    times = [ts for ts, _, _ in rows]
    assert times == [times[0] + i for i in range(len(times))]  # every second, none twice
    assert len(times) >= 4
    assert all(dt == 1000 for _, dt, _ in rows[1:])
