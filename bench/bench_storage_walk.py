"""Measuring a run's output folder: the storage watch's walker vs a plain ``os.walk`` + ``lstat``.

Run: .venv/bin/python bench/bench_storage_walk.py [--files 100000] [--per-dir 500] [--repeat 3]
Builds a tree of ``--files`` small files (``--per-dir`` a folder, two levels, like per-step
checkpoint folders), then times in turns, best of ``--repeat``: the baseline (``os.walk`` and an
``os.lstat`` per file, summing sizes), the walker in one pass (``measure_dir``) and the walker
in passes of ``PASS_BUDGET`` entries (what one 30 s pass of a running run costs at most). Both
must agree on bytes and files. The last line is the walker's time as a ratio of the baseline's.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from costmeter.service.storage_watch import PASS_BUDGET, DirWalk, measure_dir


def build(root: Path, files: int, per_dir: int) -> None:
    made = 0
    d = 0
    while made < files:
        folder = root / f"run-{d // 20}" / f"checkpoint-{d}"
        folder.mkdir(parents=True)
        for i in range(min(per_dir, files - made)):
            with open(folder / f"shard-{i}.bin", "wb") as fh:
                fh.write(b"x" * (i % 97))
        made += per_dir
        d += 1


def baseline(root: str) -> tuple[int, int]:
    total = files = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            total += os.lstat(os.path.join(folder, name)).st_size
            files += 1
    return total, files


def walker(root: str) -> tuple[int, int]:
    u = measure_dir(root)
    return u.bytes, u.files


def passes(root: str, budget: int) -> tuple[int, int, int, float]:
    """The walk in passes of ``budget`` entries: (bytes, files, passes, longest pass s)."""
    walk = DirWalk(root)
    n, longest = 0, 0.0
    done = False
    while not done:
        t = time.perf_counter()
        done = walk.step(budget)
        longest = max(longest, time.perf_counter() - t)
        n += 1
    return walk.bytes, walk.files, n, longest


def best(fn: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, tuple[int, int]]:
    times, out = [], (0, 0)
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-dir", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="costmeter-walk-"))
    try:
        t = time.perf_counter()
        build(tmp, args.files, args.per_dir)
        print(f"built {args.files} files in {time.perf_counter() - t:.1f} s under {tmp}")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
        root = str(tmp)
        base_s = walk_s = 0.0
        base_out: tuple[int, int] = (0, 0)
        walk_out: tuple[int, int] = (0, 0)
        for _ in range(args.repeat):  # in turns: the machine's load falls on both alike
            b, base_out = best(lambda: baseline(root), 1)
            w, walk_out = best(lambda: walker(root), 1)
            base_s = b if not base_s else min(base_s, b)
            walk_s = w if not walk_s else min(walk_s, w)
        if base_out != walk_out:
            raise SystemExit(f"the walker disagrees with os.walk: {walk_out} vs {base_out}")
        nbytes, nfiles = walk_out
        print(f"os.walk + lstat (baseline): {base_s:.3f} s for {nfiles} files, {nbytes} bytes")
        print(f"storage walker, one pass:   {walk_s:.3f} s ({nfiles / walk_s:,.0f} files/s)")
        for budget in (PASS_BUDGET, PASS_BUDGET // 10):
            got_bytes, got_files, n, longest = passes(root, budget)
            assert (got_bytes, got_files) == walk_out
            print(f"in passes of {budget} entries: {n} passes, longest {longest:.3f} s")
        print(f"walker / os.walk time ratio: {walk_s / base_s:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
