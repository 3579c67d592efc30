"""The agent's JSON codec (``costmeter.sampling.wire``): round trips and hostile input."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.core import SimulatedClock
from costmeter.core.model import (
    DeviceInfo,
    DeviceSample,
    GpuProcess,
    HostInfo,
    HostSample,
    ProcessSample,
    Tick,
)
from costmeter.core.owner import OWNER_FIELDS, SOURCES, Owner
from costmeter.sampling import wire
from costmeter.sampling.node import NodeSampler
from costmeter.sampling.wire import (
    AgentInfo,
    SamplesPage,
    WireError,
    decode_device,
    decode_host,
    decode_info,
    decode_samples_page,
    decode_tick,
    encode_device,
    encode_host,
    encode_info,
    encode_samples_page,
    encode_tick,
)

T0 = 1_700_000_000.0
FUZZ = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def real_readings(n: int = 3) -> list[dict[str, Any]]:
    """Readings from the real samplers (this machine's host, simulated GPUs)."""
    clock = SimulatedClock(T0)
    sampler = NodeSampler(hostname="gpu-box", simulate="a100:train,h100:idle", seed=1, clock=clock)
    out = []
    try:
        for _ in range(n):
            clock.advance(1.0)
            out.append(sampler.sample([], {4242: [0]}))
    finally:
        sampler.close()
    return out


def through_json(doc: object) -> object:
    return json.loads(wire.dumps(doc))  # type: ignore[arg-type]


def test_real_ticks_host_and_devices_round_trip_through_json() -> None:
    readings = real_readings()
    for reading in readings:
        tick: Tick = reading["tick"]
        assert tick.devices and tick.host_sample is not None
        back = decode_tick(through_json(encode_tick(tick)))
        assert back == tick  # no intervals on either side: they are not sent
        assert back.devices[0].energy_mj == tick.devices[0].energy_mj  # cumulative counter
        assert decode_host(through_json(encode_host(reading["host"]))) == reading["host"]
        for dev in reading["devices"]:
            assert decode_device(through_json(encode_device(dev))) == dev


def test_intervals_are_not_sent() -> None:
    tick = real_readings(1)[0]["tick"]
    doc = encode_tick(tick)
    assert "device_intervals" not in doc and "host_interval" not in doc


def test_a_samples_page_and_the_info_round_trip() -> None:
    readings = real_readings(4)
    host, devices = readings[0]["host"], readings[0]["devices"]
    page = SamplesPage(
        host=host,
        devices=devices,
        ticks=tuple(r["tick"] for r in readings),
        more=True,
        next_since=readings[-1]["tick"].ts,
        oldest=readings[0]["tick"].ts,
    )
    assert decode_samples_page(through_json(encode_samples_page(page))) == page
    info = AgentInfo(
        version="0.1.0",
        host=host,
        devices=devices,
        interval_s=1.0,
        oldest=None,
        newest=T0,
        gpu_mode="simulated",
        messages=("gpu 1: power not supported",),
    )
    doc = through_json(encode_info(info))
    assert isinstance(doc, dict) and doc["format"] == wire.FORMAT
    assert decode_info(doc) == info


def test_a_page_out_of_order_is_refused() -> None:
    readings = real_readings(2)
    doc = encode_samples_page(
        SamplesPage(
            host=readings[0]["host"],
            devices=(),
            ticks=(readings[1]["tick"], readings[0]["tick"]),
            more=False,
            next_since=None,
            oldest=None,
        )
    )
    with pytest.raises(WireError, match="ascending"):
        decode_samples_page(doc)


def test_another_format_is_refused_with_advice() -> None:
    info = encode_info(
        AgentInfo("0.1", real_readings(1)[0]["host"], (), 1.0, None, None, "none", ())
    )
    for bad in (2, "1", True, None):
        info["format"] = bad
        with pytest.raises(WireError, match="same Costmeter version"):
            decode_info(info)
    del info["format"]
    with pytest.raises(WireError, match="has no 'format'"):
        decode_info(info)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("ts",), "soon", "'ts' must be a number"),
        (("ts",), -1, "between"),
        (("ts",), True, "must be a number"),
        (("host",), 7, "'host' must be a string"),
        (("devices",), {}, "must be a list"),
        (("devices", 0, "gpu_util"), 250.0, "between 0 and 100"),
        (("devices", 0, "energy_mj"), 1.5, "whole number"),
        (("devices", 0, "energy_mj"), -3, "between"),
        (("devices", 0, "processes"), "x", "must be a list"),
        (("devices", 0, "lost"), "no", "true or false"),
        (("host_sample", "cpu_percent"), None, "must be a number"),
        (("host_sample", "per_core"), [1, "x"], "must list numbers"),
        (("host_sample", "processes"), [None], "must be a JSON object"),
        (("host_sample", "mem_used"), 2**70, "between"),
    ],
)
def test_wrong_fields_give_a_sentence(path: tuple[Any, ...], value: object, message: str) -> None:
    doc = encode_tick(real_readings(1)[0]["tick"])
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(WireError, match=message) as err:
        decode_tick(doc)
    assert str(err.value).endswith(".")


