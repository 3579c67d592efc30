"""Reading a real Prometheus: backfill speed and memory, and the lag while following 1,000 GPUs.

Run: .venv/bin/python bench/bench_prometheus.py [--gpus 64] [--days 7] [--follow-gpus 1000]
     [--follow-seconds 60] [--no-follow] [--small]   (--small: the run_all size, under a minute)

Backfill. History of --gpus GPUs (8 a host) over --days at 60 s steps is written into a fresh
TSDB with ``promtool tsdb create-blocks-from openmetrics`` (tests/prometheus_server.py: the
labels of a real dcgm-exporter page, node_exporter series for each host), Debian's prometheus
serves it on 127.0.0.1, and a child ``costmeter record --no-local --prometheus URL --backfill
Nd --once`` reads it all into a new database and exits. Measured: its wall time, its peak RSS
(``wait4``'s ru_maxrss of the child), the rows it stored per second, and, in the same run, the
rows per second of the store's Writer alone given the same number of ticks (same hosts, GPUs
and 60 s spacing) directly: what the query, the JSON and the mapping cost on top of the store.

Follow. One loopback page holds --follow-gpus GPUs on --follow-gpus/8 hosts (dcgm-exporter and
node_exporter series of every host, each with its own instance label, as a federation endpoint
serves them); prometheus scrapes it every --scrape-interval s (honor_labels), and a child
``costmeter record --prometheus URL --backfill 0 --step S`` follows it. Every second the lag of
the database is read: now - the newest stored sample (any GPU) and now - the oldest of the
GPUs' newest samples (the GPU furthest behind), over --follow-seconds after the first sample.
The last line prints the figures.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from costmeter.core.clock import SimulatedClock
from costmeter.store import Writer
from costmeter.store.testing import device_infos, host_info, make_tick

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import prometheus_server as ps  # the test harness, next to the tests

STEP_S = 60.0
GPUS_PER_HOST = 8


def machine() -> str:
    return f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def record(args: list[str], *, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "costmeter", "record", "--no-local", *args]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def wait_rusage(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """Reap ``proc`` with wait4: (exit code, peak RSS in KiB)."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss


