"""The packaged installer's figures: bundle size, .deb size, and startup time from the bundle
beside the source install (.venv/bin/costmeter).

Timed, N runs each, median (and min) in seconds, one after the other on the same machine:

- ``--version``: argument parsing only (the CLI imports nothing else for it);
- ``record --simulate 2 --duration 1``: a real one-second recording into a fresh SQLite file,
  so about 1 s of it is the recording itself and the rest is start-up and shut-down;
- ``gui first paint``: ``gui --simulate 2`` offscreen, seconds from process start to the first
  painted frame (COSTMETER_STARTUP_PROBE, as in bench_gui.py).

    .venv/bin/python bench/bench_package.py [--runs 7] [--dist-dir dist] [--build]

Without a bundle in --dist-dir (or with --build) it first runs packaging/build.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tree_mb(path: Path) -> float:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def env() -> dict[str, str]:
    e = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    e.pop("COSTMETER_STARTUP_PROBE", None)
    return e


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=300, env=env())
    return time.perf_counter() - t0


def first_paint(program: str, tmp: Path, i: int) -> float:
    argv = [program, "gui", "--simulate", "2", "--quit-after", "4"]
    argv += ["--db", str(tmp / f"gui{i}.db"), "--settings", str(tmp / f"gui{i}.ini")]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(env(), COSTMETER_STARTUP_PROBE="1"),
        check=True,
    )
    m = re.search(r"first-paint-s ([0-9.]+)", done.stdout)
    if m is None:
        raise SystemExit(f"no first-paint-s line from {program}: {done.stdout}{done.stderr}")
    return float(m.group(1))


def measure(program: str, runs: int, tmp: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"--version": [], "record 1 s": [], "gui first paint": []}
    wall([program, "--version"])  # warm the page cache first
    for i in range(runs):
        out["--version"].append(wall([program, "--version"]))
        db = tmp / f"rec{i}.db"
        rec = [program, "record", "--simulate", "2", "--duration", "1", "--db", str(db)]
        out["record 1 s"].append(wall(rec))
        out["gui first paint"].append(first_paint(program, tmp, i))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dist-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--build", action="store_true", help="build the bundle and .deb first")
    args = parser.parse_args()
    bundle = args.dist_dir / "costmeter"
    if args.build or not bundle.is_dir():
        t0 = time.perf_counter()
        build = [sys.executable, str(ROOT / "packaging" / "build.py")]
        subprocess.run([*build, "--dist-dir", str(args.dist_dir)], check=True)
        print(f"build (bundle + .deb): {time.perf_counter() - t0:.0f} s")
    source = ROOT / ".venv" / "bin" / "costmeter"
    programs = {"bundle": str(bundle / "costmeter"), "source": str(source)}

    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {python}")
    print(f"bundle {bundle}: {tree_mb(bundle):.0f} MB")
    for deb in sorted(args.dist_dir.glob("costmeter_*.deb")):
        print(f"deb    {deb.name}: {deb.stat().st_size / 1e6:.0f} MB")

    with tempfile.TemporaryDirectory(prefix="bench-package-") as tmp_name:
        tmp = Path(tmp_name)
        results = {name: measure(prog, args.runs, tmp) for name, prog in programs.items()}
    print(f"\nstart-up, {args.runs} runs each: median (min) seconds")
    print(f"{'':18} {'bundle':>15} {'source':>15} {'bundle/source':>14}")
    for what in results["bundle"]:
        b, s = results["bundle"][what], results["source"][what]
        mb, ms = statistics.median(b), statistics.median(s)
        print(f"{what:18} {mb:8.3f} ({min(b):.3f}) {ms:8.3f} ({min(s):.3f}) {mb / ms:13.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
