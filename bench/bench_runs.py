"""Scheduling overhead of the run queue: N no-op runs (``/bin/true``), K at a time.

Three ways, one after the other in the same process, on the same machine:

- ``bare``: N ``subprocess.Popen(["/bin/true"]).wait()`` on K threads: the cost of starting and
  reaping a process, which no scheduler can avoid (the baseline);
- ``queue``: the same N runs through ``RunQueue`` and the ``local`` backend (a process group, an
  output file and a reaper thread per run), each asking for one GPU of K simulated ones, one run
  per GPU: placement, polling and events included;
- ``service`` (unless ``--no-service``): through ``RunService`` too, so every run is also a
  database row (inserted, updated at start and end) and priced when it ends; no monitor.

Scheduling overhead per run = (wall_x - wall_bare) x K / N: how much longer each of the K slots
was busy per run than with bare Popen+wait. Beside it: the CPU time this process spent per run
from the first submit to the end (opening the database and the imports before are left out;
what the overhead is made of; on a machine with fewer cores than K the slots wait for CPU, so
the slot overhead there is about K / cores times it), and from the runs themselves start latency
(submit to the backend's start time) and end-detection latency (the backend's end time to the
queue noticing it). Target: at most 20 ms per run.

The machine is noisy, so the three ways are measured ``--rounds`` times (bare again before each
round) and the last line gives the median overhead per run of each: ``RunService overhead per
run: X ms (queue alone: Y ms)``.

``--against APP`` measures other code beside this one (``APP``: the ``app`` folder of a ``git
archive`` of an earlier commit): each round runs this file once on each code, in a child process
(``PYTHONPATH=APP`` for the other), in alternating order, with the load average beside each;
the last line then gives both medians.

    .venv/bin/python bench/bench_runs.py [--runs 200] [--parallel 8] [--rounds 3] [--against APP]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import costmeter
from costmeter.config import Config
from costmeter.plugin_api import BackendConfig, RunSpec, RunState
from costmeter.runs.events import RunInfo
from costmeter.runs.local import LocalBackend
from costmeter.runs.queue import RunQueue
from costmeter.service.runs import RunService, RunServiceOptions

TRUE = "/bin/true"


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare(n: int, k: int) -> float:
    def one(_: int) -> int:
        return subprocess.Popen([TRUE]).wait()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        codes = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    assert codes == [0] * n
    return wall


def through_queue(n: int, k: int, root: Path) -> tuple[float, float, list[RunInfo], RunQueue]:
    """Wall and CPU seconds from the first submit to the last run's end, the runs, the queue."""
    backend = LocalBackend(BackendConfig(state_dir=root))
    queue = RunQueue(backend, max_parallel=k, gpu_count=k, per_gpu=1)
    t0, c0 = time.perf_counter(), self_cpu()
    for i in range(n):
        queue.submit(RunSpec(argv=(TRUE,), gpus=1), run_dir=root / f"q{i}")
    assert queue.wait(300)
    wall, cpu = time.perf_counter() - t0, self_cpu() - c0
    return wall, cpu, queue.runs(), queue


def through_service(n: int, k: int, root: Path) -> tuple[float, float, list[RunInfo], RunQueue]:
    """As ``through_queue``, to the last run priced; opening the database is not counted."""
    backend = LocalBackend(BackendConfig(state_dir=root))
    service = RunService(
        backend,
        RunServiceOptions(
            db_path=root / "bench.db",
            pricing=Config().pricing(),
            runs_dir=root / "runs",
            gpu_count=k,
            max_parallel=k,
        ),
    )
    t0, c0 = time.perf_counter(), self_cpu()
    for _ in range(n):
        service.submit(RunSpec(argv=(TRUE,), gpus=1))
    assert service.wait(300)
    wall, cpu = time.perf_counter() - t0, self_cpu() - c0
    runs = service.queue.runs()
    service.close()
    return wall, cpu, runs, service.queue


def report(
    name: str, wall: float, cpu: float, runs: list[RunInfo], queue: RunQueue, base: float
) -> float:
    """Prints the figures of one way; returns its overhead per run (seconds)."""
    n, k = len(runs), queue.max_parallel
    bad = [r for r in runs if r.state != RunState.SUCCEEDED]
    assert not bad, bad[0].message
    start = [r.started - r.submitted_at for r in runs if r.started and r.submitted_at]
    end = [r.detected_at - r.ended for r in runs if r.detected_at and r.ended]
    durations = sum((r.ended or 0) - (r.started or 0) for r in runs)
    overhead = (wall - base) * k / n
    print(
        f"{name:8s} wall {wall:6.2f} s  {n / wall:6.1f} runs/s  "
        f"overhead vs bare {overhead * 1000:6.1f} ms/run  "
        f"slot time not running {(k * wall - durations) / n * 1000:6.1f} ms/run  "
        f"CPU {cpu / n * 1000:.2f} ms/run"
    )
    print(
        f"{'':8s} start latency {_ms(start)}; end detection {_ms(end)}; "
        f"at most {queue.max_parallel_seen} at once, {queue.pool.max_runs_per_gpu} per GPU"
    )
    return overhead


