"""The checkpoint files in a run's output folders: a bounded listing for the advice and the
``checkpoints`` command, and the float32 bytes of each file (what half precision would save).

The listing looks at most ``MAX_ENTRIES`` entries per folder and ``MAX_DEPTH`` levels down
(a Hugging Face ``checkpoint-500/`` folder is one level): the whole tree's size comes from what
the storage watch measured, not from walking it again on every advice pass. Links are not
followed. Float32 bytes are measured by loading the file with torch (``weights_only=True``: no
code in the file runs) when torch is installed and the file is at most ``MAX_LOAD_BYTES``;
otherwise the whole file is taken as float32 and the figure is labelled an estimate.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Iterable
from dataclasses import replace
from pathlib import PurePath
from typing import Any

from costmeter.advice.checkpoints import TORCH_SUFFIXES, CheckpointFile, RunCheckpoints, describe
from costmeter.store.runs import RunRow

MAX_ENTRIES = 20_000
MAX_DEPTH = 3
MAX_LOAD_BYTES = 256 * 1024 * 1024
#: Files whose float32 bytes are remembered (by path, size and mtime) between advice passes.
MAX_CACHED = 10_000
#: Runs whose outputs the advice looks at, newest first.
MAX_RUNS = 50
#: The Hugging Face Trainer's state file in each checkpoint folder, and the most of it read.
TRAINER_STATE = "trainer_state.json"
MAX_STATE_BYTES = 16 * 1024 * 1024

_float32_cache: dict[tuple[str, int, int], int | None] = {}


def output_dirs(row: RunRow) -> tuple[str, ...]:
    """The run's output folders, from its spec (absolute paths, as ``--output-dir`` gave)."""
    dirs = row.spec.get("output_dirs") if isinstance(row.spec, dict) else None
    if not isinstance(dirs, list | tuple):
        return ()
    return tuple(str(d) for d in dirs if isinstance(d, str) and d)


def list_checkpoints(
    dirs: Iterable[str], *, max_entries: int = MAX_ENTRIES, measure: bool = True
) -> tuple[list[CheckpointFile], bool]:
    """Checkpoint files under ``dirs`` and whether the listing stopped at its bound."""
    found: list[CheckpointFile] = []
    partial = False
    for root in dirs:
        seen = 0
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        seen += 1
                        if seen > max_entries:
                            partial = True
                            break
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        if stat.S_ISDIR(st.st_mode):
                            if depth + 1 < MAX_DEPTH:
                                stack.append((entry.path, depth + 1))
                        elif stat.S_ISREG(st.st_mode):
                            f = describe(entry.path, st.st_size, st.st_mtime_ns, root)
                            if f is not None:
                                found.append(with_float32(f) if measure else f)
            except OSError:
                continue  # unreadable or vanished: the storage watch says so
            if seen > max_entries:
                break
    return mark_trainer_best(found), partial


def mark_trainer_best(files: list[CheckpointFile]) -> list[CheckpointFile]:
    """Mark as best the checkpoint a Hugging Face Trainer names in its newest
    ``trainer_state.json`` (``best_model_checkpoint``), when one does."""
    states = [f for f in files if PurePath(f.path).name == TRAINER_STATE and f.unit != f.path]
    if not states:
        return files
    newest = max(states, key=lambda f: (f.order, f.mtime_ns))
    try:
        if newest.bytes > MAX_STATE_BYTES:
            return files
        with open(newest.path, encoding="utf-8") as fh:
            best = json.load(fh).get("best_model_checkpoint")
    except (OSError, ValueError, AttributeError):
        return files
    if not isinstance(best, str) or not best:
        return files
    name = PurePath(best).name
    return [replace(f, best=True) if PurePath(f.unit).name == name else f for f in files]


def with_float32(f: CheckpointFile) -> CheckpointFile:
    """``f`` with the bytes of its float32 tensors (measured, else estimated)."""
    if PurePath(f.path).suffix.lower() not in TORCH_SUFFIXES:
        return f
    key = (f.path, f.bytes, f.mtime_ns)
    if key not in _float32_cache:
        if len(_float32_cache) >= MAX_CACHED:
            _float32_cache.clear()
        _float32_cache[key] = _measure_float32(f.path) if f.bytes <= MAX_LOAD_BYTES else None
    measured = _float32_cache[key]
    if measured is not None:
        return replace(f, float32_bytes=measured, float32_measured=True)
    return replace(f, float32_bytes=f.bytes, float32_measured=False)


def _measure_float32(path: str) -> int | None:
    try:
        import torch
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():  # torch's remarks on a file it refuses: said as "estimate"
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file, or one that needs code to load: estimated
        return None
    total = 0
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.dtype == torch.float32:
                total += item.numel() * 4
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return total


def run_checkpoints(row: RunRow, *, measure: bool = True) -> RunCheckpoints | None:
    """What the advice reads about one run's outputs; None without output folders."""
    dirs = output_dirs(row)
    if not dirs:
        return None
    files, partial = list_checkpoints(dirs, measure=measure)
    return RunCheckpoints(
        run_id=row.id,
        run_name=row.name,
        host=row.node or row.host or "",
        dirs=dirs,
        stored_bytes=int(row.storage_bytes or 0),
        stored_files=int(row.storage_files or 0),
        measured_at=float(row.ended or row.started or 0.0),
        files=tuple(files),
        listing_partial=partial,
    )


def gather_checkpoints(rows: Iterable[RunRow], limit: int = MAX_RUNS) -> tuple[RunCheckpoints, ...]:
    """The newest ``limit`` runs whose outputs were measured, with their checkpoint files."""
    out = []
    for row in rows:
        if row.storage_bytes is None or not row.storage_bytes:
            continue
        found = run_checkpoints(row)
        if found is not None and found.files:
            out.append(found)
        if len(out) >= limit:
            break
    return tuple(out)
