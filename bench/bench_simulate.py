"""`costmeter simulate` of 8 GPUs: the direct simulated path against the NVML sampler path.

Run: .venv/bin/python bench/bench_simulate.py [--hours 24] [--old-hours 3] [--gpus 8]
     [--producer-only]
Runs the real command (`costmeter simulate --hours H --simulate 8`, a fresh database in a temporary
folder) with the direct path (the default) for --hours and with --via-nvml-sampler for
--old-hours, both in this run, and reports wall and CPU seconds per tick. Then times the tick
producer alone (samplers, energy intervals and Tick objects as the monitor makes them, no store
writer) both ways, and the TickBatches `simulate` makes now, over --producer-ticks, to show how
much of a tick is the writer's. The last
line is the figure: a week at the default 1 s interval (604,800 ticks), extrapolated from
--hours per tick unless --hours is 168, and said so. On a shared machine the CPU seconds are
the steadier figure: wall time there includes waiting for other processes.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from costmeter.cli.simulate_cmd import fewer_collections
from costmeter.config import Config
from costmeter.core import SimulatedClock, Tick
from costmeter.core.tick_batch import TickBatch
from costmeter.cost.energy import EnergyTracker
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated import SimulatedHostSampler, make_fake_nvml
from costmeter.sampling.simulated.direct import DirectSimSampler
from costmeter.service.monitor import Monitor, MonitorOptions

WEEK_TICKS = 7 * 24 * 3600
T0 = 1_700_000_000.0


def run_simulate(
    hours: float, gpus: int, *, old: bool, folder: Path
) -> tuple[float, float, float, int]:
    """(wall s, CPU s, the command's own loop s, ticks) of one `costmeter simulate` process: the
    loop time (what the command says, from the first tick to the last commit) leaves out the
    interpreter's start, so short runs extrapolate fairly."""
    db = folder / f"sim-{'old' if old else 'new'}-{hours:g}.db"
    cmd = [sys.executable, "-m", "costmeter", "simulate", "--hours", f"{hours:g}"]
    cmd += ["--simulate", str(gpus), "--interval", "1", "--db", str(db)]
    if old:
        cmd.append("--via-nvml-sampler")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    said = re.search(r"\(([\d,]+) ticks\) into .* in ([\d.]+) s\.", done.stderr + done.stdout)
    if said is None:
        raise SystemExit(f"no 'wrote ... in X s.' line from {' '.join(cmd)}:\n{done.stderr}")
    return wall, cpu, float(said.group(2)), int(said.group(1).replace(",", ""))


def produce(ticks: int, gpus: int, *, old: bool) -> float:
    """CPU seconds a tick to sample and build Ticks as ``Monitor.tick`` does, without a writer."""
    clock = SimulatedClock(T0)
    fake = make_fake_nvml(str(gpus), seed=0, clock=clock)
    gpu = (NvmlSampler if old else DirectSimSampler)(fake, host="sim-host", clock=clock)
    gpu.open()
    host = SimulatedHostSampler(fake, clock=clock)
    energy = EnergyTracker(max_gap_s=5.0)
    t0 = time.process_time()
    with fewer_collections():  # as the command runs its loop
        _produce(ticks, gpu, host, energy, clock)
    return (time.process_time() - t0) / ticks


def produce_batches(ticks: int, gpus: int, folder: Path) -> float:
    """CPU seconds a tick to make ``simulate``'s ``TickBatch``es (``Monitor`` in bulk), with
    the writer's ``submit_batch`` a no-op: the producer's share of a tick."""
    monitor = Monitor(
        MonitorOptions(
            db_path=folder / "producer.db",
            config=Config(),
            interval_s=1.0,
            simulate=str(gpus),
            seed=0,
            simulated_start=T0,
            direct_simulation=True,
        )
    )
    monitor.open()
    assert monitor.writer is not None

    def drop(batch: TickBatch, *, wait: bool = False) -> None:
        pass

    monitor.writer.submit_batch = drop  # type: ignore[method-assign]
    t0 = time.process_time()
    with fewer_collections():
        monitor.run_until(T0 + ticks)
    cpu = time.process_time() - t0
    monitor.close()
    return cpu / ticks


def _produce(
    ticks: int,
    gpu: NvmlSampler,
    host: SimulatedHostSampler,
    energy: EnergyTracker,
    clock: SimulatedClock,
) -> None:
    for _ in range(ticks):
        devices = gpu.sample()
        gpu.drain_messages()
        pids = frozenset(p.pid for d in devices for p in d.processes)
        hs = host.sample(pids)
        Tick(
            ts=hs.ts,
            host="sim-host",
            host_sample=hs,
            devices=devices,
            device_intervals={d.uuid: energy.device_interval(d) for d in devices},
            host_interval=energy.host_interval(hs, cpu_count=32, tdp_w=150.0),
        )
        clock.advance(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0, help="direct path (default 24)")
    ap.add_argument("--old-hours", type=float, default=3.0, help="sampler path (default 3)")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--producer-ticks", type=int, default=20_000)
    ap.add_argument(
        "--producer-only",
        action="store_true",
        help="only time making the TickBatches (CPU us a tick, the last line), best of 3",
    )
    args = ap.parse_args()
    if args.producer_only:
        with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
            runs = []
            for i in range(3):
                (Path(tmp) / str(i)).mkdir()
                runs.append(produce_batches(args.producer_ticks, args.gpus, Path(tmp) / str(i)))
            best = min(runs)
        print(f"TickBatch producer, {args.gpus} GPUs: {best * 1e6:.1f} us CPU a tick (best of 3)")
        return

    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        folder = Path(tmp)
        # A four-tick run: the CPU of starting the interpreter, opening the store and closing it,
        # taken off both runs' CPU seconds so short runs are not overcharged.
        fixed = run_simulate(0.001, args.gpus, old=False, folder=folder)[1]
        old = run_simulate(args.old_hours, args.gpus, old=True, folder=folder)
        new = run_simulate(args.hours, args.gpus, old=False, folder=folder)
        batch_p = produce_batches(args.producer_ticks, args.gpus, folder) * 1e6
    old_us, new_us = old[2] / old[3] * 1e6, new[2] / new[3] * 1e6
    old_cpu_us = (old[1] - fixed) / old[3] * 1e6
    new_cpu_us = (new[1] - fixed) / new[3] * 1e6
    for name, hours, (wall, cpu, loop, ticks), us in (
        ("--via-nvml-sampler", args.old_hours, old, old_us),
        ("direct (default)", args.hours, new, new_us),
    ):
        print(
            f"simulate {name}, {hours:g} h x {args.gpus} GPUs ({ticks:,} ticks): {loop:.1f} s "
            f"({us:.0f} us a tick); process {wall:.1f} s wall, {cpu:.1f} s CPU"
        )
    print(
        f"ratio sampler/direct, a tick: {old_us / new_us:.2f}x wall, "
        f"{old_cpu_us / new_cpu_us:.2f}x CPU ({old_cpu_us:.0f} vs {new_cpu_us:.0f} us CPU a tick, "
        f"the writer's thread included; start-up CPU {fixed:.2f} s taken off)"
    )

    old_p = produce(max(1, args.producer_ticks // 4), args.gpus, old=True) * 1e6
    new_p = produce(args.producer_ticks, args.gpus, old=False) * 1e6
    print(
        f"tick producer without the writer (CPU): sampler path {old_p:.0f} us, direct "
        f"{new_p:.0f} us a tick ({old_p / new_p:.2f}x); TickBatches (what `simulate` runs) "
        f"{batch_p:.0f} us; the rest of a tick's CPU, {new_cpu_us - batch_p:.0f} us, is the "
        f"store writer"
    )
    measured = round(args.hours * 3600) == WEEK_TICKS
    how = "measured" if measured else f"extrapolated from {args.hours:g} h"
    week = new[2] if measured else new_us * WEEK_TICKS / 1e6
    week_cpu = new[1] if measured else new_cpu_us * WEEK_TICKS / 1e6
    print(
        f"simulate a week x {args.gpus} GPUs: {week:.0f} s ({how}, {week_cpu:.0f} s CPU; "
        f"sampler path {old_us * WEEK_TICKS / 1e6:.0f} s, {old_cpu_us * WEEK_TICKS / 1e6:.0f} s "
        f"CPU, extrapolated from {args.old_hours:g} h)"
    )


if __name__ == "__main__":
    main()
