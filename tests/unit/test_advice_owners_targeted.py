"""``advise`` reads free GPU time only where an owner can come of it, and names the same owners.

A recorded history (the real writer) of four GPUs over three hours: alice busy on GPU 0 and bob
holding GPU 1 doing nothing for the first 90 minutes, then bob on GPU 2; GPU 3 never runs a
process but a Costmeter run is placed on it for a while. The window starts and ends inside a
minute, so both the raw edges and the whole minutes are read. The targeted pass
(``free_of``) must give every set of GPUs and every run the owner the full pass gives.
"""

from __future__ import annotations

import gc
import itertools
import json
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import owned_history as oh
from costmeter.config import Config
from costmeter.core.owner import Owner
from costmeter.service.advice import advise, gc_paused
from costmeter.service.advice_owners import free_needed, owners_from
from costmeter.store import Store
from costmeter.store.runs import RunStore

T0 = 1_765_000_005.0  # five seconds into a minute
ALICE = Owner(uid=1001, user="alice")
BOB = Owner(uid=1002, user="bob", job_id="4242", account="nlp-lab")
GPUS = [f"GPU-{oh.HOST}-{i}" for i in range(4)]
HALF = 90 * 60


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    db = tmp_path_factory.mktemp("targeted") / "owners.db"
    first = oh.Stretch(
        T0,
        T0 + HALF,
        (oh.Holder(0, 5001, ALICE, 90.0, 300.0), oh.Holder(1, 5002, BOB, 0.0, 60.0)),
    )
    second = oh.Stretch(T0 + HALF, T0 + 2 * HALF, (oh.Holder(2, 5003, BOB, 0.0, 60.0),))
    oh.write(db, [first, second], devices=4)
    with RunStore.open(db) as runs:  # placed on GPU 3 during the first stretch only
        runs.insert(
            name="placed",
            backend="local",
            status="succeeded",
            host=oh.HOST,
            started=T0 + 600.5,
            ended=T0 + 1800.5,
            gpus=[3],
            pids=[],
            tags={"project": "vision"},
        )
    s = Store.open(db)
    yield s
    s.close()


def _subsets() -> list[frozenset[str]]:
    return [frozenset(c) for n in range(1, 5) for c in itertools.combinations(GPUS, n)]


@pytest.mark.parametrize(
    "window", [(T0 + 7.5, T0 + 2 * HALF - 2.5), (T0 + HALF + 30.5, T0 + 2 * HALF)]
)
def test_every_set_of_gpus_and_every_run_gets_the_full_pass_owner(
    store: Store, window: tuple[float, float]
) -> None:
    full = owners_from(store.attribution(*window))
    named = 0
    for s in _subsets():
        targeted = owners_from(store.attribution(*window, free_of=partial(free_needed, [s])))
        assert targeted.of_devices(s) == full.of_devices(s), sorted(s)
        assert targeted.runs == full.runs
        named += full.of_devices(s) is not None
    assert named >= 7  # not every set is nobody's: the comparison means something


def test_only_the_free_time_that_can_name_someone_is_read(store: Store) -> None:
    window = (T0 + 7.5, T0 + 2 * HALF - 2.5)
    full = store.attribution(*window)
    assert {f.uuid for f in full.free} == set(GPUS)
    # GPU 0 was held (alice): its free time is read, and GPU 3's, where a run was placed.
    some = store.attribution(*window, free_of=partial(free_needed, [frozenset(GPUS[:1])]))
    assert {f.uuid for f in some.free} == {GPUS[0], GPUS[3]}
    assert [f for f in full.free if f.uuid in (GPUS[0], GPUS[3])] == list(some.free)
    assert some.shares == full.shares and some.processes == full.processes
    # In the second stretch nobody held GPU 0 and no run was placed: nothing free is read.
    late = (T0 + HALF + 30.5, T0 + 2 * HALF)
    none = store.attribution(*late, free_of=partial(free_needed, [frozenset(GPUS[:1])]))
    assert none.free == () and owners_from(none).of_devices(GPUS[:1]) is None
    assert {s.uuid for s in none.shares} == {GPUS[2]}


def test_free_needed_takes_whole_sets_someone_held_part_of() -> None:
    sets = [frozenset({"a", "b"}), frozenset({"c"}), frozenset({"d", "e"})]
    assert free_needed(sets, frozenset({"b", "x"})) == {"a", "b"}
    assert free_needed(sets, frozenset()) == set()


def _as_json(store: Store) -> list[dict[str, Any]]:
    result = advise(store, Config(), since_s=2 * HALF, now=T0 + 2 * HALF + 1)
    return [r.to_json() for r in (*result.recommendations, *result.hidden)]


def test_advise_names_the_same_owners_as_with_the_full_pass(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    targeted = _as_json(store)
    full_pass = Store.attribution

    def full(self: Store, start: float, end: float, **kw: Any) -> Any:
        kw.pop("free_of", None)
        return full_pass(self, start, end, **kw)

    monkeypatch.setattr(Store, "attribution", full)
    assert json.dumps(targeted, sort_keys=True) == json.dumps(_as_json(store), sort_keys=True)
    owners = {r["target"].get("uuid"): r["target"].get("owner") for r in targeted}
    assert owners.get(GPUS[1]) == "bob (50 %)"  # held idle for half the window


def test_the_collector_is_paused_inside_and_left_as_it_was() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