def count_rows(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        devices = conn.execute("SELECT count(*) FROM device_samples").fetchone()[0]
        hosts = conn.execute("SELECT count(*) FROM host_samples").fetchone()[0]
    return int(devices), int(hosts)


# -- backfill ------------------------------------------------------------------------------


def write_history(tsdb: Path, gpus: int, hosts: int, start: float, end: float) -> float:
    began = time.perf_counter()
    for low, high in ps.history_windows(start, end):
        ps.write_history_blocks(tsdb, ps.dcgm_history(gpus, hosts, low, high, STEP_S))
    return time.perf_counter() - began


def writer_alone(
    db: Path, hosts: int, gpus_per_host: int, ticks_per_host: int, end: float
) -> tuple[float, int]:
    """The same number of ticks (hosts x steps, 60 s apart) through the Writer directly."""
    names = [ps.host_name(h) for h in range(hosts)]
    start = end - ticks_per_host * STEP_S
    ticks = [
        make_tick(start + k * STEP_S, host=name, devices=gpus_per_host, dt=STEP_S)
        for k in range(ticks_per_host)
        for name in names
    ]
    writer = Writer(db, clock=SimulatedClock(end), flush_interval=1.0)
    writer.start()
    for name in names:
        writer.register(host_info(name, 64), device_infos(name, gpus_per_host))
    writer.flush()
    began = time.perf_counter()
    for tick in ticks:
        writer.submit(tick, wait=True)
    writer.flush()
    elapsed = time.perf_counter() - began
    rows = writer.stats.rows_written
    writer.stop()
    return elapsed, rows


def backfill(folder: Path, gpus: int, days: float) -> dict[str, float]:
    hosts = max(1, -(-gpus // GPUS_PER_HOST))
    end = (time.time() // STEP_S - 2) * STEP_S
    start = end - days * 86400 + STEP_S
    tsdb = folder / "tsdb"
    print(f"writing {days:g} days x {gpus} GPUs on {hosts} hosts into a TSDB ...", flush=True)
    history_s = write_history(tsdb, gpus, hosts, start, end)
    print(f"  promtool blocks written in {history_s:.1f} s", flush=True)
    db = folder / "backfill.db"
    with ps.PrometheusServer(folder, tsdb=tsdb) as server:
        began = time.perf_counter()
        proc = record(
            ["--db", str(db), "--prometheus", server.url, "--backfill", f"{days:g}d", "--once"],
            log=folder / "backfill.log",
        )
        code, rss_kib = wait_rusage(proc)
        wall = time.perf_counter() - began
    if code != 0:
        raise SystemExit(f"record exited {code}:\n{(folder / 'backfill.log').read_text()[-2000:]}")
    device_rows, host_rows = count_rows(db)
    rows = device_rows + host_rows
    expected = gpus * round((end - start) / STEP_S + 1)
    print(
        f"  record --once: {wall:.1f} s, {device_rows:,} GPU rows (of {expected:,} in the TSDB) "
        f"+ {host_rows:,} host rows, peak RSS {rss_kib / 1024:.0f} MiB",
        flush=True,
    )
    ticks_per_host = max(1, host_rows // hosts)
    alone_s, alone_rows = writer_alone(
        folder / "writer.db", hosts, -(-gpus // hosts), ticks_per_host, end
    )
    print(
        f"  Writer alone, the same {hosts * ticks_per_host:,} ticks: {alone_rows:,} rows in "
        f"{alone_s:.1f} s",
        flush=True,
    )
    return {
        "wall_s": wall,
        "rss_mib": rss_kib / 1024,
        "rows": rows,
        "rows_per_s": rows / wall,
        "writer_rows_per_s": alone_rows / alone_s,
        "complete": device_rows / expected,
    }


# -- follow --------------------------------------------------------------------------------


def serve(page: ps.ExporterPage) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.body()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def scraped_gpus(url: str) -> int:
    query = urllib.parse.urlencode({"query": "count(DCGM_FI_DEV_POWER_USAGE)"})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as answer:
            result = json.load(answer)["data"]["result"]
    except OSError:
        return 0
    return int(float(result[0]["value"][1])) if result else 0


def newest(db: Path) -> tuple[float | None, float | None, int]:
    """(newest sample, oldest of the GPUs' newest samples, GPUs stored), in seconds."""
    if not db.exists():
        return None, None, 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT max(m), min(m), count(*) FROM "
                "(SELECT max(ts) AS m FROM device_samples GROUP BY device_id)"
            ).fetchone()
    except sqlite3.Error:
        return None, None, 0
    if row is None or row[0] is None:
        return None, None, 0
    return row[0] / 1000, row[1] / 1000, int(row[2])


def follow(
    folder: Path, gpus: int, seconds: float, interval_s: float, step_s: float
) -> dict[str, float]:
    hosts = max(1, -(-gpus // GPUS_PER_HOST))
    page = ps.ExporterPage(gpus, hosts)
    page.body()
    exporter, thread = serve(page)
    target = f"http://127.0.0.1:{exporter.server_address[1]}/metrics"
    db = folder / "follow.db"
    newest_lags: list[float] = []
    worst_lags: list[float] = []
    stored = 0
    try:
        with ps.PrometheusServer(
            folder, scrape_urls=[target], scrape_interval_s=interval_s, honor_labels=True
        ) as server:
            deadline = time.monotonic() + 120
            while scraped_gpus(server.url) < gpus:
                if time.monotonic() > deadline:
                    raise SystemExit("prometheus did not scrape the page in 120 s")
                time.sleep(0.5)
            print(f"following {gpus} GPUs on {hosts} hosts, scraped every {interval_s:g} s ...")
            proc = record(
                ["--db", str(db), "--prometheus", server.url, "--backfill", "0",
                 "--step", f"{step_s:g}"],
                log=folder / "follow.log",
            )  # fmt: skip
            try:
                first = None
                deadline = time.monotonic() + 120
                while first is None or time.monotonic() - first < seconds:
                    time.sleep(1.0)
                    if proc.poll() is not None:
                        log = (folder / "follow.log").read_text()[-2000:]
                        raise SystemExit(f"record exited {proc.returncode}:\n{log}")
                    top, bottom, stored = newest(db)
                    now = time.time()
                    if top is None or bottom is None or stored < gpus:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"only {stored} of {gpus} GPUs stored after 120 s")
                        continue
                    first = first or time.monotonic()
                    newest_lags.append(now - top)
                    worst_lags.append(now - bottom)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                _code, rss_kib = wait_rusage(proc)
    finally:
        exporter.shutdown()
        exporter.server_close()
        thread.join()
    return {
        "gpus": stored,
        "lag_p50": statistics.median(newest_lags),
        "lag_max": max(newest_lags),
        "worst_p50": statistics.median(worst_lags),
        "worst_max": max(worst_lags),
        "rss_mib": rss_kib / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--follow-gpus", type=int, default=1000)
    ap.add_argument("--follow-seconds", type=float, default=60.0)
    ap.add_argument("--scrape-interval", type=float, default=2.0)
    ap.add_argument("--step", type=float, default=5.0, help="the follower's query step (s)")
    ap.add_argument("--no-follow", action="store_true")
    ap.add_argument(
        "--small", action="store_true", help="16 GPUs x 1 day, follow 200 GPUs for 20 s"
    )
    args = ap.parse_args()
    if args.small:
        args.gpus, args.days, args.follow_gpus, args.follow_seconds = 16, 1.0, 200, 20.0
    why = ps.available()
    if why:
        raise SystemExit(why)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-prometheus-") as tmp:
        folder = Path(tmp)
        (folder / "backfill").mkdir()
        b = backfill(folder / "backfill", args.gpus, args.days)
        line = (
            f"backfill {args.days:g} d x {args.gpus} GPUs: {b['wall_s']:.1f} s, "
            f"{b['rows']:,.0f} rows ({b['complete']:.0%} of the GPU samples), "
            f"{b['rows_per_s']:,.0f} rows/s vs Writer alone {b['writer_rows_per_s']:,.0f} rows/s "
            f"({b['rows_per_s'] / b['writer_rows_per_s']:.2f}), peak RSS {b['rss_mib']:.0f} MiB"
        )
        if not args.no_follow:
            (folder / "follow").mkdir()
            f = follow(
                folder / "follow",
                args.follow_gpus,
                args.follow_seconds,
                args.scrape_interval,
                args.step,
            )
            line += (
                f"; follow {f['gpus']:.0f} GPUs (scrape {args.scrape_interval:g} s, step "
                f"{args.step:g} s): lag p50 {f['lag_p50']:.1f} s, max {f['lag_max']:.1f} s; "
                f"GPU furthest behind p50 {f['worst_p50']:.1f} s, max {f['worst_max']:.1f} s; "
                f"peak RSS {f['rss_mib']:.0f} MiB"
            )
    print(line)


if __name__ == "__main__":
    main()
