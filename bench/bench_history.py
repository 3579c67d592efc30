"""History queries: Store.query_series over 7 days of 1 Hz data for 8 GPUs vs a naive raw query.

Run: .venv/bin/python bench/bench_history.py [--days 7] [--devices 8]
The data are written by a direct bulk path (executemany of generated rows, then a rollup
rebuild), which is much faster than building Tick objects; query_series does not care how the
rows got there. The naive baseline SELECTs every raw row in the range and downsamples to
2,000 min/avg/max points in Python.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from costmeter.store import Store
from costmeter.store.database import connect
from costmeter.store.schema import migrate

T0 = 1_699_999_200  # a whole hour
INSERT = "INSERT INTO device_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"


def generate(db: Path, days: float, devices: int) -> None:
    conn = connect(db)
    migrate(conn, str(db))
    conn.execute("INSERT INTO hosts (id, hostname, cpu_count) VALUES (1, 'bench', 16)")
    conn.executemany(
        "INSERT INTO devices (id, host_id, idx, uuid, name, unsupported)"
        " VALUES (?, 1, ?, ?, ?, '[]')",
        [(i + 1, i, f"GPU-bench-{i}", "NVIDIA H100") for i in range(devices)],
    )
    rng = random.Random(0)
    noise = [rng.randint(-4, 4) for _ in range(4099)]
    seconds = int(days * 86400)
    chunk = 3600
    for start in range(0, seconds, chunk):
        rows = []
        for dev in range(1, devices + 1):
            busy = ((start // 5400) + dev) % 3 != 0
            base = 90 if busy else 1
            for k in range(start, min(start + chunk, seconds)):
                n = noise[(k * 7 + dev * 131) % 4099]
                util = max(0, min(100, base + n))
                power = 62_000 + util * 3_100 + n * 500
                rows.append(
                    (
                        dev,
                        (T0 + k) * 1000,
                        1000,
                        util,
                        util // 2,
                        (40 if busy else 1) * 2**30 + n * 2**20,
                        power,
                        power,
                        1,
                        34 + util * 2 // 5,
                        1410 if busy else 210,
                        1593,
                    )
                )
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
    conn.close()
    with Store.open(db) as store:
        store.rebuild_rollups()


def naive(conn: sqlite3.Connection, device: int, start: float, end: float, points: int) -> int:
    rows = conn.execute(
        "SELECT ts, power_mw FROM device_samples WHERE device_id = ? AND ts >= ? AND ts < ?",
        (device, int(start * 1000), int(end * 1000)),
    ).fetchall()
    width = (end - start) * 1000 / points
    buckets: dict[int, list[float]] = {}
    s_ms = start * 1000
    for ts, v in rows:
        b = int((ts - s_ms) // width)
        acc = buckets.get(b)
        if acc is None:
            buckets[b] = [v, v, v, 1]
        else:
            acc[0] = min(acc[0], v)
            acc[1] = max(acc[1], v)
            acc[2] += v
            acc[3] += 1
    return len(buckets)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "history.db"
        t = time.perf_counter()
        generate(db, args.days, args.devices)
        rows = int(args.days * 86400) * args.devices
        print(
            f"generated {args.days:g} days x {args.devices} GPUs = {rows:,} raw rows + rollups "
            f"in {time.perf_counter() - t:.1f} s; file {db.stat().st_size / 1e6:.0f} MB"
        )
        end = T0 + args.days * 86400
        ranges = [
            ("last 1 h", end - 3600, end),
            ("last 30 min", end - 1800, end),
            ("37 min, odd start", T0 + 86400 + 1234.5, T0 + 86400 + 1234.5 + 37 * 60),
            ("last 1 day", end - 86400, end),
            ("2.5 days, odd start", T0 + 4321.7, T0 + 4321.7 + 2.5 * 86400),
            (f"all {args.days:g} days", T0, end),
            ("10 days (beyond data)", end - 10 * 86400, end),
        ]
        store = Store.open(db)
        conn = sqlite3.connect(db)
        print(
            f"\n{'range':24s} {'res':>4s} {'points':>6s} {'query_series':>13s}"
            f" {'naive raw':>10s} {'ratio':>7s}"
        )
        for label, a, b in ranges:
            devs = iter(range(10**9))

            def q(a=a, b=b, devs=devs):
                return store.query_series(next(devs) % args.devices + 1, "power_w", a, b, 2000)

            s = q()
            fast = timed(q, args.repeats)
            slow = timed(lambda a=a, b=b: naive(conn, 1, a, b, 2000), max(3, args.repeats // 5))
            print(
                f"{label:24s} {s.resolution:>4s} {len(s):6d} {fast:10.2f} ms {slow:7.1f} ms "
                f"{slow / fast:6.0f}x"
            )
        conn.close()
        store.close()
    print(
        "\nmedian milliseconds per query of 2,000 points (target <= 50 ms); naive = SELECT every "
        "raw row in range, downsample in Python"
    )


if __name__ == "__main__":
    main()
