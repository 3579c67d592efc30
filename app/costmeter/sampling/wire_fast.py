"""The quick way through a well-formed tick, for :mod:`costmeter.sampling.wire`.

A backfill page holds thousands of ticks; checking each field through the helpers of
:mod:`costmeter.sampling.wire_fields` (one call and a sentence ready per field) costs more than
parsing the JSON. These decoders test the same types and bounds inline and build the same
values, but say nothing: on anything they do not accept they raise :class:`Miss`, and the caller
decodes that tick again with the checked decoder, which names the problem. So a valid tick gives
an equal value either way, and an invalid one the checked decoder's WireError.
"""

from __future__ import annotations

from typing import Any

from costmeter.core.model import DeviceSample, GpuProcess, HostSample, ProcessSample, Tick
from costmeter.core.owner import INT_FIELDS, OWNER_FIELDS, SOURCES, Owner
from costmeter.sampling.wire_fields import (
    BIG,
    MAX_CMDLINE,
    MAX_CORES,
    MAX_DEVICES,
    MAX_PACKAGES,
    MAX_PID,
    MAX_PROCESSES,
    MAX_SOURCE,
    MAX_SOURCES,
    MAX_TEXT,
    MAX_TS,
    MAX_U64,
    MAX_UID,
)

__all__ = ["Miss", "fast_tick"]


class Miss(Exception):
    """Not accepted on the quick path: decode with the checked decoder instead."""


#: ``bool`` is a subclass of ``int`` but not a number on the wire; exact classes exclude it.
_NUMBERS = frozenset((int, float))


def _class(v: Any) -> type:
    return v.__class__


def _num(v: Any, lo: float, hi: float) -> float:
    # NaN (which wire.loads never gives, but a caller's object may hold) fails the comparison.
    cls = v.__class__  # through a name: mypy would narrow ``v`` to object
    if cls in _NUMBERS and lo <= v <= hi:
        return float(v)
    raise Miss


def _opt_num(v: Any, lo: float, hi: float) -> float | None:
    return None if v is None else _num(v, lo, hi)


def _whole(v: Any, lo: int = 0, hi: int = MAX_U64) -> int:
    if v.__class__ is int and lo <= v <= hi:
        return v
    raise Miss


def _opt_whole(v: Any) -> int | None:
    return None if v is None else _whole(v)


def _text(v: Any, limit: int = MAX_TEXT) -> str:
    if v.__class__ is str and len(v) <= limit:
        return v
    raise Miss


def _list(v: Any, limit: int) -> list[Any]:
    if v.__class__ is list and len(v) <= limit:
        return v
    raise Miss


def _dict(v: Any) -> dict[str, Any]:
    if v.__class__ is dict:
        return v
    raise Miss


def _gpu_process(d: Any) -> GpuProcess:
    d = _dict(d)
    return GpuProcess(
        pid=_whole(d["pid"], 0, MAX_PID),
        used_memory=_opt_whole(d.get("used_memory")),
        sm_util=_opt_num(d.get("sm_util"), 0.0, 100.0),
    )


def _device_sample(d: Any) -> DeviceSample:
    # The hot loop of a backfill (one call per GPU per tick): the checks are written out.
    if d.__class__ is not dict:
        raise Miss
    get = d.get
    lost = get("lost", False)
    procs = d["processes"]
    uuid = d["uuid"]
    index = d["index"]
    ts = d["ts"]
    if (
        lost.__class__ is not bool
        or procs.__class__ is not list
        or len(procs) > MAX_PROCESSES
        or uuid.__class__ is not str
        or len(uuid) > MAX_TEXT
        or index.__class__ is not int
        or not 0 <= index < MAX_DEVICES
        or _class(ts) not in _NUMBERS
        or not 0.0 <= ts <= MAX_TS
    ):
        raise Miss
    util, mutil, power, temp, sm, mclk = (
        get("gpu_util"),
        get("mem_util"),
        get("power_w"),
        get("temp_c"),
        get("sm_clock_mhz"),
        get("mem_clock_mhz"),
    )
    return DeviceSample(
        uuid=uuid,
        index=index,
        ts=float(ts),
        gpu_util=None if util is None else _num(util, 0.0, 100.0),
        mem_util=None if mutil is None else _num(mutil, 0.0, 100.0),
        mem_used=_opt_whole(get("mem_used")),
        power_w=None if power is None else _num(power, 0.0, 1e6),
        energy_mj=_opt_whole(get("energy_mj")),
        temp_c=None if temp is None else _num(temp, -273.15, 1000.0),
        sm_clock_mhz=None if sm is None else _num(sm, 0.0, 1e6),
        mem_clock_mhz=None if mclk is None else _num(mclk, 0.0, 1e6),
        processes=tuple(map(_gpu_process, procs)) if procs else (),
        lost=lost,
    )


