"""Run every benchmark in bench/ one after the other and print their figures.

Run: .venv/bin/python bench/run_all.py   (or `make bench`); takes several minutes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    ["bench_sampling_overhead.py", "--seconds", "60"],
    ["bench_attribution.py"],
    ["bench_ingest.py"],
    ["bench_attribution_query.py"],
    ["bench_storage.py"],
    ["bench_storage_walk.py"],
    ["bench_history.py"],
    ["bench_history_pan.py"],
    ["bench_history_cost.py"],
    ["bench_gui.py"],
    ["bench_runs.py"],
    ["bench_advice_accuracy.py"],
    ["bench_advise_speed.py"],
    ["bench_compress.py"],
    ["bench_prediction.py"],
    ["bench_scaling.py"],
    ["bench_backfill.py"],
    ["bench_simulate.py", "--hours", "24", "--old-hours", "3"],
    ["bench_remote.py", "--agents", "32", "--gpus", "8", "--seconds", "90", "--warmup", "20"],
    ["bench_agent_hostile.py", "--seconds", "6"],
    # --small: 16 GPUs x 1 day, following 200 (under a minute); without it, the full size
    ["bench_prometheus.py", "--small"],
    # bench_package.py is left out: it builds the bundle and the .deb first (`make package`).
]


def main() -> int:
    failed = 0
    for script, *args in SCRIPTS:
        if not (HERE / script).exists():
            continue
        print(f"\n== {script} {' '.join(args)}", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / script), *args]).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
