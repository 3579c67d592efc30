"""Samples per second through the Writer vs raw sqlite3 executemany of the same rows.

Run: .venv/bin/python bench/bench_ingest.py [--ticks N] [--devices 8]
The Writer figure includes turning Tick objects into rows, the rollups and the device records;
the raw figure inserts the very same rows, prebuilt in their stored form (outside the timing), into
the same table definitions in one transaction, without rollups; the "raw + rollup SQL" figure adds
the rollup SQL for the same buckets to it.
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
from costmeter.store import Writer
from costmeter.store.database import connect
from costmeter.store.rollup import update_rollups
from costmeter.store.rows import Batch, Registry, add_tick
from costmeter.store.schema import migrate
from costmeter.store.testing import device_infos, host_info, realistic_ticks

T0 = 1_700_000_000.0


def machine() -> str:
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}"
    )


def bench_writer(path: Path, ticks: list, devices: int) -> tuple[float, int]:
    w = Writer(path, clock=SimulatedClock(T0), flush_interval=1.0)
    w.start()
    w.register(host_info("bench"), device_infos("bench", devices))
    w.flush()
    t = time.perf_counter()
    for tick in ticks:
        w.submit(tick, wait=True)
    w.flush()
    elapsed = time.perf_counter() - t
    rows = w.stats.rows_written
    w.stop()
    return elapsed, rows


PLAIN_DEVICE_INSERT = "INSERT INTO device_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
PLAIN_HOST_INSERT = "INSERT INTO host_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


def bench_raw(path: Path, ticks: list) -> tuple[float, float, int]:
    conn = connect(path)
    migrate(conn, str(path))
    conn.execute("BEGIN")
    batch = Batch()
    reg = Registry(conn)
    for tick in ticks:
        add_tick(batch, reg, tick)
    conn.execute("COMMIT")
    # The rows exactly as the writer stores them (integer units), prebuilt outside the timing.
    device_rows = list(batch.device_rows)
    host_rows = list(batch.host_rows)
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(PLAIN_DEVICE_INSERT, device_rows)
    conn.executemany(PLAIN_HOST_INSERT, host_rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    # The floor for any writer that keeps rollups: the same inserts plus the rollup SQL.
    t = time.perf_counter()
    conn.execute("BEGIN")
    update_rollups(conn, "device", batch.ms_spans(batch.device_spans))
    update_rollups(conn, "host", batch.ms_spans(batch.host_spans), cpu_counts=reg.cpu_counts())
    conn.execute("COMMIT")
    rollup_s = time.perf_counter() - t
    conn.close()
    return elapsed, rollup_s, len(batch.device_rows) + len(batch.host_rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=30_000)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"generating {args.ticks} ticks of {args.devices} GPUs + host ...", flush=True)
    ticks = list(realistic_ticks(T0, args.ticks, args.devices, host="bench"))
    best_w = best_r = best_rr = 0.0
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.repeats):
            tw, rows_w = bench_writer(Path(d) / f"w{i}.db", ticks, args.devices)
            tr, troll, rows_r = bench_raw(Path(d) / f"r{i}.db", ticks)
            assert rows_w == rows_r, (rows_w, rows_r)
            rw, rr, rrr = rows_w / tw, rows_r / tr, rows_r / (tr + troll)
            print(
                f"  run {i + 1}: writer {rw:,.0f} rows/s ({tw:.2f} s), raw {rr:,.0f} rows/s "
                f"({tr:.2f} s), raw + rollup SQL {rrr:,.0f} rows/s ({tr + troll:.2f} s)"
            )
            best_w, best_r, best_rr = max(best_w, rw), max(best_r, rr), max(best_rr, rrr)
    print(
        f"rows per run: {rows_w:,} ({args.ticks:,} ticks x ({args.devices} GPU rows + 1 host row))"
    )
    print(
        "raw baselines: the same stored-form rows prebuilt outside the timing, one transaction;"
        " 'raw' excludes rollups, 'raw + rollup SQL' includes them"
    )
    print(f"Writer (submit + flush, incl. rollups): {best_w:,.0f} samples/s")
    print(f"raw executemany, one transaction:       {best_r:,.0f} samples/s")
    print(f"raw executemany + the same rollup SQL:  {best_rr:,.0f} samples/s")
    print(
        f"ratio writer/raw: {best_w / best_r:.2f} (target >= 0.6); "
        f"writer/(raw + rollups): {best_w / best_rr:.2f}"
    )


if __name__ == "__main__":
    main()
