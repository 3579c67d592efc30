"""Checkpoint files of a run's output folders: what they are, which supersede which, what to keep.

Pure (standard library only): the names are read, never the files. A checkpoint is a file with
a checkpoint's extension whose name (or whose folder's name) carries a step or epoch number, as
real trainers write them (tests/data/checkpoints/PROVENANCE.md):

- PyTorch loops: ``model_epoch_3.pt``, ``ckpt-100.pt``, ``step_2000.pth``;
- PyTorch Lightning's ModelCheckpoint: ``epoch=3-step=1000.ckpt`` (and ``last.ckpt``);
- Hugging Face Trainer: a folder per save, ``checkpoint-500/`` holding ``model.safetensors``,
  ``optimizer.pt``, ``trainer_state.json``... (the folder is the checkpoint; its files go
  together).

Checkpoints of one *series* (same folder, same name once the numbers are taken out) supersede
each other: the plan keeps the last ``keep`` of each series by their numbers, and any whose name
says ``best``; the others are superseded. Files without a number (``last.ckpt``, ``final.pt``)
are never proposed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePath

#: Extensions of model and optimizer state files.
CHECKPOINT_SUFFIXES = frozenset(
    {".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".h5", ".keras", ".pkl", ".npz"}
)
#: Suffixes whose float32 tensors could be halved (a pickled torch state dict).
TORCH_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin"})
#: A folder that is one save of a trainer (Hugging Face: checkpoint-500; others: step_100...).
_UNIT_DIR = re.compile(r"^(?:checkpoint|ckpt|step|global_step|epoch|iter)[-_=]?\d+$", re.I)
_NUMBER = re.compile(r"\d+")
_BEST = re.compile(r"(?:^|[^a-z])best(?:[^a-z]|$)", re.I)


@dataclass(frozen=True, slots=True)
class CheckpointFile:
    """One file of a checkpoint, as listed (size and mtime to check it is unchanged later)."""

    path: str
    bytes: int
    mtime_ns: int
    #: The checkpoint it belongs to: the file itself, or its trainer's folder (checkpoint-500).
    unit: str
    #: Checkpoints that supersede each other share this ("/out|epoch=#-step=#.ckpt").
    series: str
    #: The numbers in the unit's name, in order (epoch, step): later is larger.
    order: tuple[int, ...]
    best: bool = False
    #: Bytes of float32 tensors in the file; None when not known. ``float32_measured``: read
    #: from the file (torch, weights only), else an estimate (the whole file).
    float32_bytes: int | None = None
    float32_measured: bool = False


def describe(path: str, size: int, mtime_ns: int, root: str) -> CheckpointFile | None:
    """``path`` (under the output folder ``root``) as a checkpoint file; None when it is not
    one (another extension, or no number in its name or its save folder's name)."""
    p = PurePath(path)
    parent = p.parent
    if _UNIT_DIR.match(parent.name) and str(parent) != root.rstrip("/"):
        unit = str(parent)
        name = parent.name
        series_dir = str(parent.parent)
    elif p.suffix.lower() in CHECKPOINT_SUFFIXES:
        unit, name, series_dir = path, p.name, str(parent)
    else:
        return None
    if unit == path and p.suffix.lower() not in CHECKPOINT_SUFFIXES:
        return None
    numbers = tuple(int(n) for n in _NUMBER.findall(name))
    best = bool(_BEST.search(name))
    if not numbers and not best:
        return None
    return CheckpointFile(
        path=path,
        bytes=size,
        mtime_ns=mtime_ns,
        unit=unit,
        series=f"{series_dir}|{_NUMBER.sub('#', name)}",
        order=numbers,
        best=best,
    )


@dataclass(frozen=True, slots=True)
class CheckpointPlan:
    """What to keep and what is superseded, per checkpoint (unit)."""

    keep: tuple[str, ...]
    #: The files of the superseded checkpoints, each to be deleted on its own.
    superseded: tuple[CheckpointFile, ...]
    #: Checkpoints named best (empty: which one is best is unknown).
    best: tuple[str, ...]
    #: Files kept that hold float32 tensors (what converting to half precision would halve).
    kept_files: tuple[CheckpointFile, ...] = field(default=())

    @property
    def superseded_bytes(self) -> int:
        return sum(f.bytes for f in self.superseded)

    @property
    def half_saving_bytes(self) -> int:
        """Bytes converting the kept float32 tensors to float16/bfloat16 would give back."""
        return sum((f.float32_bytes or 0) // 2 for f in self.kept_files)

    @property
    def half_saving_measured(self) -> bool:
        return all(f.float32_measured for f in self.kept_files if f.float32_bytes)


def plan(files: Iterable[CheckpointFile], keep: int) -> CheckpointPlan:
    """Keep the last ``keep`` checkpoints of each series and every one named best."""
    by_series: dict[str, dict[str, list[CheckpointFile]]] = {}
    for f in files:
        by_series.setdefault(f.series, {}).setdefault(f.unit, []).append(f)
    kept: list[str] = []
    best: list[str] = []
    superseded: list[CheckpointFile] = []
    kept_files: list[CheckpointFile] = []
    for units in by_series.values():
        ordered = sorted(units, key=lambda u: (units[u][0].order, u))
        last = set(ordered[-keep:]) if keep > 0 else set()
        for unit in ordered:
            is_best = any(f.best for f in units[unit])
            if is_best:
                best.append(unit)
            if unit in last or is_best or not units[unit][0].order:
                kept.append(unit)
                kept_files.extend(units[unit])
            else:
                superseded.extend(sorted(units[unit], key=lambda f: f.path))
    return CheckpointPlan(
        keep=tuple(sorted(kept)),
        superseded=tuple(superseded),
        best=tuple(sorted(best)),
        kept_files=tuple(kept_files),
    )


@dataclass(frozen=True, slots=True)
class RunCheckpoints:
    """A run's output folders as the advice reads them: the size last measured, and its
    checkpoint files (a bounded listing)."""

    run_id: int
    run_name: str
    host: str
    dirs: tuple[str, ...]
    #: Bytes and files last measured by the storage watch (``runs.storage_bytes``).
    stored_bytes: int
    stored_files: int
    measured_at: float
    files: tuple[CheckpointFile, ...]
    #: The listing stopped at its bound: more checkpoints may exist.
    listing_partial: bool = False
