"""The launch dialog shows the prediction from past runs of the command's family (read on the
store reader's thread), for one run and for a sweep; nothing yet when there is no past run."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from costmeter.gui.run_manager import RunManager
from costmeter.gui.widgets.launch_dialog import LaunchDialog
from costmeter.runs.commands import command_key
from costmeter.store import Store
from costmeter.store.runs import RunStore

pytestmark = [pytest.mark.gui]
PY = shlex.quote(sys.executable)
ARGV = [sys.executable, "-m", "costmeter.examples.digits", "--epochs"]
#: Set to a folder to keep the dialog's picture there (docs/screenshots/launch-prediction.png).
SHOT_DIR = os.environ.get("COSTMETER_SCREENSHOT_DIR")


@pytest.fixture
def manager(make_ctx: Any, tmp_path: Path) -> Iterator[RunManager]:
    """A database with six past runs of the digits example: 0.5 s start-up + 0.2 s an epoch."""
    db = tmp_path / "prediction.db"
    Store.open(db).close()
    with RunStore.open(db) as store:
        for i, epochs in enumerate((2, 4, 8, 2, 4, 8)):
            duration = (0.5 + 0.2 * epochs) * (1.03 if i % 2 else 0.97)
            store.insert(
                name=f"digits-{epochs}", backend="local", status="succeeded",
                command_key=command_key([*ARGV, str(epochs)], 0), spec={"argv": []},
                started=1000.0 * i, ended=1000.0 * i + duration, cost=duration * 1e-3,
                currency="USD", gpus=[], pids=[],
            )  # fmt: skip
    ctx = make_ctx(db_path=db)
    manager = RunManager(ctx)
    yield manager
    manager.shutdown()


def test_the_dialog_predicts_a_run_and_a_sweep_from_past_runs(
    manager: RunManager, qtbot: Any, tmp_path: Path
) -> None:
    dialog = LaunchDialog(manager.ctx, manager)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.command.setText(f"{PY} -m costmeter.examples.digits --epochs 16")
    qtbot.waitUntil(lambda: "fitted on 6 past runs" in dialog.prediction.text(), timeout=10_000)
    text = dialog.prediction.text()
    assert text.startswith("Predicted: ")
    # Start-up + time per epoch predicts these runs better than a power law does.
    assert "time = 0.5" in text and "s x epochs" in text and "range $" in text
    assert "extrapolated: epochs 16 is outside 2..8" in text
    label = dialog.prediction
    # The dialog grows to show the whole text (the label wraps; nothing is cut).
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()), timeout=5_000)
    shot = dialog.grab()
    assert not shot.isNull()
    target = Path(SHOT_DIR) if SHOT_DIR else tmp_path
    assert shot.save(str(target / "launch-prediction.png"))
    # A sweep: the total, its range and the wall time with 2 at once.
    dialog.command.setText(f"{PY} -m costmeter.examples.digits --epochs {{e}}")
    dialog.grid.setPlainText("e=4,16,32")
    dialog.max_parallel.setValue(2)
    qtbot.waitUntil(lambda: "for 3 of 3 runs" in dialog.prediction.text(), timeout=10_000)
    assert "wall time with at most 2 at once" in dialog.prediction.text()
    # Another command: no past run, and the dialog says so rather than guess.
    dialog.grid.setPlainText("")
    dialog.command.setText(f"{PY} -c pass")
    qtbot.waitUntil(lambda: "no past run" in dialog.prediction.text(), timeout=10_000)
    assert dialog.prediction.text() == "Predicted: nothing yet (no past run of this command)."
    dialog.reject()
