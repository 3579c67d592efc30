"""The JSON forms of samples that an agent serves and a collector reads (``/v1/*``).

Standard library only. Encoders turn ``costmeter.core.model`` values into plain JSON objects;
decoders check every field's type and range and raise :class:`WireError` with a sentence on
anything malformed (never ``KeyError``/``TypeError``). Sizes are never taken from the input:
lists and strings are refused past fixed limits before anything is built from them.

``DeviceSample.energy_mj`` travels as the device's cumulative counter; energy intervals are not
sent (the collector computes them with its own ``EnergyTracker``).
"""

from __future__ import annotations

import gc
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from costmeter.core.model import (
    DeviceInfo,
    DeviceSample,
    GpuProcess,
    HostInfo,
    HostSample,
    ProcessSample,
    Tick,
)
from costmeter.core.owner import INT_FIELDS, OWNER_FIELDS, SOURCES, Owner
from costmeter.sampling import wire_fields as f
from costmeter.sampling.wire_fast import Miss, fast_tick
from costmeter.sampling.wire_fields import WireError

__all__ = [
    "FORMAT",
    "AgentInfo",
    "SamplesPage",
    "WireError",
    "decode_device",
    "decode_host",
    "decode_info",
    "decode_owner",
    "decode_samples_page",
    "decode_samples_page_checked",
    "decode_tick",
    "dumps",
    "encode_device",
    "encode_host",
    "encode_info",
    "encode_owner",
    "encode_samples_page",
    "encode_tick",
    "loads",
    "read_samples_page",
]

#: Bumped when a JSON shape changes incompatibly.
FORMAT = 1
GPU_MODES = ("nvml", "simulated", "none")

# Limits: far above anything real, low enough that hostile input cannot make work explode.
MAX_TEXT = f.MAX_TEXT
MAX_CMDLINE = f.MAX_CMDLINE
MAX_DEVICES = f.MAX_DEVICES
MAX_PROCESSES = f.MAX_PROCESSES
MAX_CORES = f.MAX_CORES
MAX_PACKAGES = f.MAX_PACKAGES
MAX_TICKS = 100_000
MAX_MESSAGES = 1000
MAX_BYTES = 64 * 1024 * 1024
MAX_TS = f.MAX_TS
MAX_U64 = f.MAX_U64
MAX_PID = f.MAX_PID


# -- host --------------------------------------------------------------------------------------
def encode_host(host: HostInfo) -> dict[str, Any]:
    return {
        "hostname": host.hostname,
        "cpu_count": host.cpu_count,
        "cpu_model": host.cpu_model,
        "memory_total": host.memory_total,
        "physical_cores": host.physical_cores,
    }


def decode_host(obj: object) -> HostInfo:
    what = "the host"
    d = f.obj(obj, what)
    hostname = f.req_text(d, "hostname", what)
    if not hostname.strip():
        raise WireError("the host: 'hostname' is empty.")
    return HostInfo(
        hostname=hostname,
        cpu_count=f.req_whole(d, "cpu_count", what, 1, MAX_CORES),
        cpu_model=f.req_text(d, "cpu_model", what),
        memory_total=f.req_whole(d, "memory_total", what),
        physical_cores=f.whole(d, "physical_cores", what, 1, MAX_CORES, optional=True),
    )


# -- devices -----------------------------------------------------------------------------------
def encode_device(dev: DeviceInfo) -> dict[str, Any]:
    return {
        "host": dev.host,
        "index": dev.index,
        "uuid": dev.uuid,
        "name": dev.name,
        "memory_total": dev.memory_total,
        "memory_reserved": dev.memory_reserved,
        "power_limit_w": f.finite(dev.power_limit_w),
        "architecture": dev.architecture,
        "compute_capability": (
            list(dev.compute_capability) if dev.compute_capability is not None else None
        ),
        "unsupported": sorted(dev.unsupported),
    }


