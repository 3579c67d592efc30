"""How long ``advise`` takes on two histories of the sizes the targets name.

Run: .venv/bin/python bench/bench_advise_speed.py [--cache /tmp/costmeter-bench-advise] [--repeat 3]

1. 24 h of 8 simulated GPUs sampled every second, written by ``costmeter simulate`` (the
   project's own sampler -> store path; about a minute to build), then ``costmeter advise
   --since 24h`` run as a user runs it (a new process: wall time, start-up included), and
   ``advise()`` in this process.
2. 137 GPUs x 23 h at 60 s, the size of the public GenAI serving trace (each pod a host with
   one GPU, utilisation and memory only, as the trace has), written by
   ``service.advice_trace.write_store`` from generated pods: idle, bursty and steady replicas.
   ``advise()`` over the whole history, in this process.

Both databases are cached under ``--cache`` (built once; delete the folder to rebuild).
Each figure is the median of ``--repeat`` runs. Last line:
``advise 24h x 8 GPUs: X s; 137 GPUs x 23 h: Y s`` (X is the CLI's wall time).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from costmeter.config import Config
from costmeter.service.advice import advise
from costmeter.service.advice_trace import GIB, Pod, write_store
from costmeter.store import Store

PODS = 137
TRACE_HOURS = 23
TRACE_STEP_S = 60.0
#: The trace's timestamps start at 0 (anonymised); any fixed start will do.
TRACE_T0 = 1_700_000_000.0


def _pod(key: str, kind: str, rng: random.Random) -> Pod:
    n = int(TRACE_HOURS * 3600 / TRACE_STEP_S)
    util: list[tuple[float, float]] = []
    mem: list[tuple[float, int]] = []
    held = rng.uniform(4, 40) * GIB
    busy = False
    left = 0
    for i in range(n):
        ts = TRACE_T0 + i * TRACE_STEP_S
        if kind == "idle":
            u = 0.0
        elif kind == "steady":
            u = rng.uniform(55, 95)
        else:  # bursty: busy phases of a few minutes between pauses of 1 to 40 minutes
            if left <= 0:
                busy = not busy
                left = rng.randint(2, 15) if busy else rng.randint(1, 40)
            left -= 1
            u = rng.uniform(60, 99) if busy else 0.0
        util.append((ts, round(u, 1)))
        mem.append((ts, int(held * rng.uniform(0.98, 1.02))))
    return Pod(key, tuple(util), tuple(mem))


def trace_pods(seed: int = 0) -> list[Pod]:
    """``PODS`` generated replicas: a quarter idle, half bursty, a quarter steady."""
    rng = random.Random(seed)
    kinds = ["idle"] * (PODS // 4) + ["steady"] * (PODS // 4)
    kinds += ["bursty"] * (PODS - len(kinds))
    return [_pod(f"{i:04d}{'ab' * 8}", kind, rng) for i, kind in enumerate(kinds)]


def costmeter(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "costmeter", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def _fresh(db: Path) -> bool:
    """Whether ``db`` must be built: a build that did not finish leaves no ``.complete`` mark
    (and is removed, with its -wal and -shm, before building again)."""
    if Path(f"{db}.complete").exists():
        return False
    for side in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        side.unlink(missing_ok=True)
    return True


def build(cache: Path) -> tuple[Path, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    sim, trace = cache / "sim-24h-8gpu-1s.db", cache / "trace-137x23h-60s.db"
    if _fresh(sim):
        t0 = time.perf_counter()
        costmeter("simulate", "--hours", "24", "--interval", "1", "--simulate", "8",
                  "--db", str(sim))  # fmt: skip
        Path(f"{sim}.complete").touch()
        print(f"built {sim} in {time.perf_counter() - t0:.0f} s", flush=True)
    if _fresh(trace):
        t0 = time.perf_counter()
        write_store(trace_pods(), trace)
        Path(f"{trace}.complete").touch()
        print(f"built {trace} in {time.perf_counter() - t0:.0f} s", flush=True)
    return sim, trace


def timed_advise(db: Path, since_s: float, end: float) -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``advise()``, and the recommendations found."""
    with Store.open(db, create=False) as store:
        t0, c0 = time.perf_counter(), time.process_time()
        res = advise(store, Config(), since_s=since_s, now=end)
        return time.perf_counter() - t0, time.process_time() - c0, len(res.recommendations)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/costmeter-bench-advise"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sim, trace = build(args.cache)
    with Store.open(sim, create=False) as store:
        span = store.time_range()
    assert span is not None
    cli, cli_cpu, inproc = [], [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), _children_cpu()
        # --since covers the history, however long ago it was built.
        since = f"{int(time.time() - span[1] + 86_400) + 1}s"
        costmeter("advise", "--db", str(sim), "--since", since, "--format", "json")
        cli.append(time.perf_counter() - t0)
        cli_cpu.append(_children_cpu() - c0)
        inproc.append(timed_advise(sim, 86_400.0, span[1] + 1)[0])
    with Store.open(trace, create=False) as store:
        tspan = store.time_range()
    assert tspan is not None
    big, big_cpu = [], []
    found = 0
    for _ in range(args.repeat):
        took, cpu, found = timed_advise(trace, tspan[1] - tspan[0] + 60, tspan[1] + 1)
        big.append(took)
        big_cpu.append(cpu)
    x, y = statistics.median(cli), statistics.median(big)
    print(
        f"24h x 8 GPUs at 1 s: CLI wall {x:.2f} s (CPU {statistics.median(cli_cpu):.2f} s),"
        f" advise() in process {statistics.median(inproc):.2f} s"
    )
    print(
        f"137 GPUs x 23 h at 60 s: advise() {y:.2f} s (CPU {statistics.median(big_cpu):.2f} s),"
        f" {found} recommendations"
    )
    print(f"advise 24h x 8 GPUs: {x:.2f} s; 137 GPUs x 23 h: {y:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
