"""``costmeter doctor``: is the NVIDIA driver usable, can we read energy, is the database sound."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from costmeter import __version__
from costmeter.cli.common import load_config_from, resolve_db
from costmeter.config import Config, default_config_path
from costmeter.core import ConfigError, SamplerUnavailable
from costmeter.core.units import format_bytes
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.rapl import RaplReader
from costmeter.sampling.simulated import make_fake_nvml
from costmeter.store import Store

METRIC_LABELS = {
    "gpu_util": "utilisation",
    "mem_util": "memory utilisation",
    "mem_used": "memory used",
    "power_w": "power",
    "energy_mj": "total energy counter (energy is estimated from power)",
    "temp_c": "temperature",
    "sm_clock_mhz": "SM clock",
    "mem_clock_mhz": "memory clock",
    "processes": "per-process memory",
    "process_util": "per-process utilisation",
}


class Checklist:
    def __init__(self) -> None:
        self.problems = 0

    def line(self, status: str, topic: str, text: str) -> None:
        if status == "problem":
            self.problems += 1
        print(f"[{status:^7}] {topic:<10} {text}")


def run(args: argparse.Namespace) -> int:
    out = Checklist()
    print(f"costmeter {__version__}")
    config = _check_config(out, args)
    _check_nvml(out, args, config)
    _check_rapl(out)
    _check_database(out, resolve_db(args, config))
    print("\nAll checks passed." if out.problems == 0 else f"\n{out.problems} problem(s) found.")
    return 0 if out.problems == 0 else 1


def _check_config(out: Checklist, args: argparse.Namespace) -> Config | None:
    path = Path(args.config).expanduser() if args.config else default_config_path()
    try:
        config = load_config_from(args)
    except ConfigError as exc:
        out.line("problem", "config", str(exc))
        return None
    where = str(path) if path.exists() else f"{path} (absent: defaults in use)"
    out.line("ok", "config", where)
    return config


def _check_nvml(out: Checklist, args: argparse.Namespace, config: Config | None) -> None:
    nvml = make_fake_nvml(args.simulate, seed=args.seed) if args.simulate else None
    sampler = NvmlSampler(nvml)
    try:
        devices = sampler.open()
    except SamplerUnavailable as exc:
        out.line("warning", "nvml", str(exc))
        _check_device_nodes(out)
        return
    except ValueError as exc:
        out.line("problem", "nvml", str(exc))
        return
    try:
        sampler.sample()  # one reading finds the metrics this driver does not support
        sampler.drain_messages()
        devices = sampler.devices
        kind = "simulated" if args.simulate else "NVIDIA"
        out.line(
            "ok", "nvml", f"{kind} driver {sampler.driver_version() or '?'}, {len(devices)} GPU(s)"
        )
        pricing = config.pricing() if config is not None else None
        for d in devices:
            labels = sorted(METRIC_LABELS.get(m, m) for m in d.unsupported)
            na = f"; not supported: {', '.join(labels)}" if labels else ""
            out.line("ok", f"gpu {d.index}", f"{d.name}, {format_bytes(d.memory_total)}{na}")
            if pricing is not None and not pricing.gpu_price(d.name).known:
                out.line(
                    "warning",
                    f"gpu {d.index}",
                    f"no hourly price for '{d.name}': add a [[cost.gpu]] row to the config.",
                )
    finally:
        sampler.close()


def _check_device_nodes(out: Checklist) -> None:
    for node in ("/dev/nvidiactl", "/dev/nvidia0"):
        if os.path.exists(node) and not os.access(node, os.R_OK | os.W_OK):
            out.line(
                "problem", "nvml", f"{node} exists but this user cannot open it (video group?)."
            )


def _check_rapl(out: Checklist) -> None:
    rapl = RaplReader()
    if rapl.available:
        out.line("ok", "cpu energy", "RAPL counters readable: CPU energy is measured.")
    else:
        out.line("warning", "cpu energy", f"{rapl.reason} CPU energy will be estimated from TDP.")


def _check_database(out: Checklist, db: Path) -> None:
    if not db.exists():
        out.line("ok", "database", f"{db} does not exist yet; recording will create it.")
        return
    store = Store.open(db)
    try:
        if store.notice:
            out.line("problem", "database", store.notice)
        check = store.integrity_check()
        status = "ok" if check == "ok" else "problem"
        size = format_bytes(db.stat().st_size)
        out.line(status, "database", f"{db} ({size}, schema v{store.schema_version}): {check}")
        span = store.time_range()
        if span is not None:
            from datetime import datetime

            first, last = (datetime.fromtimestamp(t).isoformat(timespec="seconds") for t in span)
            out.line("ok", "history", f"samples from {first} to {last}")
        holder = store.lock_holder()
        if holder:
            out.line("ok", "recorder", f"being recorded by {holder}")
    finally:
        store.close()
