"""A process's owner on the agent's wire (costmeter.sampling.wire, wire_fast): sent with only
its known fields, read back equal by both decoders, old payloads without it read as None,
and anything malformed in it refused in words by the checked decoder and never accepted
differently by the quick one. Owners come from real data: this machine's processes read by
the real samplers, and the Slurm, Docker and Kubernetes cgroup and /proc files that
tests/data/attribution keeps (see its PROVENANCE.md)."""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.core import SimulatedClock
from costmeter.core.model import ProcessSample
from costmeter.core.owner import OWNER_FIELDS, SOURCES, Owner
from costmeter.sampling import wire, wire_fast
from costmeter.sampling.cgroup import parse_cgroup
from costmeter.sampling.node import NodeSampler
from costmeter.sampling.owner import read_owner
from costmeter.sampling.wire import SamplesPage, WireError

DATA = Path(__file__).resolve().parents[1] / "data" / "attribution"
T0 = 1_700_000_000.0
FULL = Owner(
    uid=1000,
    user="alice",
    job_id="4242",
    job_user="alice",
    account="cv-lab",
    partition="gpu",
    array_job_id="4240",
    array_task_id="2",
    container_id="f" * 64,
    pod_uid="0b2c5f2e-7d1a-4c43-9a4e-2f1f0d6b7c11",
    pod="train-0",
    namespace="vision",
    container="trainer",
    run_key="costmeter-7",
    unreadable=frozenset({"environ"}),
)


def real_owners() -> list[Owner]:
    """Owners read from real files: /proc entries of Slurm jobs and cgroup files of Slurm,
    Docker and Kubernetes nodes (tests/data/attribution), and this test's own process."""
    out = [read_owner(os.getpid())]
    proc = DATA / "proc"
    out += [read_owner(int(p.name), str(proc)) for p in sorted(proc.iterdir()) if p.name.isdigit()]
    for path in sorted((DATA / "cgroup").glob("*.cgroup")):
        found = parse_cgroup(path.read_text())
        out.append(
            Owner(
                uid=os.getuid(),
                job_id=found.job_id,
                container_id=found.container_id,
                pod_uid=found.pod_uid,
            )
        )
    return out


REAL = real_owners()


def real_page() -> dict[str, Any]:
    """A samples page of the real node sampler (this machine's processes, simulated GPUs),
    its processes carrying the real owners above."""
    clock = SimulatedClock(T0)
    sampler = NodeSampler(hostname="gpu-box", simulate="a100:train", seed=1, clock=clock)
    readings = []
    try:
        for _ in range(2):
            clock.advance(1.0)
            readings.append(sampler.sample([os.getpid()], {os.getpid(): [0]}))
    finally:
        sampler.close()
    ticks = []
    for r in readings:
        tick = r["tick"]
        hs = tick.host_sample
        assert hs is not None and hs.processes
        procs = list(hs.processes)  # this machine's, with the owners the sampler read
        # ProcessSample.user is the owner's user name where one was read ("?" otherwise).
        procs += [
            replace(procs[0], pid=50_000 + i, user=o.user or "?", owner=o)
            for i, o in enumerate(REAL)
        ]
        procs.append(replace(procs[0], pid=99_999, user="alice", owner=FULL))
        procs.append(replace(procs[0], pid=99_998, owner=None))
        ticks.append(replace(tick, host_sample=replace(hs, processes=tuple(procs))))
    page = SamplesPage(readings[0]["host"], readings[0]["devices"], tuple(ticks), False, None, None)
    doc: dict[str, Any] = json.loads(wire.dumps(wire.encode_samples_page(page)))
    return doc


PAGE = real_page()


def _procs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for t in doc["samples"] for p in t["host_sample"]["processes"]]


def test_real_owners_are_sent_with_their_known_fields_and_read_back_equal() -> None:
    assert any(o.job_id for o in REAL) and any(o.container_id for o in REAL)
    assert any(o.pod_uid for o in REAL)
    for owner in [*REAL, FULL, Owner()]:
        sent = json.loads(wire.dumps(wire.encode_owner(owner)))
        assert set(sent) == {n for n in OWNER_FIELDS if getattr(owner, n) is not None} | (
            {"unreadable"} if owner.unreadable else set()
        )
        assert wire.decode_owner(sent) == owner
        assert wire_fast._owner(sent) == owner
    quick = wire.decode_samples_page(PAGE)
    assert quick == wire.decode_samples_page_checked(PAGE)
    owners = [p.owner for t in quick.ticks for p in t.host_sample.processes]  # type: ignore[union-attr]
    assert FULL in owners and None in owners
    assert {o for o in owners if o is not None} >= set(REAL)


def test_an_old_agents_process_without_an_owner_reads_as_none() -> None:
    doc = copy.deepcopy(PAGE)
    for p in _procs(doc):
        p.pop("owner", None)
    for decode in (wire.decode_samples_page, wire.decode_samples_page_checked):
        page = decode(doc)
        assert all(p.owner is None for t in page.ticks for p in t.host_sample.processes)  # type: ignore[union-attr]
    explicit = copy.deepcopy(PAGE)
    _procs(explicit)[0]["owner"] = None
    assert wire.decode_samples_page(explicit).ticks[0].host_sample.processes[0].owner is None  # type: ignore[union-attr]


