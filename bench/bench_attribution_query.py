"""Store.attribution over a day of 8 GPUs at 1 s, two processes on each GPU.

Run: .venv/bin/python bench/bench_attribution_query.py [--hours 24] [--gpus 8] [--repeats 3]
The history is written through the real writer (the rows the recorder stores, owners
included, with its rollups and per-process share minutes) into a real SQLite file, then
``Store.attribution`` is timed over the whole day, without and with hourly buckets. Two
processes share each GPU (memory 3:1), the host samples their CPU time every second, and one
GPU idles (under 5 % utilisation) a quarter of the time. Prints the best of --repeats; the
last line is the figure (seconds; target well under 1 s). For scale it also times the same
window read from the raw rows alone (what whole minutes from ``gpu_share_1m`` save).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from costmeter.core.clock import SimulatedClock
from costmeter.core.model import DeviceSample, GpuProcess, HostSample, Interval, ProcessSample, Tick
from costmeter.core.owner import Owner
from costmeter.store import RetentionPolicy, Store, Writer
from costmeter.store.testing import device_infos, host_info

T0 = 1_700_000_000.0
GIB = 1 << 30
KEEP_ALL = RetentionPolicy(raw_days=None, minute_days=None, hour_days=None)


def ticks(hours: float, gpus: int) -> list[Tick]:
    owners = [
        Owner(uid=1000 + i, user=f"user{i}", job_id=str(5000 + i), account="lab")
        for i in range(2 * gpus)
    ]
    out = []
    for k in range(int(hours * 3600)):
        ts = T0 + k
        devices = []
        intervals = {}
        procs = []
        for g in range(gpus):
            uuid = f"GPU-bench-{g}"
            util = 2.0 if (g == 0 and k % 4 == 0) else 80.0
            a, b = 2 * g, 2 * g + 1
            devices.append(
                DeviceSample(
                    uuid=uuid,
                    index=g,
                    ts=ts,
                    gpu_util=util,
                    mem_used=40 * GIB,
                    power_w=300.0,
                    processes=(
                        GpuProcess(pid=10_000 + a, used_memory=30 * GIB, sm_util=None),
                        GpuProcess(pid=10_000 + b, used_memory=10 * GIB, sm_util=None),
                    ),
                )
            )
            intervals[uuid] = Interval(dt_s=1.0, energy_j=300.0, energy_measured=True)
            for p in (a, b):
                procs.append(
                    ProcessSample(
                        10_000 + p,
                        T0 - 10,
                        "python",
                        "python train.py",
                        f"user{p}",
                        100.0,
                        GIB,
                        10.0 + k,
                        owner=owners[p],
                    )
                )
        hs = HostSample(
            ts=ts,
            cpu_percent=50.0,
            per_core=(50.0,) * 8,
            load1=1.0,
            load5=1.0,
            load15=1.0,
            mem_used=GIB,
            mem_total=64 * GIB,
            swap_used=0,
            disk_read_bps=0.0,
            disk_write_bps=0.0,
            net_rx_bps=0.0,
            net_tx_bps=0.0,
            processes=tuple(procs),
        )
        out.append(
            Tick(
                ts=ts,
                host="bench",
                host_sample=hs,
                devices=tuple(devices),
                device_intervals=intervals,
                host_interval=Interval(dt_s=1.0, energy_j=None, energy_measured=False),
            )
        )
    return out


def build(path: Path, hours: float, gpus: int) -> None:
    """The day through the real writer (rows, rollups, per-process share minutes)."""
    writer = Writer(path, clock=SimulatedClock(T0), retention=KEEP_ALL, batch_ticks=2_000)
    writer.start()
    writer.register(host_info("bench"), device_infos("bench", gpus))
    for tick in ticks(hours, gpus):
        writer.submit(tick, wait=True)
    assert writer.flush(600)
    writer.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        t = time.perf_counter()
        build(path, args.hours, args.gpus)
        print(
            f"history: {args.hours:g} h of {args.gpus} GPUs written in "
            f"{time.perf_counter() - t:.1f} s"
        )
        end = T0 + args.hours * 3600 + 1
        with Store.open(path) as store:
            best = best_b = float("inf")
            for _ in range(args.repeats):
                t = time.perf_counter()
                att = store.attribution(T0, end)
                best = min(best, time.perf_counter() - t)
                t = time.perf_counter()
                att_b = store.attribution(T0, end, bucket_s=3600)
                best_b = min(best_b, time.perf_counter() - t)
            # For scale: the same day from the raw rows alone (a bucket width that is not
            # whole minutes), what the per-minute share rollup saves.
            t = time.perf_counter()
            raw = store.attribution(T0, end, bucket_s=86_399)
            raw_s = time.perf_counter() - t
        raw_busy = sum(s.busy_s + s.held_idle_s for s in raw.shares)
        busy = sum(s.busy_s + s.held_idle_s for s in att.shares)
        print(f"shares: {len(att.shares)}, {busy:,.0f} GPU-s; hourly: {len(att_b.shares)} rows")
        print(f"cpu rows: {len(att.cpu)}, processes: {len(att.processes)}")
        print(f"from raw rows only (one run): {raw_s:.3f} s, {raw_busy:,.0f} GPU-s")
        print(f"Store.attribution, whole window:  {best:.3f} s")
        print(f"Store.attribution, hourly buckets: {best_b:.3f} s")
        print(f"attribution query s: {max(best, best_b):.3f}")


if __name__ == "__main__":
    main()
