"""One recorder pulling many agents: does it keep up, and what does it cost?

Run: .venv/bin/python bench/bench_remote.py [--agents 32] [--gpus 8] [--seconds 90] [--per-host]
Starts N real `costmeter agent --simulate G --interval 1` processes on 127.0.0.1 (port 0), then
one in-process RemoteCollector writing through a real Writer into a fresh SQLite file (what
`costmeter record --no-local --remote ...` runs). After a warm-up it measures for --seconds:
- lag per host (now - newest sample written), sampled every 0.5 s, in intervals: p50/p95/max;
- ticks written against what the agents sampled (N x seconds / interval);
- the recorder process's CPU (psutil cpu_times: collector threads + writer), and the agents' CPU.
Target: lag under 2 intervals for every host. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from costmeter.config import RemoteHostConfig
from costmeter.core.clock import SystemClock
from costmeter.service.remote import RemoteCollector
from costmeter.store import Writer

PREFIX = "costmeter agent listening on "


def start_agents(
    n: int, gpus: int, interval: float, folder: Path
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    procs = []
    for i in range(n):
        cmd = [
            sys.executable, "-m", "costmeter", "agent", "--listen", "127.0.0.1:0",
            "--simulate", str(gpus), "--interval", str(interval), "--name", f"agent-{i:02d}",
            "--db", str(folder / f"agent-{i:02d}.db"), "--seed", str(i),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        )
    out = []
    deadline = time.monotonic() + 60 + 3 * n
    for proc in procs:
        assert proc.stdout is not None
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise SystemExit("an agent did not start in time")
                chunk = os.read(proc.stdout.fileno(), 1)
                if not chunk:
                    raise SystemExit(f"an agent exited early ({proc.poll()})")
                line += chunk
        text = line.decode().strip()
        assert text.startswith(PREFIX), text
        out.append((text[len(PREFIX) :], proc))
    return out


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=32)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--per-host", action="store_true", help="print each host's lag too")
    args = ap.parse_args()
    print(f"load before start: {os.getloadavg()}; {psutil.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        folder = Path(tmp)
        t0 = time.monotonic()
        agents = start_agents(args.agents, args.gpus, args.interval, folder)
        print(f"{len(agents)} agents up in {time.monotonic() - t0:.1f} s", flush=True)
        writer = Writer(folder / "recorder.db", clock=SystemClock())
        writer.start()
        hosts = [RemoteHostConfig(name="", url=url) for url, _ in agents]
        collector = RemoteCollector(
            writer, hosts, interval_s=args.interval, cpu_tdp_w=65.0, store_path=writer.path
        )
        me = psutil.Process()
        agent_ps = [psutil.Process(p.pid) for _, p in agents]
        try:
            collector.start()
            time.sleep(args.warmup)
            lags: dict[str, list[float]] = {}
            start_cpu, start_agents_cpu = cpu_s([me]), cpu_s(agent_ps)
            start_ticks = writer.stats.ticks_written
            started = time.monotonic()
            while time.monotonic() - started < args.seconds:
                for s in collector.statuses():
                    if s.lag_s is not None:
                        lags.setdefault(s.name, []).append(s.lag_s / args.interval)
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            cpu = cpu_s([me]) - start_cpu
            agents_cpu = cpu_s(agent_ps) - start_agents_cpu
            ticks = writer.stats.ticks_written - start_ticks
            states = [s.state for s in collector.statuses()]
        finally:
            collector.stop()
            writer.stop()
            for _, proc in agents:
                proc.send_signal(signal.SIGTERM)
            for _, proc in agents:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
    everything = [v for vals in lags.values() for v in vals]
    worst = max(lags, key=lambda h: max(lags[h])) if lags else "-"
    expected = args.agents * elapsed / args.interval
    rows = [
        ("agents x simulated GPUs", f"{args.agents} x {args.gpus} at {1 / args.interval:g} Hz"),
        ("measured", f"{elapsed:.0f} s after a {args.warmup:g} s warm-up"),
        ("hosts connected at the end", f"{states.count('connected')}/{len(states)}"),
        ("lag p50 / p95 / max (intervals)",
         f"{pct(everything, 0.5):.2f} / {pct(everything, 0.95):.2f} / {max(everything):.2f}"),
        ("worst host (max lag)", f"{worst}: {max(lags.get(worst, [0])):.2f}"),
        ("hosts whose lag reached 2 intervals",
         str(sum(1 for v in lags.values() if max(v) >= 2.0))),
        ("ticks written / sampled", f"{ticks} / {expected:.0f} ({100 * ticks / expected:.1f}%)"),
        ("recorder CPU (collector + writer)",
         f"{cpu:.1f} s = {100 * cpu / elapsed:.1f}% of one core"),
        ("agents' CPU (all together)",
         f"{agents_cpu:.1f} s = {100 * agents_cpu / elapsed:.1f}% of one core"),
        ("load average after", " ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.per_host:
        print("\nlag per host, in intervals (p50 / p95 / max):")
        for host in sorted(lags):
            v = lags[host]
            print(f"  {host}  {pct(v, 0.5):.2f} / {pct(v, 0.95):.2f} / {max(v):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