def decode_device(obj: object) -> DeviceInfo:
    d = f.obj(obj, "a device")
    index = f.req_whole(d, "index", "a device", 0, MAX_DEVICES - 1)
    what = f"device {index}"
    uuid = f.req_text(d, "uuid", what)
    if not uuid:
        raise WireError(f"{what}: 'uuid' is empty.")
    cc_raw = f.seq(d, "compute_capability", what, 2, optional=True)
    cc: tuple[int, int] | None = None
    if cc_raw is not None:
        if len(cc_raw) != 2:
            raise WireError(f"{what}: 'compute_capability' must be [major, minor].")
        cc = (
            f.check_int(cc_raw[0], f"{what}: compute capability", 0, 1000),
            f.check_int(cc_raw[1], f"{what}: compute capability", 0, 1000),
        )
    unsupported = f.req_seq(d, "unsupported", what, 64)
    names: set[str] = set()
    for name in unsupported:
        if not isinstance(name, str) or len(name) > 64:
            raise WireError(f"{what}: 'unsupported' must list metric names.")
        names.add(name)
    return DeviceInfo(
        host=f.req_text(d, "host", what),
        index=index,
        uuid=uuid,
        name=f.req_text(d, "name", what),
        memory_total=f.req_whole(d, "memory_total", what),
        # Older agents do not send it.
        memory_reserved=f.whole(d, "memory_reserved", what, optional=True),
        power_limit_w=f.num(d, "power_limit_w", what, 0.0, 1e6, optional=True),
        architecture=f.text(d, "architecture", what, optional=True),
        compute_capability=cc,
        unsupported=frozenset(names),
    )


def _decode_devices(d: Mapping[str, Any], what: str) -> tuple[DeviceInfo, ...]:
    return tuple(decode_device(x) for x in f.req_seq(d, "devices", what, MAX_DEVICES))


# -- ticks -------------------------------------------------------------------------------------
def _encode_gpu_process(p: GpuProcess) -> dict[str, Any]:
    return {"pid": p.pid, "used_memory": p.used_memory, "sm_util": f.finite(p.sm_util)}


def _encode_device_sample(s: DeviceSample) -> dict[str, Any]:
    return {
        "uuid": s.uuid,
        "index": s.index,
        "ts": s.ts,
        "gpu_util": f.finite(s.gpu_util),
        "mem_util": f.finite(s.mem_util),
        "mem_used": s.mem_used,
        "power_w": f.finite(s.power_w),
        "energy_mj": s.energy_mj,
        "temp_c": f.finite(s.temp_c),
        "sm_clock_mhz": f.finite(s.sm_clock_mhz),
        "mem_clock_mhz": f.finite(s.mem_clock_mhz),
        "processes": [_encode_gpu_process(p) for p in s.processes],
        "lost": s.lost,
    }


def _encode_process(p: ProcessSample) -> dict[str, Any]:
    out = {
        "pid": p.pid,
        "create_time": p.create_time,
        "name": p.name,
        "cmdline": p.cmdline[:MAX_CMDLINE],
        "user": p.user,
        "cpu_percent": f.finite(p.cpu_percent) or 0.0,
        "rss": p.rss,
        "cpu_time_s": f.finite(p.cpu_time_s) or 0.0,
    }
    if p.owner is not None:  # left out when nobody looked: old collectors never see the key
        out["owner"] = encode_owner(p.owner)
    return out


def encode_owner(owner: Owner) -> dict[str, Any]:
    """Only the fields that are known; ``unreadable`` as a sorted list when not empty."""
    out: dict[str, Any] = {}
    for name in OWNER_FIELDS:
        value = getattr(owner, name)
        if value is not None:
            out[name] = value if name in INT_FIELDS else value[:MAX_TEXT]
    if owner.unreadable:
        out["unreadable"] = sorted(owner.unreadable)
    return out


def decode_owner(obj: object, what: str = "an owner") -> Owner:
    """An owner from the wire. Keys this version does not know are ignored (a newer agent may
    send more), and so are source names in ``unreadable`` outside ``SOURCES``; a known key
    with a wrong type or size is a WireError, like any other field."""
    d = f.obj(obj, what)
    values: dict[str, Any] = {}
    for name in OWNER_FIELDS:
        if name in INT_FIELDS:
            values[name] = f.whole(d, name, what, 0, f.MAX_UID, optional=True)
        else:
            values[name] = f.text(d, name, what, optional=True)
    raw = f.seq(d, "unreadable", what, f.MAX_SOURCES, optional=True)
    sources: set[str] = set()
    for source in raw or ():
        if not isinstance(source, str) or len(source) > f.MAX_SOURCE:
            raise WireError(f"{what}: 'unreadable' must list source names.")
        if source in SOURCES:
            sources.add(source)
    return Owner(**values, unreadable=frozenset(sources))


