"""The digits example: it learns, it reports progress to Costmeter, its files load back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from costmeter import progress
from costmeter.examples import digits
from costmeter.plugin_api import PROGRESS_ENV


def test_train_learns_and_is_deterministic() -> None:
    data = digits.load_data(seed=1)
    assert data.x_train.shape[1] == 64 and len(data.x_train) + len(data.x_test) == 1797
    assert set(np.unique(data.y_test)) == set(range(10))  # every class in the test split
    seen: list[digits.EpochResult] = []
    model = digits.train(3, seed=1, data=data, on_epoch=seen.append)
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert seen[-1].loss < seen[0].loss
    assert digits.accuracy(model, data.x_test, data.y_test) > 0.85
    again = digits.train(3, seed=1, data=data)
    assert digits.accuracy(again, data.x_test, data.y_test) == pytest.approx(
        digits.accuracy(model, data.x_test, data.y_test)
    )
    with pytest.raises(ValueError, match="at least 1"):
        digits.train(0)


def test_main_reports_progress_and_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    progress_file = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(progress_file))
    out, npz = tmp_path / "m.pt", tmp_path / "d.npz"
    assert digits.main(["--epochs", "2", "--out", str(out), "--eval-out", str(npz)]) == 0
    progress.flush()
    points = progress.read_progress(progress_file)
    assert points and points[-1].step == 2 and points[-1].total == 2
    assert "loss" in points[-1].metrics
    model = digits.load_model(out)
    test = np.load(npz)
    assert digits.accuracy(model, test["x"], test["y"]) > 0.8
