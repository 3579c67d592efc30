"""Attribution overhead: the recorder's sampling CPU with owner reading on and off.

8 simulated GPUs carry 100 real processes (``sleep`` children with Slurm variables and a run
key in their environment, attached to the GPUs with ``FakeNvml.attach_process``), so the host
sampler reads their real ``/proc`` entries as on a GPU server. One tick = the NVML sampler's
reading plus the host sampler's reading of the processes it reports. Ticks run as fast as
possible and CPU time (``time.process_time``) is counted; at 1 Hz, CPU seconds per tick are
the share of one core. Each round builds a fresh host sampler (so every owner is read on first
sight, inside the round), and rounds alternate on and off; the median round of each is kept.

    .venv/bin/python bench/bench_attribution.py [--processes 100] [--ticks 60] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from costmeter.sampling.host import HostSampler
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.owner import read_owner
from costmeter.sampling.rapl import RaplReader
from costmeter.sampling.simulated import make_fake_nvml

GPUS = 8


def start_processes(n: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SLURM_JOB_ID": str(1000 + i % 10),
            "SLURM_JOB_USER": "alice",
            "SLURM_JOB_ACCOUNT": "cv-lab",
            "SLURM_JOB_PARTITION": "gpu",
            "COSTMETER_RUN_KEY": f"bench{i:04d}",
        }
        procs.append(subprocess.Popen(["sleep", "600"], env=env))
    deadline = time.monotonic() + 20
    for p in procs:  # wait until each has exec'd (its environment is then in place)
        while time.monotonic() < deadline:
            try:
                if b"SLURM_JOB_ID=" in Path(f"/proc/{p.pid}/environ").read_bytes():
                    break
            except OSError:
                pass
            time.sleep(0.005)
    return procs


def one_round(read_owners: bool, ticks: int, gpu: NvmlSampler, rapl: RaplReader) -> float:
    """CPU seconds per tick over ``ticks`` ticks of a fresh host sampler."""
    host = HostSampler(rapl=rapl, read_owners=read_owners)
    t0 = time.process_time()
    for _ in range(ticks):
        devices = gpu.sample()
        sample = host.sample(frozenset(p.pid for d in devices for p in d.processes))
    spent = time.process_time() - t0
    if read_owners:
        assert all(p.owner is not None for p in sample.processes)
    return spent / ticks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    procs = start_processes(args.processes)
    try:
        # 8 H100s with no simulated process of their own: the real ones are all there is.
        fake = make_fake_nvml(",".join(["h100:free"] * GPUS))
        for i, p in enumerate(procs):
            fake.attach_process(i % GPUS, p.pid, "train", name="sleep")
        gpu = NvmlSampler(fake)
        gpu.open()
        rapl = RaplReader(Path(tempfile.mkdtemp(prefix="costmeter-bench-")) / "no-powercap")
        tracked = {p.pid for d in gpu.sample() for p in d.processes}
        assert tracked == {p.pid for p in procs}, "every real process is on a simulated GPU"
        one_round(True, 2, gpu, rapl)  # warm-up: imports, caches
        off: list[float] = []
        on: list[float] = []
        for _ in range(args.rounds):
            off.append(one_round(False, args.ticks, gpu, rapl))
            on.append(one_round(True, args.ticks, gpu, rapl))
        t0 = time.process_time()
        for p in procs:
            read_owner(p.pid)
        first_sight = (time.process_time() - t0) / len(procs)
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    off_s, on_s = statistics.median(off), statistics.median(on)
    print(
        f"{GPUS} simulated GPUs, {args.processes} real processes on them, "
        f"{args.ticks} ticks x {args.rounds} rounds each way (median round)"
    )
    print(
        f"owners off: {off_s * 1e3:.3f} ms CPU per tick ({off_s * 100:.3f} % of a core at 1 Hz)"
        f"  rounds: {', '.join(f'{x * 1e3:.2f}' for x in off)}"
    )
    print(
        f"owners on:  {on_s * 1e3:.3f} ms CPU per tick ({on_s * 100:.3f} % of a core at 1 Hz)"
        f"  rounds: {', '.join(f'{x * 1e3:.2f}' for x in on)}"
    )
    print(
        f"reading one owner on first sight: {first_sight * 1e6:.0f} us CPU "
        f"({first_sight * args.processes * 1e3:.2f} ms for all {args.processes}, once)"
    )
    print(f"attribution overhead: {(on_s - off_s) * 100:+.3f} % of a core at 1 Hz")


if __name__ == "__main__":
    main()
