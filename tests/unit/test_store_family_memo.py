"""``RunStore.family_runs`` keeps its answers and brings them up to date from the rows the store
writes (``_FamilyMemo``): whatever the writes, its answer is the one the query gives on the file
at that moment. Checked against a store that keeps nothing (``Store.runs()``'s kind, on a
connection of its own) over random sequences of inserts, updates, runs marked lost, and writes
through another connection; real SQLite files."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmeter.store.runs import RunStore

PREFIXES = ("python train.py", "python other.py", "true")
KEYS = (
    "gpus=1 python train.py --epochs 2",
    "gpus=1 python train.py --epochs 8",
    "gpus=0 python train.py --epochs 4",
    "gpus=1 python other.py",
    "gpus=0 true",
)
STATUSES = ("queued", "running", "succeeded", "failed", "lost")


def _columns() -> dict[str, st.SearchStrategy[object]]:
    """Columns of a run row, the family's among them, mostly such that the row qualifies."""
    return {
        "status": st.sampled_from(("succeeded", "succeeded", *STATUSES)),
        "cost": st.floats(0, 5, allow_nan=False) | st.none(),
        "currency": st.sampled_from(("USD", "USD", "EUR")) | st.none(),
        "started": st.floats(0, 100, allow_nan=False) | st.none(),
        "ended": st.floats(100, 200, allow_nan=False) | st.none(),
        "command_key": st.sampled_from(KEYS) | st.none(),
        "spec": st.fixed_dictionaries({"nproc_per_node": st.integers(1, 4)}),
        "run_dir": st.none() | st.sampled_from(("/tmp/a", "/tmp/b")),
        "host": st.none() | st.sampled_from(("host-a", "host-b")),
        "gpus": st.lists(st.integers(0, 2), max_size=2),
        "message": st.text(max_size=3),  # not a column the family reads
    }


def _new_row() -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(_columns())


def _changes() -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({}, optional=_columns())


_OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(("insert", "other insert")), _new_row()),
        st.tuples(st.sampled_from(("update", "other update")), st.integers(0, 30), _changes()),
        st.tuples(st.just("lost"), st.integers(0, 30)),
    ),
    min_size=8,
    max_size=40,
)
#: What is asked after every write: answers kept, of several sizes (full ones among them).
ASKED = [(p, c, n) for p in PREFIXES[::2] for c in ("USD", "EUR") for n in (1, 2, 50)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_kept_answers_equal_the_query_on_the_file(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.db"
        store = RunStore.open(path)
        other = RunStore.open(path)  # another writer: the memo must notice its writes
        plain = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        reference = RunStore(plain, path)  # keeps nothing
        ids: list[int] = []
        try:
            for op in ops:
                writer = other if str(op[0]).startswith("other") else store
                if op[0] in ("insert", "other insert"):
                    ids.append(writer.insert(name="r", backend="local", **_row(op[1])))  # type: ignore[arg-type]
                elif op[0] in ("update", "other update") and ids:
                    writer.update(ids[int(op[1]) % len(ids)], **_row(op[2]))  # type: ignore[arg-type]
                elif op[0] == "lost" and ids:
                    store.mark_lost(ids[int(op[1]) % len(ids)], ended=150.0, message="gone")
                for prefix, currency, limit in ASKED:
                    got = store.family_runs(prefix, currency=currency, limit=limit)
                    assert got == reference.family_runs(prefix, currency=currency, limit=limit)
        finally:
            store.close()
            other.close()
            plain.close()


def _row(values: dict[str, object]) -> dict[str, object]:
    row = dict(values)
    row.setdefault("spec", {})
    row.setdefault("gpus", [])
    return row


def test_a_full_answer_that_loses_a_run_takes_the_next_older_one(tmp_path: Path) -> None:
    """The path where merging is not enough: the newest 2 of 3 priced runs, the newest of them
    then failed (an own write): the oldest comes back in."""
    with RunStore.open(tmp_path / "runs.db") as store:
        ids = [
            store.insert(
                name="r",
                backend="local",
                spec={},
                status="succeeded",
                cost=1.0,
                currency="USD",
                started=0.0,
                ended=float(i + 1),
                command_key="gpus=0 true",
                gpus=[],
                pids=[],
            )
            for i in range(3)
        ]
        assert [r.id for r in store.family_runs("true", currency="USD", limit=2)] == ids[:0:-1]
        store.update(ids[2], status="failed")
        assert [r.id for r in store.family_runs("true", currency="USD", limit=2)] == [
            ids[1],
            ids[0],
        ]
        store.update(ids[0], cost=2.0)  # a priced run's cost changes: the answer has it
        assert [r.cost for r in store.family_runs("true", currency="USD", limit=2)] == [1.0, 2.0]