def _encode_host_sample(h: HostSample) -> dict[str, Any]:
    return {
        "ts": h.ts,
        "cpu_percent": f.finite(h.cpu_percent) or 0.0,
        "per_core": [f.finite(c) or 0.0 for c in h.per_core],
        "load1": h.load1,
        "load5": h.load5,
        "load15": h.load15,
        "mem_used": h.mem_used,
        "mem_total": h.mem_total,
        "swap_used": h.swap_used,
        "disk_read_bps": h.disk_read_bps,
        "disk_write_bps": h.disk_write_bps,
        "net_rx_bps": h.net_rx_bps,
        "net_tx_bps": h.net_tx_bps,
        "cpu_energy_uj": list(h.cpu_energy_uj) if h.cpu_energy_uj is not None else None,
        "cpu_energy_range_uj": (
            list(h.cpu_energy_range_uj) if h.cpu_energy_range_uj is not None else None
        ),
        "processes": [_encode_process(p) for p in h.processes],
    }


def encode_tick(tick: Tick) -> dict[str, Any]:
    """A tick without its energy intervals (the reader computes its own)."""
    return {
        "ts": tick.ts,
        "host": tick.host,
        "host_sample": _encode_host_sample(tick.host_sample) if tick.host_sample else None,
        "devices": [_encode_device_sample(d) for d in tick.devices],
    }


def _decode_gpu_process(obj: object, what: str) -> GpuProcess:
    d = f.obj(obj, f"{what}: a process")
    pid = f.req_whole(d, "pid", f"{what}: a process", 0, MAX_PID)
    pw = f"{what}: process {pid}"
    return GpuProcess(
        pid=pid,
        used_memory=f.whole(d, "used_memory", pw, optional=True),
        sm_util=f.num(d, "sm_util", pw, 0.0, 100.0, optional=True),
    )


def _decode_device_sample(obj: object) -> DeviceSample:
    d = f.obj(obj, "a device sample")
    index = f.req_whole(d, "index", "a device sample", 0, MAX_DEVICES - 1)
    what = f"the sample of device {index}"
    uuid = f.req_text(d, "uuid", what)
    procs = f.req_seq(d, "processes", what, MAX_PROCESSES)
    return DeviceSample(
        uuid=uuid,
        index=index,
        ts=f.req_num(d, "ts", what, 0.0, MAX_TS),
        gpu_util=f.num(d, "gpu_util", what, 0.0, 100.0, optional=True),
        mem_util=f.num(d, "mem_util", what, 0.0, 100.0, optional=True),
        mem_used=f.whole(d, "mem_used", what, optional=True),
        power_w=f.num(d, "power_w", what, 0.0, 1e6, optional=True),
        energy_mj=f.whole(d, "energy_mj", what, optional=True),
        temp_c=f.num(d, "temp_c", what, -273.15, 1000.0, optional=True),
        sm_clock_mhz=f.num(d, "sm_clock_mhz", what, 0.0, 1e6, optional=True),
        mem_clock_mhz=f.num(d, "mem_clock_mhz", what, 0.0, 1e6, optional=True),
        processes=tuple(_decode_gpu_process(p, what) for p in procs),
        lost=f.flag(d, "lost", what, default=False),
    )


def _decode_process(obj: object) -> ProcessSample:
    d = f.obj(obj, "a host process")
    pid = f.req_whole(d, "pid", "a host process", 0, MAX_PID)
    what = f"host process {pid}"
    return ProcessSample(
        pid=pid,
        create_time=f.req_num(d, "create_time", what, 0.0, MAX_TS),
        name=f.req_text(d, "name", what),
        cmdline=f.req_text(d, "cmdline", what, limit=MAX_CMDLINE),
        user=f.req_text(d, "user", what),
        cpu_percent=f.req_num(d, "cpu_percent", what, 0.0, 100.0 * MAX_CORES),
        rss=f.req_whole(d, "rss", what),
        cpu_time_s=f.req_num(d, "cpu_time_s", what),
        owner=_decode_optional_owner(d, what),
    )


