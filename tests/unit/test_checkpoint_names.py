"""Checkpoint names as real trainers write them (tests/data/checkpoints): which checkpoints
later ones supersede, what keeping the last K and the best keeps, and the GB it frees."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from costmeter.advice.checkpoints import describe, plan
from costmeter.service.checkpoint_files import list_checkpoints

DATA = Path(__file__).parents[1] / "data" / "checkpoints" / "layouts.toml"
LAYOUTS: list[dict[str, Any]] = tomllib.loads(DATA.read_text(encoding="utf-8"))["layout"]


def build(root: Path, files: list[list[Any]]) -> None:
    """The layout's files at their sizes (sparse: a 160 MB optimizer state takes no disk)."""
    for name, size in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(int(size))


@pytest.mark.parametrize("layout", LAYOUTS, ids=[lay["trainer"].split(":")[0] for lay in LAYOUTS])
def test_real_layouts_keep_the_last_two_and_name_the_superseded(
    tmp_path: Path, layout: dict[str, Any]
) -> None:
    out = tmp_path / "out"
    build(out, layout["files"])
    files, partial = list_checkpoints([str(out)], measure=False)
    p = plan(files, keep=2)
    gone = sorted(os.path.relpath(f.path, out) for f in p.superseded)
    assert gone == sorted(layout["superseded_keep_2"]) and not partial
    sizes = dict((n, s) for n, s in layout["files"])
    assert p.superseded_bytes == sum(sizes[n] for n in layout["superseded_keep_2"])


def test_hugging_face_trainer_state_names_the_best_checkpoint(tmp_path: Path) -> None:
    """trainer_state.json's best_model_checkpoint keeps checkpoint-500 although it is old."""
    out = tmp_path / "out"
    build(out, LAYOUTS[0]["files"])
    for step in (500, 1000, 1300):
        state = {"best_model_checkpoint": str(out / "checkpoint-500"), "global_step": step}
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    files, _ = list_checkpoints([str(out)], measure=False)
    p = plan(files, keep=1)
    assert p.best == (str(out / "checkpoint-500"),)
    assert {os.path.relpath(f.unit, out) for f in p.superseded} == {"checkpoint-1000"}
    # A checkpoint's files go together, its state file included.
    assert len(p.superseded) == 4


def test_best_files_and_files_without_a_number_are_never_superseded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out, LAYOUTS[2]["files"])
    p = plan(list_checkpoints([str(out)], measure=False)[0], keep=0)
    kept = {os.path.basename(u) for u in p.keep}
    assert kept == {"model_best.pt"} and len(p.superseded) == 5


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("ckpt-100.pt", (100,)),
        ("epoch=3-step=1000.ckpt", (3, 1000)),
        ("model_epoch_3.pt", (3,)),
        ("step_2000.pth", (2000,)),
        ("notes.txt", None),
        ("final.pt", None),
    ],
)
def test_numbers_are_read_from_names(name: str, wanted: tuple[int, ...] | None) -> None:
    f = describe(f"/out/{name}", 10, 0, "/out")
    assert (None if f is None else f.order) == wanted


def test_series_are_kept_apart(tmp_path: Path) -> None:
    """Two series in one folder (a model and an EMA copy): the last two of each are kept."""
    out = tmp_path / "out"
    build(out, [[f"model_{i}.pt", 100] for i in range(4)] + [[f"ema_{i}.pt", 50] for i in range(4)])
    p = plan(list_checkpoints([str(out)], measure=False)[0], keep=2)
    assert sorted(os.path.basename(f.path) for f in p.superseded) == [
        "ema_0.pt", "ema_1.pt", "model_0.pt", "model_1.pt"
    ]  # fmt: skip
