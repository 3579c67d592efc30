"""Bytes on disk per GPU-day at 1 Hz, raw rows plus rollups (target <= 8 MB).

Run: .venv/bin/python bench/bench_storage.py [--hours 24] [--devices 2]
Writes realistic 1 Hz data (jobs starting and stopping, noisy values) through the Writer, then
reports the file size as written (after a WAL checkpoint) and after VACUUM.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from costmeter.core.clock import SimulatedClock
from costmeter.store import RetentionPolicy, Writer
from costmeter.store.testing import device_infos, host_info, realistic_ticks

T0 = 1_699_999_200.0
MB = 1_000_000


def table_sizes(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:
        return {}  # SQLite built without the dbstat table
    finally:
        conn.close()
    return dict(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--devices", type=int, default=2)
    args = ap.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    seconds = int(args.hours * 3600)
    gpu_days = args.devices * seconds / 86400
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "storage.db"
        keep = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)
        w = Writer(db, clock=SimulatedClock(T0), retention=keep)
        w.start()
        w.register(host_info("bench"), device_infos("bench", args.devices))
        t = time.perf_counter()
        for tick in realistic_ticks(T0, seconds, args.devices, host="bench"):
            w.submit(tick, wait=True)
        w.flush()
        w.stop()
        print(
            f"wrote {seconds:,} ticks x {args.devices} GPUs + host"
            f" in {time.perf_counter() - t:.1f} s"
        )
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        as_written = db.stat().st_size
        sizes = table_sizes(db)
        conn = sqlite3.connect(db)
        conn.execute("VACUUM")
        conn.close()
        vacuumed = db.stat().st_size
        sizes_v = table_sizes(db)
    print(f"GPU-days: {gpu_days:g} ({args.devices} GPUs x {args.hours:g} h at 1 Hz)")
    print(
        f"file as written:  {as_written / MB:6.2f} MB ->"
        f" {as_written / gpu_days / MB:.2f} MB per GPU-day"
    )
    print(
        f"file after VACUUM: {vacuumed / MB:6.2f} MB ->"
        f" {vacuumed / gpu_days / MB:.2f} MB per GPU-day"
        " (target <= 8 MB; includes the host's rows)"
    )
    if sizes_v:
        report_shares(sizes, sizes_v, args.devices, args.hours)


def _split(sizes: dict[str, int]) -> tuple[int, int, int]:
    """(GPU tables, host tables, everything else: records, schema) in bytes."""
    gpu = sum(v for k, v in sizes.items() if k.startswith(("device_", "gpu_process_")))
    host = sum(v for k, v in sizes.items() if k.startswith(("host_", "process_samples")))
    return gpu, host, sum(sizes.values()) - gpu - host


def report_shares(
    sizes: dict[str, int], sizes_v: dict[str, int], devices: int, hours: float
) -> None:
    gpu_days = devices * hours / 24
    host_days = hours / 24
    gpu_w, host_w, _ = _split(sizes)
    gpu, host, other = _split(sizes_v)
    print(
        f"GPU tables only:  {gpu_w / gpu_days / MB:.2f} MB per GPU-day as written, "
        f"{gpu / gpu_days / MB:.2f} after VACUUM"
    )
    print(
        f"host tables only: {host_w / host_days / MB:.2f} MB per host-day as written, "
        f"{host / host_days / MB:.2f} after VACUUM (other: {other / MB:.2f} MB per file)"
    )
    for per_host in sorted({2, 8, devices}):
        share = (host + other) / host_days / per_host
        print(
            f"with the host's share at {per_host} GPUs per host: "
            f"{(gpu / gpu_days + share) / MB:.2f} MB per GPU-day after VACUUM (target <= 8 MB)"
        )
    for name, size in sorted(sizes_v.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:24s} {size / MB:7.2f} MB (as written {sizes.get(name, 0) / MB:.2f})")


if __name__ == "__main__":
    main()
