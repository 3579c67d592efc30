"""Calibration of the run prediction (issue 16) on a real sweep of the bundled example.

Runs ``costmeter sweep`` over the digits example (``--epochs`` over a grid, each value
``--repeats`` times with another seed; plain local runs on the CPU, sampled every 0.2 s), then
predicts each finished run *sequentially*, from the runs before it only, exactly as
``costmeter run`` would have before launching it (``costmeter.cost.prediction.predict`` over the
same rows and progress files ``service.run_prediction`` reads). Runs with nothing before them to
predict from are counted apart.

Printed: per run the prediction, its range and the actual cost; then for the runs predicted the
share of actual costs inside the stated range (a 90 % interval) and the median absolute error,
beside the baseline measured on the same runs: the median cost of the family's earlier runs
(what a tool that ignores the parameters would say). Last line: the calibration.

    .venv/bin/python bench/bench_prediction.py [--epochs 10,20,40,80,160,240] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from costmeter.config import Config
from costmeter.cost.prediction import PastRun, Target, predict
from costmeter.service.run_prediction import calibration, step_rate
from costmeter.store.runs import RunStore

DIGITS = [sys.executable, "-m", "costmeter.examples.digits"]


def sweep(db: Path, epochs: str, repeats: int) -> float:
    seeds = ",".join(str(s) for s in range(repeats))
    argv = [
        sys.executable, "-m", "costmeter", "sweep", "--db", str(db), "--interval", "0.2",
        "--name", "digits", "--grid", f"seed={seeds}", "--grid", f"e={epochs}", "--",
        *DIGITS, "--epochs", "{e}", "--seed", "{seed}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=db.parent)
    if out.returncode != 0:
        sys.exit(f"the sweep failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", default="10,20,40,80,160,240", help="the --epochs grid")
    ap.add_argument("--repeats", type=int, default=2, help="seeds per epochs value")
    args = ap.parse_args()
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        wall = sweep(db, args.epochs, args.repeats)
        pricing = Config().pricing()
        with RunStore.open(db) as store:
            prefix = " ".join(["python", "-m", "costmeter.examples.digits", "--epochs"])
            rows = sorted(store.family_runs(prefix, currency=pricing.currency), key=lambda r: r.id)
            past = []
            for r in rows:
                steps, step_s = step_rate(r.run_dir)
                past.append(
                    PastRun(
                        r.command_key, r.duration_s, r.cost, r.gpu_model, r.nproc, steps, step_s
                    )
                )
    print(f"sweep: {len(past)} runs in {wall:.0f} s (epochs {args.epochs}, {args.repeats} seeds)")
    print(
        f"{'run':>4} {'epochs':>6} {'actual':>10} {'predicted':>10} {'low':>10} {'high':>10}  basis"
    )
    fitted, baseline, unpredicted = [], [], 0
    for i, run in enumerate(past):
        pred = predict(Target(run.command_key), past[:i])
        epochs = run.command_key.split("--epochs ")[1].split()[0]
        if not pred.known or pred.low is None or pred.high is None or pred.cost is None:
            unpredicted += 1
            print(f"{i + 1:>4} {epochs:>6} {run.cost:>10.3g} {'-':>10} {'-':>10} {'-':>10}  "
                  f"{pred.basis}")  # fmt: skip
            continue
        fitted.append((run.cost, pred.cost, pred.low, pred.high))
        earlier = [p.cost for p in past[:i]]
        baseline.append((run.cost, statistics.median(earlier), min(earlier), max(earlier)))
        print(f"{i + 1:>4} {epochs:>6} {run.cost:>10.3g} {pred.cost:>10.3g} {pred.low:>10.3g} "
              f"{pred.high:>10.3g}  {pred.basis[:90]}")  # fmt: skip
    cal = calibration(fitted)
    base = calibration(baseline)
    if not cal.runs or cal.inside is None or cal.median_abs_pct is None:
        print("calibration: no run could be predicted")
        return 1
    print(
        f"baseline (median of the family's earlier runs, min..max as range): "
        f"{base.inside:.0%} inside, median error {base.median_abs_pct:.1f} %"
    )
    ratio = (base.median_abs_pct or 0.0) / cal.median_abs_pct if cal.median_abs_pct else 0.0
    print(f"{unpredicted} run(s) had too few runs before them to predict from.")
    print(
        f"prediction calibration: {cal.inside:.0%} of {cal.runs} actual costs inside the stated "
        f"90 % range, median error {cal.median_abs_pct:.1f} % ({ratio:.1f}x smaller than the "
        "baseline's)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
