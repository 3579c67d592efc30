"""Distillation of the digits example, measured like every other method (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from costmeter.compress import (
    CompressionCancelled,
    ServingPrice,
    TrainDataError,
    UnsupportedMethod,
    measure_compression,
    parse_method,
)

torch = pytest.importorskip("torch")

from costmeter.compress.distill import student_shape  # noqa: E402
from costmeter.compress.loading import load_model  # noqa: E402
from costmeter.compress.mlp import mlp_shape  # noqa: E402
from costmeter.examples import digits  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, on purpose
PRICE = ServingPrice(0.0408, "USD", "test price")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("distill")
    data = digits.load_data(0)
    torch.set_num_threads(1)
    teacher = digits.train(20, 0, data=data)
    paths = {"dir": d, "model": d / "teacher.pt", "train": d / "train.npz", "eval": d / "test.npz"}
    digits.save_model(teacher, paths["model"], hidden=128, test_accuracy=0.0)
    np.savez(paths["train"], x=data.x_train, y=data.y_train)
    np.savez(paths["eval"], x=data.x_test, y=data.y_test)
    return paths


def test_the_student_keeps_accuracy_within_3_points_and_is_3x_smaller(files) -> None:
    stages: list[tuple[str, float]] = []
    out = files["dir"] / "student.pt"
    r = measure_compression(
        files["model"], "distill", train_path=files["train"], eval_path=files["eval"],
        max_drop=3.0, repeat=3, price=PRICE, out_path=out,
        on_progress=lambda stage, share: stages.append((stage, share)),
    )  # fmt: skip
    assert r.before.accuracy is not None and r.after.accuracy is not None
    assert r.before.accuracy > 0.9
    assert r.accuracy_drop_points is not None and r.accuracy_drop_points <= 3.0
    assert r.before.size_bytes >= 3 * r.after.size_bytes
    assert r.before.parameters == 26_122 and r.after.parameters == 3_466  # 64-32-32-10
    assert r.verdict == "keep", r.reason
    assert any("Student: MLP 64-32-32-10 (ReLU)" in n for n in r.notes)
    assert r.training_s is not None and r.training_s > 0
    # progress: the epochs, in order, then the measurement, ending at 1
    epochs = [s for s, _ in stages if s.startswith("Distilling: epoch")]
    assert len(epochs) == 30 and epochs[-1].startswith("Distilling: epoch 30/30")
    shares = [share for _, share in stages]
    assert shares == sorted(shares) and shares[-1] == 1.0
    # --out wrote a weights-only checkpoint that loads without --trust and predicts the same
    assert r.out_path == str(out)
    loaded = load_model(out)
    assert loaded.format == "checkpoint" and loaded.input_shape == (64,)
    x = torch.from_numpy(np.load(files["eval"])["x"])
    with torch.no_grad():
        saved_answers = loaded.module(x).argmax(1).numpy()
    assert (saved_answers == np.load(files["eval"])["y"]).mean() == pytest.approx(r.after.accuracy)


def test_distilling_is_deterministic_and_takes_its_options(files) -> None:
    def student(method: str) -> dict[str, torch.Tensor]:
        r = measure_compression(files["model"], method, train_path=files["train"], repeat=1)
        return r.compressed.compressed.module.state_dict()

    a, b = student("distill:hidden=16,epochs=3"), student("distill:hidden=16,epochs=3")
    assert a["0.weight"].shape == (16, 64) and a["2.weight"].shape == (16, 16)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = student("distill:hidden=16,epochs=3,seed=1")
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_cancel_stops_the_training(files) -> None:
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 10  # within the first epoch (22 batches)

    with pytest.raises(CompressionCancelled):
        measure_compression(
            files["model"], "distill", train_path=files["train"], cancelled=cancelled
        )
    assert calls["n"] == 11


def test_without_labels_the_soft_targets_alone_teach(files, tmp_path: Path) -> None:
    only_x = tmp_path / "x.npz"
    np.savez(only_x, x=np.load(files["train"])["x"])
    r = measure_compression(
        files["model"], "distill", train_path=only_x, eval_path=files["eval"], repeat=1,
        max_drop=5.0,
    )  # fmt: skip
    assert any("no labels" in n and "weight 1" in n for n in r.notes)
    assert r.accuracy_drop_points is not None and r.accuracy_drop_points <= 5.0


def test_a_teacher_that_is_not_an_mlp_gets_a_two_layer_student(tmp_path: Path) -> None:
    from torch import nn

    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))  # fmt: skip
    assert mlp_shape(conv) is None
    shape, how = student_shape(conv, (1, 8, 8), 10, None)
    assert shape.widths == (64, 32, 10) and shape.flatten and "not a plain MLP" in how
    scripted = tmp_path / "conv.pt"
    torch.jit.save(torch.jit.script(conv.eval()), str(scripted))
    x = np.random.default_rng(0).random((200, 1, 8, 8), dtype=np.float32)
    train = tmp_path / "images.npz"
    np.savez(train, x=x)
    r = measure_compression(scripted, "distill:epochs=2", train_path=train, repeat=1)
    assert r.input_shape == (1, 8, 8) and r.after.parameters == 64 * 32 + 32 + 32 * 10 + 10
    out = r.compressed.compressed
    assert load_model(_save(out.checkpoint, tmp_path / "s.pt")).input_shape == (1, 8, 8)


def _save(payload: dict, path: Path) -> Path:
    torch.save(payload, path)
    return path


def test_a_teacher_that_cannot_run_on_the_data_is_refused(tmp_path: Path) -> None:
    from torch import nn

    conv = torch.jit.script(nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten()).eval())
    path = tmp_path / "conv1d.pt"
    torch.jit.save(conv, str(path))
    train = tmp_path / "flat.npz"
    np.savez(train, x=np.zeros((10, 5, 6, 7), "float32"))
    with pytest.raises(UnsupportedMethod, match="teacher to run on the training data"):
        measure_compression(path, "distill", train_path=train, repeat=1)


@pytest.mark.parametrize(
    ("make", "words"),
    [(lambda p: None, "no such file"),
     (lambda p: p.write_text("not numpy"), "not a NumPy .npz archive"),
     (lambda p: np.savez(p, y=np.zeros(3, "int64")), "has no array x"),
     (lambda p: np.savez(p, x=np.zeros((3, 10), "float32")), r"shape \(10,\)"),
     (lambda p: np.savez(p, x=np.zeros((3, 64), "float32"), y=np.zeros(2, "int64")),
      "3 rows but y has 2"),
     (lambda p: np.savez(p, x=np.zeros((3, 64), "float32"), y=np.zeros(3, "float32")),
      "integer class labels"),
     (lambda p: np.savez(p, x=np.zeros((3, 64), "float32"), y=np.array([0, 3, 12])),
      "labels from 0 to 12, but the teacher scores 10 classes")],
)  # fmt: skip
def test_bad_training_data_gets_a_sentence(files, tmp_path: Path, make, words: str) -> None:
    path = tmp_path / "train.npz"
    make(path)
    with pytest.raises(TrainDataError, match=words):
        measure_compression(files["model"], "distill", train_path=path, repeat=1)


def test_distill_needs_train_and_train_needs_distill(files) -> None:
    with pytest.raises(TrainDataError, match=r"--train DATA\.npz"):
        measure_compression(files["model"], "distill", repeat=1)
    with pytest.raises(Exception, match="--train is for --method distill only"):
        measure_compression(files["model"], "fp16", train_path=files["train"], repeat=1)


def test_options_parse_and_refuse() -> None:
    assert parse_method("distill").label == "distill"
    spec = parse_method("distill:hidden=16,epochs=5,temperature=2")
    assert spec.distill is not None and spec.distill.hidden == 16
    assert spec.label == "distill:hidden=16,epochs=5,temperature=2"
    for bad, words in (("distill:width=3", "not an option"), ("distill:hidden=1.5", "whole"),
                       ("distill:alpha=2", "between 0 and 1"), ("distill:epochs=x", "number"),
                       ("distill:temperature=0", "above 0")):  # fmt: skip
        with pytest.raises(UnsupportedMethod, match=words):
            parse_method(bad)