_TEXT_FIELDS = frozenset(name for name in OWNER_FIELDS if name not in INT_FIELDS)
_SOURCES = frozenset(SOURCES)
_OWNERS: dict[tuple[tuple[str, Any], ...], Owner] = {}
_MAX_OWNERS = 4096


def _owner(v: Any) -> Owner | None:
    # Only the known fields are sent: walk what is there (keys this version does not know are
    # ignored, as by the checked decoder).
    if v is None:
        return None
    if v.__class__ is not dict:
        raise Miss
    values: dict[str, Any] = {}
    for key, x in v.items():
        if x is None:
            continue
        if key in _TEXT_FIELDS:
            if x.__class__ is not str or len(x) > MAX_TEXT:
                raise Miss
            values[key] = x
        elif key in INT_FIELDS:
            values[key] = _whole(x, 0, MAX_UID)
        elif key == "unreadable":
            names = _list(x, MAX_SOURCES)
            if not all(n.__class__ is str and len(n) <= MAX_SOURCE for n in names):
                raise Miss
            values[key] = _SOURCES.intersection(names)
    # A process sends the same owner with every tick: build each one once per many ticks.
    # The key holds only values checked above (str, int, frozenset), so equal keys are equal
    # owners (no 1 == True mix-ups).
    ident = tuple(values.items())
    owner = _OWNERS.get(ident)
    if owner is None:
        if len(_OWNERS) >= _MAX_OWNERS:
            _OWNERS.clear()
        owner = _OWNERS[ident] = Owner(**values)
    return owner


def _process(d: Any) -> ProcessSample:
    d = _dict(d)
    return ProcessSample(
        pid=_whole(d["pid"], 0, MAX_PID),
        create_time=_num(d["create_time"], 0.0, MAX_TS),
        name=_text(d["name"]),
        cmdline=_text(d["cmdline"], MAX_CMDLINE),
        user=_text(d["user"]),
        cpu_percent=_num(d["cpu_percent"], 0.0, 100.0 * MAX_CORES),
        rss=_whole(d["rss"]),
        cpu_time_s=_num(d["cpu_time_s"], 0.0, BIG),
        owner=_owner(d.get("owner")),
    )


def _counters(v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    return tuple(_whole(c) for c in _list(v, MAX_PACKAGES))


def _host_sample(d: Any) -> HostSample:
    d = _dict(d)
    raw_cores = _list(d["per_core"], MAX_CORES)
    if not all(_class(c) in _NUMBERS for c in raw_cores):
        raise Miss
    cores = tuple(map(float, raw_cores))
    if not all(0.0 <= c <= 100.0 for c in cores):  # NaN fails too (min/max would not)
        raise Miss
    procs = _list(d["processes"], MAX_PROCESSES)
    return HostSample(
        ts=_num(d["ts"], 0.0, MAX_TS),
        cpu_percent=_num(d["cpu_percent"], 0.0, 100.0),
        per_core=cores,
        load1=_num(d["load1"], 0.0, BIG),
        load5=_num(d["load5"], 0.0, BIG),
        load15=_num(d["load15"], 0.0, BIG),
        mem_used=_whole(d["mem_used"]),
        mem_total=_whole(d["mem_total"]),
        swap_used=_whole(d["swap_used"]),
        disk_read_bps=_num(d["disk_read_bps"], 0.0, BIG),
        disk_write_bps=_num(d["disk_write_bps"], 0.0, BIG),
        net_rx_bps=_num(d["net_rx_bps"], 0.0, BIG),
        net_tx_bps=_num(d["net_tx_bps"], 0.0, BIG),
        cpu_energy_uj=_counters(d.get("cpu_energy_uj")),
        cpu_energy_range_uj=_counters(d.get("cpu_energy_range_uj")),
        processes=tuple(map(_process, procs)) if procs else (),
    )


def fast_tick(obj: Any) -> Tick:
    """The tick in ``obj`` (as ``wire.decode_tick`` gives it); raises Miss on any doubt."""
    try:
        d = _dict(obj)
        raw_host = d.get("host_sample")
        return Tick(
            ts=_num(d["ts"], 0.0, MAX_TS),
            host=_text(d["host"]),
            host_sample=None if raw_host is None else _host_sample(raw_host),
            devices=tuple(map(_device_sample, _list(d["devices"], MAX_DEVICES))),
        )
    except (KeyError, TypeError) as err:  # a missing key; a value that cannot be compared
        raise Miss from err
