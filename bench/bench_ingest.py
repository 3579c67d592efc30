"""Samples per second through the Writer vs raw sqlite3 executemany of the same rows.

Run: .venv/bin/python bench/bench_ingest.py [--ticks N] [--devices 8] [--processes]
The Writer figure includes turning Tick objects into rows, the rollups and the device records;
the raw figure inserts the very same rows, prebuilt in their stored form (outside the timing), into
the same table definitions in one transaction, without rollups; the "raw + rollup SQL" figure adds
the rollup SQL for the same buckets to it. ``--processes`` puts a job's process on every busy GPU
(and its CPU-side sample on the host), as a recorder sees while jobs run: the writer then also
keeps process rows and ``gpu_share_1m``, and raw inserts the process rows as well.
Each timed section starts after ``gc.collect()``: otherwise the collector's debt from building the
ticks (or raw's prebuilt rows) is paid inside whichever section runs next.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import GpuProcess, ProcessSample, Tick
from costmeter.core.tick_batch import TickBatch
from costmeter.store import Writer
from costmeter.store.batch_of_ticks import batch_of
from costmeter.store.database import connect
from costmeter.store.rollup import update_rollups
from costmeter.store.rows import Batch, Registry, add_tick
from costmeter.store.schema import migrate
from costmeter.store.testing import device_infos, host_info, realistic_ticks

T0 = 1_700_000_000.0
#: Ticks per ``TickBatch``: what ``costmeter simulate`` hands the writer at a time.
BATCH_TICKS = 600


def machine() -> str:
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}"
    )


def bench_writer(
    path: Path, ticks: list, devices: int, batches: list[TickBatch] | None = None
) -> tuple[float, int]:
    """Seconds and rows to write ``ticks`` one ``Tick`` at a time, or ``batches`` (the same
    ticks as columns) one ``TickBatch`` at a time."""
    w = Writer(path, clock=SimulatedClock(T0), flush_interval=1.0)
    w.start()
    w.register(host_info("bench"), device_infos("bench", devices))
    w.flush()
    gc.collect()  # the garbage of making the ticks is not the writer's to collect
    t = time.perf_counter()
    if batches is None:
        for tick in ticks:
            w.submit(tick, wait=True)
    else:
        for batch in batches:
            w.submit_batch(batch, wait=True)
    w.flush()
    elapsed = time.perf_counter() - t
    rows = w.stats.rows_written
    w.stop()
    return elapsed, rows


PLAIN_DEVICE_INSERT = "INSERT INTO device_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
PLAIN_HOST_INSERT = "INSERT INTO host_samples VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
PLAIN_GPU_PROC_INSERT = "INSERT INTO gpu_process_samples VALUES (?,?,?,?,?)"
PLAIN_PROC_INSERT = "INSERT INTO process_samples VALUES (?,?,?,?,?)"


def with_jobs(ticks: list[Tick]) -> list[Tick]:
    """The ticks with one process on each busy GPU (pid per GPU), seen CPU-side too."""
    out = []
    for k, tick in enumerate(ticks):
        busy = [s for s in tick.devices if (s.gpu_util or 0) >= 5]
        devices = tuple(
            replace(s, processes=(GpuProcess(20_000 + s.index, s.mem_used, s.gpu_util),))
            if s in busy
            else s
            for s in tick.devices
        )
        procs = tuple(
            ProcessSample(
                20_000 + s.index,
                T0 - 100.0,
                "python",
                "python train.py",
                "bench",
                99.0,
                8 << 30,
                float(k),
            )
            for s in busy
        )
        assert tick.host_sample is not None
        out.append(
            replace(tick, devices=devices, host_sample=replace(tick.host_sample, processes=procs))
        )
    return out


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
    gpu_proc_rows = list(batch.gpu_proc_rows)
    proc_rows = list(batch.proc_rows)
    gc.collect()  # likewise, for the rows prebuilt just above
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(PLAIN_DEVICE_INSERT, device_rows)
    conn.executemany(PLAIN_HOST_INSERT, host_rows)
    conn.executemany(PLAIN_GPU_PROC_INSERT, gpu_proc_rows)
    conn.executemany(PLAIN_PROC_INSERT, proc_rows)
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
    return elapsed, rollup_s, batch.row_count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=30_000)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--processes", action="store_true", help="a job's process on busy GPUs")
    ap.add_argument(
        "--batch-ticks",
        type=int,
        default=BATCH_TICKS,
        help=f"ticks per TickBatch (default {BATCH_TICKS}, as `simulate` makes them)",
    )
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"generating {args.ticks} ticks of {args.devices} GPUs + host ...", flush=True)
    ticks = list(realistic_ticks(T0, args.ticks, args.devices, host="bench"))
    if args.processes:
        ticks = with_jobs(ticks)
    size = args.batch_ticks
    batches = [batch_of(ticks[at : at + size]) for at in range(0, len(ticks), size)]
    assert all(b is not None for b in batches), "the ticks are not of a batch's shape"
    best_w = best_b = best_r = best_rr = 0.0
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.repeats):
            tw, rows_w = bench_writer(Path(d) / f"w{i}.db", ticks, args.devices)
            tb, rows_b = bench_writer(Path(d) / f"b{i}.db", ticks, args.devices, batches)  # type: ignore[arg-type]
            tr, troll, rows_r = bench_raw(Path(d) / f"r{i}.db", ticks)
            assert rows_w == rows_r == rows_b, (rows_w, rows_r, rows_b)
            rw, rb, rr, rrr = rows_w / tw, rows_b / tb, rows_r / tr, rows_r / (tr + troll)
            print(
                f"  run {i + 1}: writer {rw:,.0f} rows/s ({tw:.2f} s), writer batches "
                f"{rb:,.0f} rows/s ({tb:.2f} s), raw {rr:,.0f} rows/s ({tr:.2f} s), "
                f"raw + rollup SQL {rrr:,.0f} rows/s ({tr + troll:.2f} s)"
            )
            best_w, best_b = max(best_w, rw), max(best_b, rb)
            best_r, best_rr = max(best_r, rr), max(best_rr, rrr)
    shape = f"{args.devices} GPU rows + 1 host row" + (" + process rows" if args.processes else "")
    print(f"rows per run: {rows_w:,} ({args.ticks:,} ticks x ({shape}))")
    print(f"Writer: {best_w * args.ticks / rows_w:,.0f} ticks/s")
    print(
        "raw baselines: the same stored-form rows prebuilt outside the timing, one transaction;"
        " 'raw' excludes rollups, 'raw + rollup SQL' includes them; gc.collect() before each"
        " timed section"
    )
    print(f"Writer (submit + flush, incl. rollups): {best_w:,.0f} samples/s")
    print(f"Writer, TickBatches of {size} ticks:     {best_b:,.0f} samples/s")
    print(f"raw executemany, one transaction:       {best_r:,.0f} samples/s")
    print(f"raw executemany + the same rollup SQL:  {best_rr:,.0f} samples/s")
    print(
        f"Tick objects (live recording, agents): writer/raw {best_w / best_r:.2f}, "
        f"writer/(raw + rollups) {best_w / best_rr:.2f}"
    )
    print(
        f"ratio writer/raw: {best_b / best_r:.2f} (TickBatches, the bulk path `simulate` "
        f"uses; target >= 0.6); writer/(raw + rollups): {best_b / best_rr:.2f}"
    )


if __name__ == "__main__":
    main()
