"""Deleting superseded checkpoints, only as listed and only after the user confirmed the list.

Qt-free: ``costmeter checkpoints --delete`` and the advice card's Apply (``delete_files``) both
list the files first (path, size, modification time), ask, then call ``delete_listed``, which
deletes the files one by one and says what happened to each. A file is skipped, and said, when:

- it is not under one of the run's output folders (after resolving links in its folders);
- it is a symbolic link (never followed: its target is someone else's), a folder (never
  deleted) or not a regular file;
- its size or modification time differ from the listing (it was replaced since);
- it is gone, or the deletion fails.

Afterwards the run's folders are measured again and the new size is recorded, so ``report`` and
the run's storage cost follow the deletion.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from costmeter.advice.checkpoints import CheckpointPlan, RunCheckpoints, plan
from costmeter.core import CostmeterError
from costmeter.cost.storage import monthly_cost
from costmeter.service.checkpoint_files import output_dirs, run_checkpoints
from costmeter.service.storage_watch import measure_dir
from costmeter.store.run_storage import StoredSize
from costmeter.store.runs import RunStore


class CheckpointError(CostmeterError):
    """The checkpoints cannot be listed or deleted as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Listed:
    """A file as the user saw it in the list."""

    path: str
    bytes: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Outcome:
    path: str
    bytes: int
    deleted: bool
    #: Why it was skipped, or the empty string when it was deleted.
    reason: str = ""

    def text(self) -> str:
        if self.deleted:
            return f"deleted {self.path} ({self.bytes} bytes)"
        return f"skipped {self.path}: {self.reason}"


@dataclass(frozen=True, slots=True)
class DeletionPlan:
    run_id: int
    dirs: tuple[str, ...]
    files: tuple[Listed, ...]

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


def checkpoint_plan(
    store: RunStore, run_id: int, keep: int
) -> tuple[RunCheckpoints, CheckpointPlan]:
    """The run's checkpoints and what keeping the last ``keep`` of each series means."""
    if keep < 0:
        raise CheckpointError(f"--keep must be 0 or more, not {keep}.")
    row = store.get(run_id)
    if row is None:
        raise CheckpointError(f"there is no run {run_id} in the database.")
    found = run_checkpoints(row)
    if found is None:
        raise CheckpointError(
            f"run {run_id} has no output folder: launch it with --output-dir DIR to have its "
            "checkpoints measured."
        )
    return found, plan(found.files, keep)


def deletion_from_plan(run: RunCheckpoints, p: CheckpointPlan) -> DeletionPlan:
    return DeletionPlan(
        run.run_id, run.dirs, tuple(Listed(f.path, f.bytes, f.mtime_ns) for f in p.superseded)
    )


def deletion_from_changes(store: RunStore, changes: Mapping[str, Any]) -> DeletionPlan:
    """The files a ``delete_files`` recommendation lists, checked to be well formed; the
    folders they may be in come from the run's row, not from the recommendation."""
    run_id = changes.get("run")
    raw = changes.get("files")
    if not isinstance(run_id, int) or isinstance(run_id, bool) or not isinstance(raw, list):
        raise CheckpointError("the recommendation does not list a run and its files.")
    row = store.get(run_id)
    if row is None:
        raise CheckpointError(f"run {run_id} is no longer in the database.")
    files = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise CheckpointError("the recommendation's file list is malformed.")
        path, size, mtime = item.get("path"), item.get("bytes"), item.get("mtime_ns")
        if not isinstance(path, str) or not isinstance(size, int) or not isinstance(mtime, int):
            raise CheckpointError("the recommendation's file list is malformed.")
        files.append(Listed(path, size, mtime))
    return DeletionPlan(run_id, output_dirs(row), tuple(files))


def _inside(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path``'s folder, links resolved, is one of ``roots`` (resolved) or under it."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for root in roots:
        real = os.path.realpath(root)
        if os.path.commonpath([folder, real]) == real:
            return True
    return False


def delete_one(f: Listed, roots: Sequence[str]) -> Outcome:
    if not os.path.isabs(f.path) or not _inside(f.path, roots):
        return Outcome(f.path, f.bytes, False, "not inside the run's output folders")
    try:
        st = os.lstat(f.path)
    except FileNotFoundError:
        return Outcome(f.path, f.bytes, False, "no longer there")
    except OSError as exc:
        return Outcome(f.path, f.bytes, False, f"cannot be read ({exc.strerror})")
    if stat.S_ISLNK(st.st_mode):
        return Outcome(f.path, f.bytes, False, "a symbolic link (not followed)")
    if stat.S_ISDIR(st.st_mode):
        return Outcome(f.path, f.bytes, False, "a folder (folders are never deleted)")
    if not stat.S_ISREG(st.st_mode):
        return Outcome(f.path, f.bytes, False, "not a regular file")
    if st.st_size != f.bytes or st.st_mtime_ns != f.mtime_ns:
        return Outcome(f.path, f.bytes, False, "changed since it was listed")
    try:
        os.unlink(f.path)
    except OSError as exc:
        return Outcome(f.path, f.bytes, False, f"could not be deleted ({exc.strerror})")
    return Outcome(f.path, f.bytes, True)


def delete_listed(
    deletion: DeletionPlan,
    store: RunStore | None = None,
    *,
    price_gb_month: float = 0.0,
    on_each: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Delete the listed files one by one (``on_each`` hears each), then record the run's
    outputs measured again (with ``store``)."""
    if not deletion.dirs:
        raise CheckpointError(f"run {deletion.run_id} has no output folder to delete from.")
    outcomes = []
    for f in deletion.files:
        outcome = delete_one(f, deletion.dirs)
        outcomes.append(outcome)
        if on_each is not None:
            on_each(outcome)
    if store is not None and any(o.deleted for o in outcomes):
        usages = [measure_dir(d) for d in deletion.dirs]
        total = sum(u.bytes for u in usages)
        store.add_storage(
            deletion.run_id,
            time.time(),
            [StoredSize(u.path, u.bytes, u.files) for u in usages],
            storage_cost=monthly_cost(total, price_gb_month),
        )
    return outcomes
