"""The Runs page's "What if on another GPU…": a run on a simulated A100 sampled into a real
database by ``costmeter run``, then the dialog estimates it on the reader's thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from costmeter.config import Config
from costmeter.cost.whatif_text import closing
from costmeter.gui.pages.runs import RunsPage
from costmeter.service.whatif import whatif_run
from costmeter.store import Store

pytestmark = [pytest.mark.gui, pytest.mark.integration]
#: Set to a folder to keep the dialog's picture there (docs/screenshots/whatif.png).
SHOT_DIR = os.environ.get("COSTMETER_SCREENSHOT_DIR")


def test_the_dialog_shows_every_model_and_the_cheapest_that_fits(
    make_ctx, qtbot, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    done = subprocess.run(
        [
            sys.executable, "-m", "costmeter", "run", "--db", str(db), "--simulate", "a100:train",
            "--gpus", "1", "--interval", "0.1", "--name", "train-a100", "--",
            sys.executable, "-c", "import time; time.sleep(1.5)",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ctx = make_ctx(db_path=db)
    page = RunsPage(ctx)
    qtbot.addWidget(page)
    page.resize(1200, 420)
    page.show()
    qtbot.waitUntil(lambda: page.model.find(1) is not None, timeout=10_000)
    assert page.select_run(1)
    assert page.whatif_button.isEnabled()
    dialog = page.open_whatif()
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.estimate is not None, timeout=10_000)
    estimate = dialog.estimate
    assert estimate is not None and estimate.precision == "bf16"
    with Store.open(db) as store:  # the same figures as `costmeter whatif --run 1`
        expected = whatif_run(store, Config(), 1)
    assert dialog.table.rowCount() == len(expected.options)
    assert [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())] == [
        o.model for o in expected.options
    ]
    assert dialog.summary.text() == closing(expected)
    fits = {dialog.table.item(r, 0).text(): dialog.table.item(r, 1).text() for r in range(13)}
    assert fits["A100 80GB"] == "ran here" and fits["T4 16GB"] == "no"
    # Another precision asks again (on the reader's thread) and replaces the table.
    dialog.precision.setCurrentIndex(dialog.precision.findData("fp16"))
    qtbot.waitUntil(
        lambda: dialog.estimate is not None and dialog.estimate.precision == "fp16", timeout=10_000
    )
    assert "FP16" in dialog.summary.text()
    dialog.precision.setCurrentIndex(dialog.precision.findData("bf16"))
    qtbot.waitUntil(
        lambda: dialog.estimate is not None and dialog.estimate.precision == "bf16", timeout=10_000
    )
    shot = dialog.grab()
    target = Path(SHOT_DIR) if SHOT_DIR else tmp_path
    assert not shot.isNull() and shot.save(str(target / "whatif.png"))
    dialog.close()
    if ctx.runs is not None:
        ctx.runs.shutdown()


def test_a_run_that_did_not_finish_says_why(make_ctx, qtbot, tmp_path: Path) -> None:
    from costmeter.gui.widgets.whatif_dialog import WhatIfDialog

    db = tmp_path / "empty.db"
    Store.open(db).close()
    ctx = make_ctx(db_path=db)
    dialog = WhatIfDialog(
        7,
        "gone",
        lambda run_id, p: ctx.reader.submit(
            "t", lambda store: whatif_run(store, Config(), run_id, p), dialog.show_result,
            dialog.show_error,
        ),
    )  # fmt: skip
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.ask()
    qtbot.waitUntil(lambda: "no run 7" in dialog.status.text(), timeout=10_000)
    assert dialog.table.rowCount() == 0 and dialog.estimate is None
    dialog.close()
