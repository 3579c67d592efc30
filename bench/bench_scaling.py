"""Data-parallel scaling (issue 16) of the bundled DDP example over N = 1, 2 on this machine.

Runs ``costmeter sweep --grid n=1,2 --nproc-per-node {n}`` over
``python -m costmeter.examples.digits_ddp`` (``--repeats`` seeds per N; processes on the CPU,
gloo between ranks, sampled every 0.2 s), then prints the sweep's own scaling table: per N the
median duration, speed-up vs N = 1 (the baseline, measured in the same sweep), cost and cost per
epoch. N = 1 runs the script alone; N = 2 goes through torchrun, whose start-up (importing torch
in the launcher, the rendezvous) is part of what N = 2 costs. Last line: N = 2 against N = 1.

    .venv/bin/python bench/bench_scaling.py [--epochs 20] [--hidden 512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    seeds = ",".join(str(s) for s in range(args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "scaling.db"
        argv = [
            sys.executable, "-m", "costmeter", "sweep", "--db", str(db), "--interval", "0.2",
            "--name", "ddp", "--grid", f"seed={seeds}", "--grid", "n=1,2",
            "--nproc-per-node", "{n}", "--",
            sys.executable, "-m", "costmeter.examples.digits_ddp", "--epochs",
            str(args.epochs), "--hidden", str(args.hidden), "--seed", "{seed}",
        ]  # fmt: skip
        t0 = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"the sweep failed:\n{out.stderr[-2000:]}")
    table = out.stdout[out.stdout.index("Scaling over") :].strip()
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch on the CPU (gloo); "
        f"{args.repeats} runs per N of {args.epochs} epochs, hidden {args.hidden}; "
        f"sweep wall time {wall:.0f} s"
    )
    print(table)
    two = re.search(r"^2 +\d+ +[\d.]+ s +([\d.]+)x .* ([\d.]+)x$", table, re.M)
    if two is None:
        sys.exit("no N = 2 row in the scaling table")
    print(f"N=2 vs N=1: speed-up {two[1]}x, cost per epoch {two[2]}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
