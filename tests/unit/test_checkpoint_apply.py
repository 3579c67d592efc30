"""Deleting superseded checkpoints: exactly the listed files, one by one, and nothing else: not
a file outside the run's output folders, not a link (nor its target), not a folder, not a file
replaced since it was listed. The run's stored size follows the deletion."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from costmeter.service.checkpoint_apply import (
    CheckpointError,
    DeletionPlan,
    Listed,
    checkpoint_plan,
    delete_listed,
    deletion_from_changes,
    deletion_from_plan,
)
from costmeter.store.runs import RunStore


def _run(store: RunStore, out: Path) -> int:
    return store.insert(
        name="train",
        backend="local",
        spec={"argv": ["python", "t.py"], "output_dirs": [str(out)]},
        status="succeeded",
        created=time.time(),
        started=time.time() - 10,
        ended=time.time(),
        gpus=[],
        pids=[],
    )


def _files(out: Path, n: int = 5, size: int = 1000) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for e in range(1, n + 1):
        p = out / f"ckpt-{e}.pt"
        p.write_bytes(bytes([e]) * (size + e))
        paths.append(p)
    return paths


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore.open(tmp_path / "c.db")
    yield s
    s.close()


def test_deletes_exactly_the_superseded_files_and_records_the_new_size(
    store: RunStore, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    paths = _files(out)
    run_id = _run(store, out)
    found, p = checkpoint_plan(store, run_id, keep=2)
    deletion = deletion_from_plan(found, p)
    assert [f.path for f in deletion.files] == [str(x) for x in paths[:3]]
    heard: list[str] = []
    outcomes = delete_listed(
        deletion, store, price_gb_month=0.08, on_each=lambda o: heard.append(o.text())
    )
    assert [o.deleted for o in outcomes] == [True] * 3 and len(heard) == 3
    assert sorted(out.iterdir()) == paths[3:]
    row = store.get(run_id)
    assert row is not None and row.storage_bytes == sum(x.stat().st_size for x in paths[3:])
    assert row.storage_cost == pytest.approx(row.storage_bytes / 1e9 * 0.08)
    assert store.storage_history(run_id)[-1].files == 2


def test_hostile_entries_are_skipped_and_said(store: RunStore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = _files(out, 6)
    outside = tmp_path / "precious.pt"
    outside.write_bytes(b"p" * 10)
    (out / "link-1.pt").symlink_to(outside)
    (out / "sub").mkdir()
    run_id = _run(store, out)

    def listed(p: Path) -> Listed:
        st = os.lstat(p)
        return Listed(str(p), st.st_size, st.st_mtime_ns)

    replaced = listed(paths[1])
    deletion = DeletionPlan(
        run_id,
        (str(out),),
        (
            listed(paths[0]),  # fine
            replaced,  # replaced below: skipped
            listed(outside),  # outside the run's folders
            listed(out / "link-1.pt"),  # a link: not followed, not deleted
            listed(out / "sub"),  # a folder
            Listed(str(out / "gone.pt"), 1, 1),  # vanished
            Listed(str(out / ".." / "precious.pt"), 10, 0),  # escapes with ..
        ),
    )
    time.sleep(0.01)
    paths[1].write_bytes(b"new content of the same name")  # the trainer rewrote it
    outcomes = delete_listed(deletion, store)
    reasons = {os.path.basename(o.path): (o.deleted, o.reason) for o in outcomes}
    assert reasons["ckpt-1.pt"] == (True, "")
    assert reasons["ckpt-2.pt"] == (False, "changed since it was listed")
    assert reasons["link-1.pt"] == (False, "a symbolic link (not followed)")
    assert reasons["sub"] == (False, "a folder (folders are never deleted)")
    assert reasons["gone.pt"] == (False, "no longer there")
    assert [o.reason for o in outcomes if o.path.endswith("precious.pt")] == [
        "not inside the run's output folders"
    ] * 2
    assert outside.read_bytes() == b"p" * 10 and paths[1].exists() and (out / "sub").is_dir()
    assert (out / "link-1.pt").is_symlink()


def test_a_folder_linked_into_the_output_is_not_a_way_out(store: RunStore, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    victim = _files(outside, 1)[0]
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint-1").symlink_to(outside)
    run_id = _run(store, out)
    st = victim.stat()
    via_link = Listed(str(out / "checkpoint-1" / victim.name), st.st_size, st.st_mtime_ns)
    [outcome] = delete_listed(DeletionPlan(run_id, (str(out),), (via_link,)), store)
    assert outcome.reason == "not inside the run's output folders" and victim.exists()


def test_the_recommendation_cannot_widen_the_folders(store: RunStore, tmp_path: Path) -> None:
    """The folders come from the run's row; a listing naming other files gets them skipped."""
    out = tmp_path / "out"
    _files(out, 3)
    other = tmp_path / "other.pt"
    other.write_bytes(b"o")
    run_id = _run(store, out)
    st = other.stat()
    changes = {
        "run": run_id,
        "files": [{"path": str(other), "bytes": 1, "mtime_ns": st.st_mtime_ns}],
    }
    deletion = deletion_from_changes(store, changes)
    assert deletion.dirs == (str(out),)
    assert not delete_listed(deletion, store)[0].deleted and other.exists()
    with pytest.raises(CheckpointError, match="does not list"):
        deletion_from_changes(store, {"files": []})
    with pytest.raises(CheckpointError, match="no longer in the database"):
        deletion_from_changes(store, {"run": 999, "files": []})


def test_a_run_without_output_folder_is_a_clear_error(store: RunStore, tmp_path: Path) -> None:
    run_id = store.insert(name="x", backend="local", spec={"argv": ["x"]}, status="succeeded")
    with pytest.raises(CheckpointError, match="--output-dir"):
        checkpoint_plan(store, run_id, 2)
    with pytest.raises(CheckpointError, match="no run 4242"):
        checkpoint_plan(store, 4242, 2)