def _ms(values: list[float]) -> str:
    p95 = sorted(values)[int(len(values) * 0.95)]
    return f"median {statistics.median(values) * 1000:.1f} ms (p95 {p95 * 1000:.1f})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", metavar="APP", help="other code to alternate rounds with")
    args = parser.parse_args()
    n, k = args.runs, args.parallel
    rounds = max(1, args.rounds)
    if args.against:
        return against(args.against, n, k, rounds)
    print(
        f"{n} runs of {TRUE}, {k} at a time; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}; costmeter from {costmeter.__file__}"
    )
    bare(20, k)  # warm up: page cache, thread pool
    overheads: dict[str, list[float]] = {"queue": [], "service": []}
    with tempfile.TemporaryDirectory(prefix="costmeter-bench-runs-") as tmp:
        for round_no in range(rounds):
            root = Path(tmp) / f"round{round_no}"
            c0 = self_cpu()
            base = bare(n, k)
            print(
                f"{'bare':8s} wall {base:6.2f} s  {n / base:6.1f} runs/s  "
                f"({base * k / n * 1000:.1f} ms of slot time per run)  "
                f"CPU {(self_cpu() - c0) / n * 1000:.2f} ms/run"
            )
            wall, cpu, runs, queue = through_queue(n, k, root / "q")
            overheads["queue"].append(report("queue", wall, cpu, runs, queue, base))
            if not args.no_service:
                wall, cpu, runs, queue = through_service(n, k, root / "s")
                overheads["service"].append(report("service", wall, cpu, runs, queue, base))
    queue_ms = statistics.median(overheads["queue"]) * 1000
    if args.no_service:
        print(f"RunQueue overhead per run: {queue_ms:.1f} ms (median of {rounds})")
    else:
        service_ms = statistics.median(overheads["service"]) * 1000
        print(
            f"RunService overhead per run: {service_ms:.1f} ms "
            f"(queue alone: {queue_ms:.1f} ms; median of {rounds} rounds)"
        )
    return 0


_LAST = re.compile(r"RunService overhead per run: ([\d.]+) ms \(queue alone: ([\d.]+) ms")
_CPU = re.compile(r"^service .* CPU ([\d.]+) ms/run", re.MULTILINE)


def against(app: str, n: int, k: int, rounds: int) -> int:
    """Rounds alternated between ``app`` ("before") and this code ("now"), each in a child."""
    print(f"{n} runs of {TRUE}, {k} at a time, {rounds} rounds; before: {app}")
    figures: dict[str, list[tuple[float, float, float]]] = {"before": [], "now": []}
    for round_no in range(rounds):
        order = ["before", "now"] if round_no % 2 == 0 else ["now", "before"]
        for label in order:
            env = dict(os.environ)
            if label == "before":
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [app, env.get("PYTHONPATH")]))
            load = os.getloadavg()[0]
            argv = [sys.executable, __file__, "--runs", str(n), "--parallel", str(k)]
            out = subprocess.run(
                [*argv, "--rounds", "1"], env=env, capture_output=True, text=True, check=True
            ).stdout
            last, cpu = _LAST.search(out), _CPU.search(out)
            assert last is not None and cpu is not None, out
            service, queue, service_cpu = float(last[1]), float(last[2]), float(cpu[1])
            figures[label].append((service, queue, service_cpu))
            print(
                f"round {round_no + 1} {label:6s} load {load:4.2f}: service {service:5.1f} ms, "
                f"queue alone {queue:5.1f} ms, service CPU {service_cpu:.2f} ms/run"
            )

    def med(label: str, i: int) -> float:
        return statistics.median(f[i] for f in figures[label])

    print(
        f"RunService overhead per run: {med('now', 0):.1f} ms (queue alone: {med('now', 1):.1f}"
        f" ms; before: {med('before', 0):.1f} ms, queue alone {med('before', 1):.1f} ms;"
        f" median of {rounds} alternated rounds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
