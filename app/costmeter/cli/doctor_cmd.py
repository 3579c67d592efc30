"""``costmeter doctor``: is the NVIDIA driver usable, can we read energy, is the database sound."""

from __future__ import annotations

import argparse
import os
from importlib import metadata
from pathlib import Path

from costmeter import __version__
from costmeter.cli.common import load_config_from, resolve_db
from costmeter.config import Config, default_config_path
from costmeter.core import ConfigError, SamplerUnavailable, StoreError
from costmeter.core.model import DeviceInfo
from costmeter.core.units import format_bytes
from costmeter.cost.pricing import Pricing
from costmeter.sampling.nvml import NvmlSampler
from costmeter.sampling.rapl import RaplReader
from costmeter.store import Store

METRIC_LABELS = {
    "gpu_util": "utilisation",
    "mem_util": "memory utilisation",
    "mem_used": "memory used",
    "power_w": "power",
    "energy_mj": "total energy counter",
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


def _bindings_version() -> str:
    """Which ``pynvml`` Costmeter calls NVML through: the installed nvidia-ml-py, or (if another
    copy comes first on the path) that file."""
    try:
        import pynvml
    except ImportError:
        return "no pynvml (nvidia-ml-py is not installed)"
    where = Path(getattr(pynvml, "__file__", "") or "?")
    try:
        dist = metadata.distribution("nvidia-ml-py")
    except metadata.PackageNotFoundError:
        return f"pynvml from {where} (no nvidia-ml-py installed)"
    if where.resolve() == Path(str(dist.locate_file("pynvml.py"))).resolve():
        return f"nvidia-ml-py {dist.version}"
    return f"pynvml from {where} (not the installed nvidia-ml-py {dist.version})"


def _check_nvml(out: Checklist, args: argparse.Namespace, config: Config | None) -> None:
    bindings = _bindings_version()
    if args.simulate:
        try:  # the simulator is imported only when asked for
            from costmeter.sampling.simulated import make_fake_nvml

            nvml = make_fake_nvml(args.simulate, seed=args.seed)
        except ValueError as exc:
            out.line("problem", "nvml", str(exc))
            return
        path = f"simulated NVML (the simulator, with {bindings}'s errors and structs)"
    else:
        nvml = None
        path = f"real NVML through {bindings}"
    sampler = NvmlSampler(nvml)
    try:
        sampler.open()
    except SamplerUnavailable as exc:
        out.line("warning", "nvml", f"{exc} Path: {path}.")
        _check_device_nodes(out)
        return
    try:
        sampler.sample()  # one reading finds the metrics this driver does not support
        notes = sampler.drain_messages()
        devices = sampler.devices
        kind = "simulated" if args.simulate else "NVIDIA"
        gpus = sum(1 for d in devices if " MIG " not in f" {d.name} ")
        migs = len(devices) - gpus
        count = f"{gpus} GPU(s)" + (f" and {migs} MIG device(s)" if migs else "")
        out.line("ok", "nvml", f"{kind} driver {sampler.driver_version() or '?'}, {count}")
        out.line("ok", "nvml", f"path: {path}")
        calls = sampler.process_calls()
        if calls.get("Compute"):
            out.line("ok", "nvml", f"process list through {calls['Compute']}")
        pricing = config.pricing() if config is not None else None
        in_mig = sampler.mig_gpus()
        for d in devices:
            _device_lines(out, d, pricing, d.uuid in in_mig)
        for note in notes:
            if "MIG" in note:
                out.line("ok", "nvml", note)
    finally:
        sampler.close()


def _device_lines(out: Checklist, d: DeviceInfo, pricing: Pricing | None, in_mig: bool) -> None:
    topic = f"gpu {d.index}"
    reserved = (
        f" (the driver reserves {format_bytes(d.memory_reserved)})" if d.memory_reserved else ""
    )
    out.line("ok", topic, f"{d.name}, {format_bytes(d.memory_total)}{reserved}")
    if " MIG " in f" {d.name} ":
        out.line("ok", topic, "MIG device: memory and processes (the rest is its GPU's)")
        return
    # In MIG mode the GPU has no utilisation, and its processes are listed per MIG device.
    off = {"gpu_util", "mem_util", "processes", "process_util"} if in_mig else set()
    read = [label for m, label in METRIC_LABELS.items() if m not in d.unsupported | off]
    out.line("ok", topic, f"measured: {', '.join(read) or 'nothing'}")
    if in_mig:
        out.line("ok", topic, "MIG mode: utilisation and processes are not read on the GPU")
    if d.unsupported:
        labels = [label for m, label in METRIC_LABELS.items() if m in d.unsupported]
        then = "; energy is estimated from power" if "energy_mj" in d.unsupported else ""
        out.line("ok", topic, f"not supported: {', '.join(labels)}{then}")
    if pricing is not None and not pricing.gpu_price(d.name).known:
        out.line(
            "warning",
            topic,
            f"no hourly price for '{d.name}': add a [[cost.gpu]] row to the config.",
        )


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
    try:
        store = Store.open(db)  # reads only: a damaged or locked file is reported, not moved
    except StoreError as err:
        out.line("problem", "database", str(err))
        return
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
