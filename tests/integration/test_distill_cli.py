"""``costmeter example digits --train-out`` then ``costmeter compress --method distill`` as a
user types them (subprocesses): the student is kept, saved, and bad --train input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
PY = sys.executable


def costmeter(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "costmeter", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("distill-cli")
    out = costmeter(
        "example", "digits", "--out", "m.pt", "--eval-out", "test.npz", "--train-out",
        "train.npz", cwd=d,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "training data saved to train.npz (arrays x and y)" in out.stdout
    assert "--method distill --train train.npz --eval test.npz" in out.stdout
    return d


def test_train_out_is_the_training_split(example: Path) -> None:
    train, test = np.load(example / "train.npz"), np.load(example / "test.npz")
    assert train["x"].shape == (1347, 64) and train["y"].shape == (1347,)
    assert len(train["x"]) + len(test["x"]) == 1797  # scikit-learn's digits, split 75/25
    rows = {r.tobytes() for r in test["x"]}
    assert not any(r.tobytes() in rows for r in train["x"][:200])  # held-out rows stay out


def test_distill_is_measured_kept_and_saved(example: Path) -> None:
    out = costmeter(
        "compress", "m.pt", "--method", "distill", "--train", "train.npz", "--eval", "test.npz",
        "--max-drop", "3", "--repeat", "5", "--out", "student.pt", "--format", "json",
        cwd=example,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["method"] == "distill" and report["goal"] == "cost"
    assert report["before"]["size_bytes"] >= 3 * report["after"]["size_bytes"]
    assert report["accuracy_drop_points"] <= 3.0 and report["verdict"] == "keep"
    assert report["price_per_hour"] > 0 and report["cost_per_million"]["after"]["batch_1"] > 0
    assert report["out_path"] == "student.pt"
    again = costmeter(
        "compress",
        "student.pt",
        "--method",
        "fp16",
        "--repeat",
        "2",
        "--format",
        "json",
        cwd=example,
    )  # fmt: skip  (the saved student loads as a weights-only checkpoint, no --trust)
    assert json.loads(again.stdout)["format"] == "Costmeter weights-only checkpoint", again.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--method", "distill"], "give it with --train DATA.npz"),
     (["--method", "distill", "--train", "missing.npz"], "missing.npz: no such file"),
     (["--method", "distill", "--train", "m.pt"], "a torch file, not training data"),
     (["--method", "distill", "--train", "narrow.npz"], "x has rows of shape (8,)"),
     (["--method", "fp16", "--train", "train.npz"], "--train is for --method distill only"),
     (["--method", "distill:width=3", "--train", "train.npz"], "not an option of distill")],
)  # fmt: skip
def test_bad_train_input_is_a_sentence_and_exit_2(example: Path, args, words: str) -> None:
    np.savez(example / "narrow.npz", x=np.zeros((4, 8), "float32"), y=np.zeros(4, "int64"))
    out = costmeter("compress", "m.pt", *args, cwd=example)
    assert out.returncode == 2, out.stdout
    assert words in out.stderr and "Traceback" not in out.stderr