def _decode_optional_owner(d: Mapping[str, Any], what: str) -> Owner | None:
    raw = f.field(d, "owner", what, optional=True)  # old agents do not send it
    return None if raw is None else decode_owner(raw, f"{what}: the owner")


def _counters(d: Mapping[str, Any], key: str, what: str) -> tuple[int, ...] | None:
    raw = f.seq(d, key, what, MAX_PACKAGES, optional=True)
    if raw is None:
        return None
    return tuple(f.check_int(v, f"{what}: '{key}'", 0, MAX_U64) for v in raw)


def _decode_host_sample(obj: object) -> HostSample:
    what = "the host sample"
    d = f.obj(obj, what)
    per_core = f.req_seq(d, "per_core", what, MAX_CORES)
    cores: list[float] = []
    for value in per_core:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WireError(f"{what}: 'per_core' must list numbers.")
        if not 0.0 <= float(value) <= 100.0:
            raise WireError(f"{what}: 'per_core' values must be between 0 and 100.")
        cores.append(float(value))
    procs = f.req_seq(d, "processes", what, MAX_PROCESSES)
    return HostSample(
        ts=f.req_num(d, "ts", what, 0.0, MAX_TS),
        cpu_percent=f.req_num(d, "cpu_percent", what, 0.0, 100.0),
        per_core=tuple(cores),
        load1=f.req_num(d, "load1", what),
        load5=f.req_num(d, "load5", what),
        load15=f.req_num(d, "load15", what),
        mem_used=f.req_whole(d, "mem_used", what),
        mem_total=f.req_whole(d, "mem_total", what),
        swap_used=f.req_whole(d, "swap_used", what),
        disk_read_bps=f.req_num(d, "disk_read_bps", what),
        disk_write_bps=f.req_num(d, "disk_write_bps", what),
        net_rx_bps=f.req_num(d, "net_rx_bps", what),
        net_tx_bps=f.req_num(d, "net_tx_bps", what),
        cpu_energy_uj=_counters(d, "cpu_energy_uj", what),
        cpu_energy_range_uj=_counters(d, "cpu_energy_range_uj", what),
        processes=tuple(_decode_process(p) for p in procs),
    )


def decode_tick(obj: object) -> Tick:
    what = "a sample"
    d = f.obj(obj, what)
    ts = f.req_num(d, "ts", what, 0.0, MAX_TS)
    host = f.req_text(d, "host", what)
    raw_host = f.field(d, "host_sample", what, optional=True)
    devices = f.req_seq(d, "devices", what, MAX_DEVICES)
    return Tick(
        ts=ts,
        host=host,
        host_sample=_decode_host_sample(raw_host) if raw_host is not None else None,
        devices=tuple(_decode_device_sample(x) for x in devices),
    )


