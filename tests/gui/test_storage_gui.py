"""Storage in the desktop app: the Runs page's "Stored" column from a real database, and the
advice card's Apply for superseded checkpoints: the list in a confirmation, nothing deleted on
No, exactly the listed files deleted on Yes (on the reader's thread, not the GUI's)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QMessageBox, QWidget

from costmeter.advice.facts import AdviceFacts
from costmeter.advice.rules.storage import checkpoints
from costmeter.advice.thresholds import Thresholds
from costmeter.config import Config
from costmeter.gui.models.run_model import COL_STORED
from costmeter.gui.pages.advice import AdvicePage
from costmeter.gui.pages.runs import RunsPage
from costmeter.service import advice_snapshot
from costmeter.service.advice import AdviceResult
from costmeter.service.checkpoint_files import run_checkpoints
from costmeter.service.storage_watch import StorageWatch
from costmeter.store import Store
from costmeter.store.runs import RunStore

pytestmark = pytest.mark.gui
#: Set to a folder to keep the Runs page's picture there (docs/screenshots/runs-storage.png).
SHOT_DIR = os.environ.get("COSTMETER_SCREENSHOT_DIR")


def _run_with_checkpoints(db: Path, out: Path, epochs: int = 5) -> int:
    """A finished run whose folder holds real torch checkpoints, measured as the service does."""
    out.mkdir(parents=True)
    for e in range(1, epochs + 1):
        torch.save({"w": torch.full((512, 512), float(e))}, out / f"model_epoch_{e}.pt")
    Store.open(db).close()
    with RunStore.open(db) as store:
        run_id = store.insert(
            name="train-digits", backend="local", status="succeeded",
            spec={"argv": ["python", "train.py"], "output_dirs": [str(out)]},
            created=time.time() - 900, started=time.time() - 900, ended=time.time() - 60,
            cost=0.0123, currency="USD", gpus=[0], pids=[],
        )  # fmt: skip
        watch = StorageWatch(store, lambda: Config().pricing().storage_gb_month)
        watch.watch(run_id, [str(out)])
        watch.finish(run_id)
        watch.close()
    return run_id


def test_the_runs_page_shows_what_the_outputs_take_and_cost_a_month(
    make_ctx, qtbot, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    run_id = _run_with_checkpoints(db, tmp_path / "out")
    ctx = make_ctx(db_path=db)
    page = RunsPage(ctx)
    qtbot.addWidget(page)
    page.resize(1500, 420)
    page.show()
    qtbot.waitUntil(lambda: page.model.find(run_id) is not None, timeout=10_000)
    row = next(r for r in range(page.model.rowCount()) if page.model.row(r).id == run_id)
    text = str(page.model.index(row, COL_STORED).data())
    total = sum(f.stat().st_size for f in (tmp_path / "out").iterdir())
    assert text.startswith(f"{total / 1e6:.1f} MB") and "/mo" in text
    page.table.resizeColumnsToContents()
    shot = page.grab()
    assert not shot.isNull()
    target = Path(SHOT_DIR) if SHOT_DIR else tmp_path
    assert shot.save(str(target / "runs-storage.png"))
    if ctx.runs is not None:
        ctx.runs.shutdown()


@pytest.fixture
def checkpoint_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    """A run with five checkpoints, and the advice page's rules answering with what the real
    ``checkpoints`` rule says about it."""
    db = tmp_path / "advice.db"
    out = tmp_path / "out"
    run_id = _run_with_checkpoints(db, out)
    with RunStore.open(db) as store:
        row = store.get(run_id)
    assert row is not None
    found = run_checkpoints(row)
    assert found is not None
    now = time.time()
    facts = AdviceFacts(now - 3600, now, "USD", 0.1, checkpoints=(found,), storage_gb_month=0.08)
    [rec] = checkpoints(facts, Thresholds())

    def fake(store: Store, config: Config, *, since_s: float, now: float | None = None):
        t = time.time()
        return AdviceResult((rec,), (), (), t - since_s, t, "USD")

    monkeypatch.setattr(advice_snapshot, "advise", fake)
    yield db, out, rec


def _page(qtbot, ctx) -> AdvicePage:
    page = AdvicePage(ctx)
    qtbot.addWidget(page)
    page.resize(1300, 900)
    page.show()
    qtbot.waitUntil(lambda: page.snapshot is not None, timeout=10_000)
    return page


@pytest.mark.parametrize("answer", ["No", "Yes"])
def test_apply_lists_the_files_and_deletes_them_only_on_yes(
    qtbot, make_ctx, checkpoint_advice, monkeypatch, answer: str
) -> None:
    db, out, rec = checkpoint_advice
    before = sorted(out.iterdir())
    page = _page(qtbot, make_ctx(db_path=db))
    asked: list[str] = []

    def reply(_parent: QWidget, _title: str, text: str, *args: object):
        asked.append(text)
        return getattr(QMessageBox.StandardButton, answer)

    monkeypatch.setattr(QMessageBox, "question", reply)
    deleted: list = []
    page.advice_actions.files_deleted.connect(deleted.append)
    card = page.cards[rec.key]
    assert card.apply_button.text() == "Review and delete files…"
    card.apply_button.click()
    qtbot.waitUntil(lambda: bool(asked), timeout=10_000)
    for f in before[:3]:
        assert str(f) in asked[0]  # each file listed, with its size
    assert str(before[3]) not in asked[0]
    if answer == "No":
        qtbot.waitUntil(lambda: "Nothing deleted" in page.banner.label.text(), timeout=10_000)
        assert sorted(out.iterdir()) == before
        return
    qtbot.waitUntil(lambda: bool(deleted), timeout=10_000)
    assert [o.deleted for o in deleted[0]] == [True, True, True]
    assert sorted(out.iterdir()) == before[3:]
    qtbot.waitUntil(lambda: "Deleted 3 of 3 files" in page.banner.label.text(), timeout=10_000)