def test_missing_fields_are_named() -> None:
    doc = encode_tick(real_readings(1)[0]["tick"])
    for key in list(doc):
        broken = copy.deepcopy(doc)
        del broken[key]
        if key == "host_sample":  # optional: a tick may carry only GPUs
            assert decode_tick(broken).host_sample is None
            continue
        with pytest.raises(WireError, match=f"has no '{key}'"):
            decode_tick(broken)


def test_sizes_are_not_taken_on_trust() -> None:
    doc = encode_tick(real_readings(1)[0]["tick"])
    doc["devices"] = [doc["devices"][0]] * (wire.MAX_DEVICES + 1)
    with pytest.raises(WireError, match="more than"):
        decode_tick(doc)
    host = encode_host(real_readings(1)[0]["host"])
    host["hostname"] = "h" * (wire.MAX_TEXT + 1)
    with pytest.raises(WireError, match="longer than"):
        decode_host(host)


def test_loads_refuses_what_is_not_json() -> None:
    for bad in (b"", b"{", b"\xff\xfe", b"NaN", b'{"a": Infinity}', b"[" * 100_000, b"9" * 5000):
        with pytest.raises(WireError):
            wire.loads(bad)
    with pytest.raises(WireError, match="larger than"):
        wire.loads(b"[]" * 10, max_bytes=5)
    assert wire.loads(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}


def test_dumps_refuses_nan_and_encoders_send_null_for_it() -> None:
    with pytest.raises(WireError):
        wire.dumps({"x": float("nan")})
    sample = DeviceSample(uuid="GPU-1", index=0, ts=T0, power_w=float("nan"))
    tick = Tick(ts=T0, host="h", host_sample=None, devices=(sample,))
    assert decode_tick(through_json(encode_tick(tick))).devices[0].power_w is None


# -- property tests -----------------------------------------------------------------------------
finite = st.floats(min_value=0, max_value=1e9, allow_nan=False)
pct = st.floats(min_value=0, max_value=100, allow_nan=False)
text = st.text(max_size=40)
u64 = st.integers(min_value=0, max_value=2**64 - 1)

gpu_processes = st.builds(
    GpuProcess,
    pid=st.integers(0, 2**31),
    used_memory=st.none() | u64,
    sm_util=st.none() | pct,
)
device_samples = st.builds(
    DeviceSample,
    uuid=text,
    index=st.integers(0, 255),
    ts=st.floats(0, wire.MAX_TS),
    gpu_util=st.none() | pct,
    mem_util=st.none() | pct,
    mem_used=st.none() | u64,
    power_w=st.none() | st.floats(0, 1e6),
    energy_mj=st.none() | u64,
    temp_c=st.none() | st.floats(-273.15, 1000),
    sm_clock_mhz=st.none() | st.floats(0, 1e6),
    mem_clock_mhz=st.none() | st.floats(0, 1e6),
    processes=st.lists(gpu_processes, max_size=3).map(tuple),
    lost=st.booleans(),
)
owners = st.none() | st.builds(
    Owner,
    uid=st.none() | st.integers(0, 2**32 - 1),
    **{name: st.none() | text for name in OWNER_FIELDS if name != "uid"},
    unreadable=st.frozensets(st.sampled_from(SOURCES)),
)
host_processes = st.builds(
    ProcessSample,
    pid=st.integers(0, 2**31),
    create_time=st.floats(0, wire.MAX_TS),
    name=text,
    cmdline=text,
    user=text,
    cpu_percent=st.floats(0, 6400),
    rss=u64,
    cpu_time_s=finite,
    owner=owners,
)
counters = st.none() | st.lists(u64, max_size=3).map(tuple)
host_samples = st.builds(
    HostSample,
    ts=st.floats(0, wire.MAX_TS),
    cpu_percent=pct,
    per_core=st.lists(pct, max_size=8).map(tuple),
    load1=finite,
    load5=finite,
    load15=finite,
    mem_used=u64,
    mem_total=u64,
    swap_used=u64,
    disk_read_bps=finite,
    disk_write_bps=finite,
    net_rx_bps=finite,
    net_tx_bps=finite,
    cpu_energy_uj=counters,
    cpu_energy_range_uj=counters,
    processes=st.lists(host_processes, max_size=3).map(tuple),
)
ticks = st.builds(
    Tick,
    ts=st.floats(0, wire.MAX_TS),
    host=text,
    host_sample=st.none() | host_samples,
    devices=st.lists(device_samples, max_size=3).map(tuple),
)
devices = st.builds(
    DeviceInfo,
    host=text,
    index=st.integers(0, 255),
    uuid=text.filter(bool),
    name=text,
    memory_total=u64,
    power_limit_w=st.none() | st.floats(0, 1e6),
    architecture=st.none() | text,
    compute_capability=st.none() | st.tuples(st.integers(0, 20), st.integers(0, 20)),
    unsupported=st.frozensets(st.sampled_from(("power_w", "energy_mj", "processes"))),
)
hosts = st.builds(
    HostInfo,
    hostname=text.filter(lambda s: bool(s.strip())),
    cpu_count=st.integers(1, 1024),
    cpu_model=text,
    memory_total=u64,
    physical_cores=st.none() | st.integers(1, 1024),
)