# -- documents ---------------------------------------------------------------------------------
def _check_format(d: Mapping[str, Any], what: str) -> None:
    fmt = f.field(d, "format", what, optional=False)
    if fmt != FORMAT or isinstance(fmt, bool):
        raise WireError(
            f"{what} is in format {fmt!r:.20} and this Costmeter reads format {FORMAT}; "
            "run the same Costmeter version on both machines."
        )


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What ``/v1/info`` says about an agent."""

    version: str
    host: HostInfo
    devices: tuple[DeviceInfo, ...]
    interval_s: float
    oldest: float | None
    newest: float | None
    gpu_mode: str
    messages: tuple[str, ...] = ()


def encode_info(info: AgentInfo) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": info.version,
        "host": encode_host(info.host),
        "devices": [encode_device(d) for d in info.devices],
        "interval_s": info.interval_s,
        "oldest": info.oldest,
        "newest": info.newest,
        "gpu_mode": info.gpu_mode,
        "messages": list(info.messages),
    }


def decode_info(obj: object) -> AgentInfo:
    what = "the agent's info"
    d = f.obj(obj, what)
    _check_format(d, what)
    gpu_mode = f.req_text(d, "gpu_mode", what)
    if gpu_mode not in GPU_MODES:
        raise WireError(f"{what}: 'gpu_mode' must be one of {', '.join(GPU_MODES)}.")
    messages = f.req_seq(d, "messages", what, MAX_MESSAGES)
    if not all(isinstance(m, str) and len(m) <= MAX_TEXT for m in messages):
        raise WireError(f"{what}: 'messages' must list short strings.")
    return AgentInfo(
        version=f.req_text(d, "version", what),
        host=decode_host(f.field(d, "host", what, optional=False)),
        devices=_decode_devices(d, what),
        interval_s=f.req_num(d, "interval_s", what, 1e-3, 86400.0),
        oldest=f.num(d, "oldest", what, 0.0, MAX_TS, optional=True),
        newest=f.num(d, "newest", what, 0.0, MAX_TS, optional=True),
        gpu_mode=gpu_mode,
        messages=tuple(messages),
    )


@dataclass(frozen=True, slots=True)
class SamplesPage:
    """One page of ``/v1/samples``: ticks in ascending ts order after the asked ``since``."""

    host: HostInfo
    devices: tuple[DeviceInfo, ...]
    ticks: tuple[Tick, ...]
    more: bool
    next_since: float | None
    oldest: float | None


def encode_samples_page(page: SamplesPage) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "host": encode_host(page.host),
        "devices": [encode_device(d) for d in page.devices],
        "samples": [encode_tick(t) for t in page.ticks],
        "more": page.more,
        "next_since": page.next_since,
        "oldest": page.oldest,
    }


def _quick_or_checked_tick(obj: object) -> Tick:
    try:
        return fast_tick(obj)
    except Miss:
        return decode_tick(obj)  # the same value, or the WireError that names the problem


def decode_samples_page(obj: object) -> SamplesPage:
    """The page in ``obj``; each tick through the quick decoder, any it refuses checked
    field by field (:mod:`costmeter.sampling.wire_fast`)."""
    return _decode_samples_page(obj, _quick_or_checked_tick)


def read_samples_page(data: bytes | str, *, max_bytes: int = MAX_BYTES) -> SamplesPage:
    """``loads`` then ``decode_samples_page``, with the cyclic garbage collector paused.

    A backfill page is hundreds of thousands of small objects, none in a cycle; left on, the
    collector walks them again and again while they are built (about a third of the decode
    time, bench/bench_backfill.py). It is switched back on afterwards if it was on before.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        return decode_samples_page(loads(data, max_bytes=max_bytes))
    finally:
        if was_on:
            gc.enable()


def decode_samples_page_checked(obj: object) -> SamplesPage:
    """The same page with every tick checked field by field (the fuzz tests' and the
    benchmark's reference)."""
    return _decode_samples_page(obj, decode_tick)


def _decode_samples_page(obj: object, decode: Callable[[object], Tick]) -> SamplesPage:
    what = "the page of samples"
    d = f.obj(obj, what)
    _check_format(d, what)
    raw_ticks = f.req_seq(d, "samples", what, MAX_TICKS)
    ticks = tuple(map(decode, raw_ticks))
    if any(b.ts <= a.ts for a, b in itertools.pairwise(ticks)):
        raise WireError(f"{what}: the samples are not in ascending time order.")
    return SamplesPage(
        host=decode_host(f.field(d, "host", what, optional=False)),
        devices=_decode_devices(d, what),
        ticks=ticks,
        more=f.flag(d, "more", what),
        next_since=f.num(d, "next_since", what, 0.0, MAX_TS, optional=True),
        oldest=f.num(d, "oldest", what, 0.0, MAX_TS, optional=True),
    )


# -- bytes -------------------------------------------------------------------------------------
def dumps(doc: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN and infinity are refused (they are not JSON)."""
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError as err:
        raise WireError(f"a document could not be written as JSON: {err}.") from err


def loads(data: bytes | str, *, max_bytes: int = MAX_BYTES) -> object:
    """Parse a JSON document of at most ``max_bytes``; anything malformed is a WireError."""
    if len(data) > max_bytes:
        raise WireError(f"the document is larger than {max_bytes} bytes.")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError as err:
        raise WireError("the document is not UTF-8 text.") from err
    except RecursionError as err:
        raise WireError("the document is nested too deeply.") from err
    except ValueError as err:  # JSONDecodeError, and integers with too many digits
        raise WireError(f"the document is not valid JSON: {err}.") from err


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