def test_a_process_without_an_owner_sends_no_key() -> None:
    p = ProcessSample(1, T0, "python", "python x.py", "alice", 1.0, 1, 1.0)
    assert "owner" not in wire._encode_process(p)


def test_keys_and_sources_this_version_does_not_know_are_ignored() -> None:
    sent = {"user": "alice", "uid": 7, "cluster": "north", "unreadable": ["environ", "ebpf"]}
    expected = Owner(uid=7, user="alice", unreadable=frozenset({"environ"}))
    assert wire.decode_owner(sent) == expected
    assert wire_fast._owner(sent) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("alice", "must be a JSON object"),
        ({"uid": -1}, "'uid' must be between 0 and 4294967295"),
        ({"uid": 2**32}, "'uid' must be between"),
        ({"uid": True}, "'uid' must be a whole number"),
        ({"uid": 1.5}, "'uid' must be a whole number"),
        ({"job_id": 4242}, "'job_id' must be a string"),
        ({"pod": "p" * (wire.MAX_TEXT + 1)}, "'pod' is longer than 1024"),
        ({"unreadable": "environ"}, "'unreadable' must be a list"),
        ({"unreadable": [1]}, "'unreadable' must list source names"),
        ({"unreadable": ["x" * 65]}, "'unreadable' must list source names"),
        ({"unreadable": ["environ"] * 17}, "'unreadable' has more than 16 entries"),
    ],
)
def test_a_malformed_owner_refuses_the_page_in_words(value: object, message: str) -> None:
    """Like every other field of the protocol: the page is refused with a sentence naming
    the process and the field, by both decoders (the quick one defers to the checked one)."""
    doc = copy.deepcopy(PAGE)
    proc = _procs(doc)[1]
    proc["owner"] = value
    for decode in (wire.decode_samples_page, wire.decode_samples_page_checked):
        with pytest.raises(WireError, match=message) as err:
            decode(doc)
        assert f"host process {proc['pid']}: the owner" in str(err.value)


def test_the_store_keeps_a_real_owner_from_the_wire(tmp_path: Path) -> None:
    """From the agent's bytes to the collector's store and back: equal owners."""
    from costmeter.store import RetentionPolicy, Store, Writer
    from costmeter.store.testing import host_info

    page = wire.read_samples_page(wire.dumps(PAGE))
    path = tmp_path / "c.db"
    writer = Writer(path, clock=SimulatedClock(T0), retention=RetentionPolicy(None, None, None))
    writer.start()
    writer.register(host_info("gpu-box"), page.devices)
    for t in page.ticks:
        writer.submit(t)
    assert writer.flush(10)
    writer.stop()
    sent = {(p.pid, p.create_time): p.owner for t in page.ticks for p in t.host_sample.processes}  # type: ignore[union-attr]
    with Store.open(path) as store:
        att = store.attribution(T0, T0 + 10)
    kept = {(p.pid, p.create_time): p.owner for p in att.processes.values()}
    assert kept.keys() == sent.keys()
    for key, owner in sent.items():
        if owner is None:
            # Nothing was read: only psutil's user name, as the processes row keeps it.
            assert kept[key].uid is None and not kept[key].unreadable
        else:
            assert kept[key] == owner


# -- the quick decoder agrees with the checked one on broken owners ------------------------------

ODD: list[Any] = [
    None,
    True,
    0,
    -1,
    2**32,
    2**64,
    1.5,
    "",
    "x" * 1025,
    [],
    {},
    ["environ"],
    ["uid", "cgroup", "environ"],
    [None],
    {"uid": 1},
    "NaN",
]
KEYS = [*OWNER_FIELDS, "unreadable", "extra"]


def broken_owner(rng: random.Random) -> Any:
    owner = copy.deepcopy(
        rng.choice([*(wire.encode_owner(o) for o in REAL), wire.encode_owner(FULL)])
    )
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice(KEYS)
        if rng.random() < 0.3:
            owner.pop(key, None)
        else:
            owner[key] = rng.choice([*ODD, rng.choice(SOURCES), rng.randrange(-5, 2**33)])
    return owner if rng.random() < 0.95 else rng.choice(ODD)


def _outcome(decode: Any, doc: object) -> object:
    try:
        return decode(doc)
    except WireError as err:
        return ("refused", str(err))


@settings(
    max_examples=3000,
    deadline=2000,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_the_quick_decoder_agrees_with_the_checked_one_on_broken_owners(seed: int) -> None:
    rng = random.Random(seed)
    doc = copy.deepcopy(PAGE)
    procs = _procs(doc)
    for _ in range(rng.randrange(1, 3)):
        rng.choice(procs)["owner"] = broken_owner(rng)
    quick = _outcome(wire.decode_samples_page, doc)
    checked = _outcome(wire.decode_samples_page_checked, doc)
    assert quick == checked
