"""Sampling overhead: CPU seconds of `costmeter record --simulate 8 --interval 1` over a window.

Beside it, in the same run and at the same time: a bare loop that reads the same values (8 simulated
GPUs through the NVML sampler, the psutil host sampler) without storing them, and Glances
(`glances --stdout cpu.total,mem.percent,load -t 1`) when it is installed
(`.venv/bin/pip install glances`). Each process's CPU time is read at the start and the end of the
window, after a warm-up, so start-up (imports, schema creation) is not counted.

    .venv/bin/python bench/bench_sampling_overhead.py [--seconds 60] [--warmup 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BARE_LOOP = """
import time
from costmeter.sampling.host import HostSampler
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.simulated import make_fake_nvml
fake = make_fake_nvml("8")
gpu = NvmlSampler(fake)
gpu.open()
host = HostSampler(process_fallback=fake.process_sample)
t0 = time.time(); k = 0
while True:
    k += 1
    time.sleep(max(0.0, t0 + k - time.time()))
    devices = gpu.sample()
    host.sample(frozenset(p.pid for d in devices for p in d.processes))
"""


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    tmp = Path(tempfile.mkdtemp(prefix="costmeter-bench-"))
    commands = {
        "costmeter record --simulate 8 --interval 1": [
            str(bindir / "costmeter"),
            "record",
            "--simulate",
            "8",
            "--interval",
            "1",
            "--db",
            str(tmp / "bench.db"),
        ],
        "bare loop (same reads, no store)": [sys.executable, "-c", BARE_LOOP],
    }
    glances = shutil.which("glances", path=str(bindir)) or shutil.which("glances")
    if glances:
        commands["glances --stdout cpu.total,mem.percent,load -t 1"] = [
            glances,
            "--stdout",
            "cpu.total,mem.percent,load",
            "-t",
            "1",
        ]
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, cmd in commands.items()
    }
    try:
        time.sleep(args.warmup)
        handles = {name: psutil.Process(p.pid) for name, p in procs.items()}
        before = {name: cpu_seconds(h) for name, h in handles.items()}
        time.sleep(args.seconds)
        after = {name: cpu_seconds(h) for name, h in handles.items()}
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    print(f"window: {args.seconds:.0f} s after {args.warmup:.0f} s warm-up; all processes at once")
    base = after["bare loop (same reads, no store)"] - before["bare loop (same reads, no store)"]
    for name in commands:
        used = after[name] - before[name]
        share = 100 * used / args.seconds
        ratio = f"{used / base:.2f}x bare loop" if base > 0 else ""
        print(f"{name:<52} {used:6.2f} CPU s  {share:5.2f}% of one core  {ratio}")
    if not glances:
        print("glances not installed: `.venv/bin/pip install glances` to compare against it")


if __name__ == "__main__":
    main()
