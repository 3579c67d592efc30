"""The compression dialog: a real measurement on a worker thread, cancel, errors, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
torch = pytest.importorskip("torch")

from costmeter.examples import digits  # noqa: E402
from costmeter.gui.widgets.compress_dialog import (  # noqa: E402
    CompressDialog,
    open_compress_dialog,
)

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dialog")
    data = digits.load_data(0)
    model = digits.train(3, 0, data=data)
    ckpt, npz = d / "digits.pt", d / "digits.npz"
    digits.save_model(model, ckpt, hidden=128, test_accuracy=0.0)
    np.savez(npz, x=data.x_test, y=data.y_test)
    full = d / "whole.pt"
    torch.save(model, full)
    return {"model": ckpt, "eval": npz, "whole": full, "dir": d}


def make(qtbot, model: Path | None = None, **fields: object) -> CompressDialog:
    dialog = CompressDialog(None, model_path=str(model) if model else None)
    qtbot.addWidget(dialog)
    dialog.repeat.setValue(3)
    dialog.batch.setValue(16)
    for name, value in fields.items():
        getattr(dialog, name).setText(str(value))
    dialog.show()
    return dialog


def cell(dialog: CompressDialog, row: int, col: int) -> str:
    item = dialog.table.item(row, col)
    return item.text() if item is not None else ""


def test_measures_on_a_worker_and_shows_the_table(qtbot, files) -> None:
    dialog = make(qtbot, files["model"], eval_edit=files["eval"])
    dialog.method.setCurrentText("fp16")
    dialog.run_button.click()
    assert dialog.running() and not dialog.run_button.isEnabled()  # returned at once
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=TIMEOUT_MS)
    assert not dialog.running() and dialog.progress.value() == 1000
    labels = [cell(dialog, r, 0) for r in range(dialog.table.rowCount())]
    # issue 16 added the parameters and the serving cost at the core-hour price
    assert labels == [
        "size (state_dict bytes)", "parameters", "latency, batch 1", "latency, batch 16",
        "cost per 1M inferences, batch 1", "cost per 1M inferences, batch 16", "accuracy",
        "agreement with original",
    ]  # fmt: skip
    assert cell(dialog, 0, 3).endswith("x smaller")
    assert cell(dialog, 6, 1).endswith("%") and cell(dialog, 7, 2).endswith("%")
    assert dialog.verdict.text() == dialog.report.verdict_text()
    assert dialog.verdict.text().startswith(("Keep:", "Reject:"))
    assert dialog.save_button.isEnabled() == (dialog.report.verdict != "reject")
    assert dialog.error.isHidden()


def test_prune_amount_and_save(qtbot, files) -> None:
    dialog = make(qtbot, files["model"], eval_edit=files["eval"])
    dialog.method.setCurrentText("prune")
    assert dialog.prune_amount.isEnabled()
    dialog.prune_amount.setValue(0.2)
    assert dialog.method_text() == "prune:0.2"
    dialog.max_drop.setValue(100.0)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=TIMEOUT_MS)
    labels = [cell(dialog, r, 0) for r in range(dialog.table.rowCount())]
    assert "sparsity of pruned weights" in labels
    assert "sparse" in dialog.notes.text()
    dialog.report.verdict = "keep"  # saving is offered for a kept model; test the save itself
    out = files["dir"] / "pruned.pt2"
    dialog.save_to(out)
    qtbot.waitUntil(lambda: "saved to" in dialog.stage.text(), timeout=TIMEOUT_MS)
    assert out.exists()


def test_cancel_stops_the_measurement(qtbot, files) -> None:
    dialog = make(qtbot, files["model"])
    dialog.repeat.setValue(1000)
    dialog.batch.setValue(1024)
    dialog.method.setCurrentText("bf16")
    dialog.start()
    qtbot.waitUntil(lambda: "Timing" in dialog.stage.text(), timeout=TIMEOUT_MS)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.running(), timeout=TIMEOUT_MS)
    assert dialog.report is None and "Cancelled" in dialog.stage.text()
    assert dialog.run_button.isEnabled() and dialog.error.isHidden()


def test_errors_are_shown_in_the_dialog(qtbot, files) -> None:
    dialog = make(qtbot, files["whole"])
    dialog.start()
    qtbot.waitUntil(lambda: dialog.error.isVisible(), timeout=TIMEOUT_MS)
    assert "runs code named in the file" in dialog.error.text()
    assert dialog.table.rowCount() == 0 and dialog.run_button.isEnabled()
    dialog.trust.setChecked(True)
    dialog.method.setCurrentText("bf16")
    dialog.start()
    assert dialog.error.isHidden()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=TIMEOUT_MS)
    assert dialog.report.format == "torch.save(model) file"


def test_no_model_chosen(qtbot) -> None:
    dialog = make(qtbot)
    dialog.start()
    assert not dialog.running() and "Choose the model file" in dialog.error.text()


def test_open_compress_dialog_shows_it_prefilled(qtbot, files) -> None:
    from PySide6.QtWidgets import QWidget

    parent = QWidget()
    qtbot.addWidget(parent)
    dialog = open_compress_dialog(parent, model_path=str(files["model"]))
    assert dialog.isVisible() and dialog.model_edit.text() == str(files["model"])
    dialog.close()


def test_without_torch_the_dialog_says_what_to_install(qtbot, files, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    dialog = make(qtbot, files["model"])
    dialog.start()
    qtbot.waitUntil(lambda: dialog.error.isVisible(), timeout=TIMEOUT_MS)
    assert "needs torch: pip install 'costmeter[torch]'" in dialog.error.text()
    assert not dialog.running()