@FUZZ
@given(tick=ticks, host=hosts, device=devices)
def test_any_valid_value_round_trips(tick: Tick, host: HostInfo, device: DeviceInfo) -> None:
    assert decode_tick(through_json(encode_tick(tick))) == tick
    assert decode_host(through_json(encode_host(host))) == host
    assert decode_device(through_json(encode_device(device))) == device


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
DECODERS = (decode_tick, decode_host, decode_device, decode_info, decode_samples_page)


@FUZZ
@given(value=json_values)
def test_arbitrary_json_gives_a_clean_error_or_a_value(value: object) -> None:
    for decode in DECODERS:
        try:
            decode(value)
        except WireError as err:
            assert str(err)


def _mutations(doc: Any) -> st.SearchStrategy[Any]:
    """A valid document with one field anywhere in it replaced, removed, or duplicated."""

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [prefix] if prefix else []
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, (*prefix, i))
        return out

    all_paths = paths(doc)

    def mutate(path: tuple[Any, ...], value: object, delete: bool) -> Any:
        new = copy.deepcopy(doc)
        target = new
        for key in path[:-1]:
            target = target[key]
        if delete and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return new

    return st.builds(mutate, st.sampled_from(all_paths), json_values, st.booleans())


_readings = real_readings(2)
_page_doc = through_json(
    encode_samples_page(
        SamplesPage(
            host=_readings[0]["host"],
            devices=_readings[0]["devices"],
            ticks=tuple(r["tick"] for r in _readings),
            more=False,
            next_since=None,
            oldest=None,
        )
    )
)


@FUZZ
@given(doc=_mutations(_page_doc))
def test_a_page_with_any_one_field_broken_never_crashes(doc: Any) -> None:
    try:
        page = decode_samples_page(doc)
    except WireError as err:
        assert str(err)
    else:
        assert isinstance(page, SamplesPage)


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_loads_never_crashes_on_bytes(data: bytes) -> None:
    try:
        value = wire.loads(data)
    except WireError:
        return
    for decode in DECODERS:
        with contextlib.suppress(WireError):
            decode(value)


def test_huge_hostile_documents_are_refused_quickly() -> None:
    started = time.monotonic()
    nested = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    for data in (nested, b"[" + b"1," * 500_000 + b"1]", b'"' + b"x" * 2_000_000 + b'"'):
        try:
            value = wire.loads(data)
        except WireError:
            continue
        for decode in DECODERS:
            with pytest.raises(WireError):
                decode(value)
    page = copy.deepcopy(_page_doc)
    assert isinstance(page, dict)
    page["samples"] = [page["samples"][0]] * (wire.MAX_TICKS + 1)
    with pytest.raises(WireError, match="more than"):
        decode_samples_page(page)
    assert time.monotonic() - started < 10


# --- the quick decoder (wire_fast) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("devices", 0, "gpu_util"), True),  # a boolean is not a number on the wire
        (("devices", 0, "gpu_util"), 100.5),
        (("devices", 0, "mem_used"), 1.5),
        (("devices", 0, "temp_c"), -300),
        (("devices", 0, "lost"), None),
        (("devices", 0, "index"), wire.MAX_DEVICES),
        (("devices", 0, "ts"), 10**400),
        (("host_sample", "per_core"), [50.0, False]),
        (("host_sample", "per_core"), [50.0, 100.01]),
        (("host_sample", "cpu_energy_uj"), [-1]),
        (("host",), "h" * (wire.MAX_TEXT + 1)),
    ],
)
def test_a_field_the_quick_decoder_refuses_gets_the_checked_decoders_words(
    path: tuple[object, ...], value: object
) -> None:
    readings = real_readings(2)
    page: Any = through_json(
        encode_samples_page(
            SamplesPage(
                host=readings[0]["host"],
                devices=readings[0]["devices"],
                ticks=tuple(r["tick"] for r in readings),
                more=False,
                next_since=None,
                oldest=None,
            )
        )
    )
    assert wire.decode_samples_page(page) == wire.decode_samples_page_checked(page)
    target = page["samples"][1]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(WireError) as quick:
        wire.decode_samples_page(page)
    with pytest.raises(WireError) as checked:
        wire.decode_samples_page_checked(page)
    assert str(quick.value) == str(checked.value)
