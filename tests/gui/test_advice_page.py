"""The Advice page and the Overview's savings tile: cards from recommendations, dismiss / snooze /
restore written to a real SQLite database, "Apply" (a child run through the prefilled launch
dialog, the compression dialog, Settings), empty states, and the monthly total."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import sqlite3
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox, QWidget

from costmeter.advice.model import (
    Action,
    Evidence,
    EvidenceSeries,
    Recommendation,
    Savings,
    Target,
)
from costmeter.config import Config
from costmeter.gui import advice_actions
from costmeter.gui.advice_poller import AdvicePoller
from costmeter.gui.pages.advice import AdvicePage
from costmeter.gui.pages.overview import OverviewPage
from costmeter.gui.pages.runs import RunsPage
from costmeter.gui.run_manager import RunManager
from costmeter.gui.widgets.advice_card import AdviceCard, describe_savings
from costmeter.plugin_api import BackendConfig, RunSpec
from costmeter.runs.events import EventKind, RunEvent
from costmeter.runs.local import LocalBackend
from costmeter.service import advice as advice_service
from costmeter.service import advice_snapshot
from costmeter.service.advice import AdviceResult
from costmeter.service.runs import RunService, RunServiceOptions
from costmeter.store import Store
from costmeter.store.runs import UNFINISHED, RunRow, RunStore
from costmeter.store.testing import device_infos, host_info

pytestmark = pytest.mark.gui


# -- recommendations made by hand ------------------------------------------------------------
def rec(
    rule: str,
    money: float | None,
    *,
    device: int | None = 0,
    run: int | None = None,
    kind: str = "none",
    changes: dict | None = None,
    confidence: float = 0.8,
    threshold: float | None = 5.0,
    host: str = "node-1",
) -> Recommendation:
    now = time.time()
    ts = tuple(now - 3600 + 60 * i for i in range(61))
    return Recommendation(
        rule=rule,
        title=f"{rule} on GPU {device}",
        target=Target(
            host=host,
            device=device,
            uuid=f"GPU-{rule}-{device}",
            device_name="NVIDIA A100-SXM4-80GB",
            run=run,
            run_name=f"train-{run}" if run is not None else None,
        ),
        evidence=Evidence(
            start=ts[0],
            end=ts[-1],
            facts=(("p95 GPU utilisation", "2 %"), ("memory held", "30 GiB")),
            values={"p95_util_pct": 2.0},
            series=(
                EvidenceSeries("GPU utilisation", "%", ts, tuple(2.0 for _ in ts), threshold),
                EvidenceSeries("memory used", "GiB", ts, tuple(30.0 for _ in ts)),
            ),
        ),
        savings=Savings(money, "USD", 40.0, f"1 GPU x 1.10 USD/h x {rule}")
        if money is not None
        else None,
        confidence=confidence,
        action=Action(f"Do something about {rule}.", kind, changes or {}),
        detail=f"Why {rule} matters.",
    )


def result(*recs: Recommendation, hidden: tuple = (), messages: tuple = ()) -> AdviceResult:
    now = time.time()
    return AdviceResult(tuple(recs), tuple(hidden), tuple(messages), now - 86400, now, "USD")


@pytest.fixture
def fixed_advice(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Make the poller's rules return ``state["result"]`` (everything else is real: the reader
    thread, the store, the signals); ``state["calls"]`` records each window asked for."""
    state: dict = {"result": result(), "calls": []}

    def fake(store: Store, config: Config, *, since_s: float, now: float | None = None):
        state["calls"].append(since_s)
        return state["result"]

    monkeypatch.setattr(advice_snapshot, "advise", fake)
    yield state


def advice_page(qtbot, ctx) -> AdvicePage:
    page = AdvicePage(ctx)
    qtbot.addWidget(page)
    page.resize(1300, 900)
    page.show()
    qtbot.waitUntil(lambda: page.snapshot is not None, timeout=10_000)
    return page


def shown_cards(page: AdvicePage) -> list[AdviceCard]:
    return [c for c in page.cards.values() if not c.isHidden()]


# -- a simulated history with an idle GPU (the real rules) -------------------------------------
def simulate(db: Path, spec: str, hours: float = 1.0) -> None:
    cmd = [sys.executable, "-m", "costmeter", "simulate", "--hours", str(hours)]
    cmd += ["--simulate", spec, "--db", str(db), "--interval", "10"]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)


@pytest.fixture(scope="module")
def idle_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("advice") / "idle.db"
    simulate(db, "a100:idle")
    return db


@pytest.fixture
def idle_copy(idle_db: Path, tmp_path: Path) -> Path:
    """A test's own copy of the idle history (dismissals are written into it)."""
    copy = tmp_path / "idle.db"
    with contextlib.closing(sqlite3.connect(idle_db)) as src:
        src.execute("VACUUM INTO ?", (str(copy),))
    return copy


def advice_state(db: Path, key: str) -> list[tuple[str, float | None]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.execute("SELECT state, until FROM advice_state WHERE key = ?", (key,)))


# -- cards ---------------------------------------------------------------------------------------
def test_cards_show_recommendations_by_savings_with_evidence_and_actions(
    qtbot, make_ctx, fixed_advice
) -> None:
    fixed_advice["result"] = result(
        rec("underused-gpu", 40.0, device=1, kind="relaunch", run=7, changes={"gpus": 1}),
        rec("idle-gpu", 803.5, device=0),
        rec("power-cap", None, device=2, kind="settings", confidence=0.3, threshold=None),
    )
    page = advice_page(qtbot, make_ctx())
    titles = [c.rec.rule for c in shown_cards(page)]
    assert titles == ["idle-gpu", "underused-gpu", "power-cap"]
    idle = page.cards[fixed_advice["result"].recommendations[1].key]
    assert idle.savings.text() == "≈ $804 / month · 40 kWh"
    assert "node-1 · GPU 0 NVIDIA A100-SXM4-80GB" in idle.target.text()
    assert [(k.text(), v.text()) for k, v in idle.fact_labels] == [
        ("p95 GPU utilisation:", "2 %"),
        ("memory held:", "30 GiB"),
    ]
    # One plot per unit; the threshold drawn as a dashed line at its value.
    assert len(idle.plot.plots) == 2
    assert idle.plot.thresholds["GPU utilisation"].value() == pytest.approx(5.0)
    assert set(idle.plot.curves) == {"GPU utilisation", "memory used"}
    assert idle.confidence.text() == "Confidence: High"
    assert idle.apply_button.isHidden()  # kind "none": nothing to apply
    assert idle.formula.isHidden()
    idle.how.click()
    assert not idle.formula.isHidden() and "x idle-gpu" in idle.formula.text()
    under = page.cards[fixed_advice["result"].recommendations[0].key]
    assert not under.apply_button.isHidden()
    assert "run 7 train-7" in under.target.text()
    cap = page.cards[fixed_advice["result"].recommendations[2].key]
    assert cap.confidence.text() == "Confidence: Low"
    assert cap.savings.text() == describe_savings(None)
    assert page.total.text() == "≈ $844 / month"
    assert "3 recommendations" in page.total_caption.text()


def test_a_refresh_updates_cards_in_place_and_replaces_changed_ones(
    qtbot, make_ctx, fixed_advice
) -> None:
    first = rec("idle-gpu", 100.0)
    other = rec("underused-gpu", 50.0, device=1)
    fixed_advice["result"] = result(first, other)
    page = advice_page(qtbot, make_ctx())
    card, other_card = page.cards[first.key], page.cards[other.key]
    plot_before = card.plot.plots[0]
    more = dataclasses.replace(
        first,
        savings=Savings(300.0, "USD", 80.0, "1 GPU x 3 USD/h"),
        evidence=dataclasses.replace(first.evidence, facts=(("p95 GPU utilisation", "1 %"),)),
    )
    assert len(more.evidence.facts) == 1  # another shape: a new card
    same_shape = dataclasses.replace(
        other, savings=Savings(500.0, "USD", 90.0, "2 GPUs x 3 USD/h"), confidence=0.5
    )
    fixed_advice["result"] = result(same_shape, more)
    page.refresh()
    qtbot.waitUntil(
        lambda: page.cards.get(other.key) is not None and page.total.text() == "≈ $800 / month",
        timeout=10_000,
    )
    assert page.cards[other.key] is other_card  # updated in place
    assert other_card.savings.text() == "≈ $500 / month · 90 kWh"
    assert other_card.confidence.text() == "Confidence: Medium"
    assert page.cards[first.key] is not card
    assert [c.rec.key for c in shown_cards(page)] == [other.key, first.key]  # by savings
    assert plot_before is not page.cards[first.key].plot.plots[0]


def test_engine_messages_show_in_the_banner(qtbot, make_ctx, fixed_advice) -> None:
    fixed_advice["result"] = result(
        rec("idle-gpu", 5.0), messages=("The rule 'power-cap' failed and was skipped (X).",)
    )
    page = advice_page(qtbot, make_ctx())
    assert not page.banner.isHidden()
    assert "power-cap' failed" in page.banner.label.text()


def test_a_failure_of_the_rules_is_said_and_cleared_by_the_next_result(
    qtbot, make_ctx, fixed_advice, monkeypatch
) -> None:
    page = advice_page(qtbot, make_ctx())

    def broken(store: Store, config: Config, *, since_s: float, now: float | None = None):
        raise OSError("database disk image is malformed")

    monkeypatch.setattr(advice_snapshot, "advise", broken)
    page.refresh()
    qtbot.waitUntil(lambda: "could not be worked out" in page.banner.label.text(), timeout=10_000)
    assert "malformed" in page.banner.label.text() and not page.banner.isHidden()
    monkeypatch.setattr(advice_snapshot, "advise", lambda *a, **k: result(rec("idle-gpu", 1.0)))
    page.refresh()
    qtbot.waitUntil(lambda: len(page.cards) == 1, timeout=10_000)
    assert page.banner.isHidden()


def test_the_window_is_remembered_and_used(qtbot, make_ctx, fixed_advice) -> None:
    ctx = make_ctx()
    page = advice_page(qtbot, ctx)
    assert fixed_advice["calls"][-1] == 86_400.0  # the default: 24 h
    page.window_box.setCurrentText("7d")
    qtbot.waitUntil(lambda: fixed_advice["calls"][-1] == 7 * 86_400.0, timeout=10_000)
    qtbot.waitUntil(lambda: page.snapshot is not None and page.snapshot.window == "7d")
    ctx.settings.sync()
    again = QSettings(ctx.settings.fileName(), QSettings.Format.IniFormat)
    assert again.value("advice/window") == "7d"


# -- empty states ------------------------------------------------------------------------------
def test_an_empty_database_says_there_is_no_history_yet(qtbot, make_ctx) -> None:
    page = advice_page(qtbot, make_ctx())  # the real rules, on a new database
    assert page.snapshot is not None and not page.snapshot.has_data
    assert not page.empty.isHidden()
    assert "No history yet" in page.empty.text()
    assert page.cards == {}


def test_history_with_nothing_to_change_says_what_was_checked(
    qtbot, make_ctx, fixed_advice, idle_db
) -> None:
    page = advice_page(qtbot, make_ctx(db_path=idle_db))
    text = page.empty.text()
    assert not page.empty.isHidden()
    assert text.startswith("Nothing needs changing")
    assert "Checked the last 24 hours of 1 GPU on 1 host" in text
    assert "idle GPUs" in text and "budgets" in text
    assert page.total.text() == "≈ $0.00 / month"


# -- dismiss, snooze, restore on a real database ---------------------------------------------
def test_dismiss_hides_at_once_and_persists(qtbot, make_ctx, idle_copy) -> None:
    ctx = make_ctx(db_path=idle_copy)
    page = advice_page(qtbot, ctx)
    cards = shown_cards(page)
    idle = [c for c in cards if c.rec.rule == "idle-gpu"]
    assert idle, [c.rec.rule for c in cards]
    card = idle[0]
    key = card.rec.key
    card.dismiss_button.click()
    assert card.isHidden()  # at once, before the database answers
    qtbot.waitUntil(
        lambda: page.snapshot is not None and key in {r.key for r in page.snapshot.result.hidden},
        timeout=15_000,
    )
    assert key not in [c.rec.key for c in shown_cards(page)]
    assert advice_state(idle_copy, key) == [("dismissed", None)]
    # A new window on the same database does not show it either, unless asked to.
    other = advice_page(qtbot, make_ctx(db_path=idle_copy))
    assert key not in [c.rec.key for c in shown_cards(other)]
    other.show_dismissed.setChecked(True)
    hidden = other.cards[key]
    assert not hidden.isHidden() and not hidden.restore_button.isHidden()
    assert hidden.dismiss_button.isHidden()
    hidden.restore_button.click()
    qtbot.waitUntil(
        lambda: (
            other.snapshot is not None
            and key in {r.key for r in other.snapshot.result.recommendations}
        ),
        timeout=15_000,
    )
    assert not other.cards[key].dismiss_button.isHidden()


def test_snooze_hides_until_the_chosen_time(qtbot, make_ctx, idle_copy) -> None:
    page = advice_page(qtbot, make_ctx(db_path=idle_copy))
    card = next(c for c in shown_cards(page) if c.rec.rule == "idle-gpu")
    key = card.rec.key
    before = time.time()
    card.snooze_actions["1 week"].trigger()
    assert card.isHidden()
    qtbot.waitUntil(
        lambda: page.snapshot is not None and key in {r.key for r in page.snapshot.result.hidden},
        timeout=15_000,
    )
    ((state, until),) = advice_state(idle_copy, key)
    assert state == "snoozed" and until is not None
    assert before + 7 * 86_400 <= until <= time.time() + 7 * 86_400
    with Store.open(idle_copy) as store:  # a week later it is back, if still true
        later = advice_service.advise(store, Config(), since_s=86_400 * 30, now=until + 1)
        assert key in {r.key for r in later.recommendations}


def test_a_failed_dismiss_shows_the_card_again_and_says_why(
    qtbot, make_ctx, fixed_advice, monkeypatch
) -> None:
    fixed_advice["result"] = result(rec("idle-gpu", 10.0))
    page = advice_page(qtbot, make_ctx())

    def broken(store: Store, key: str, rule: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(advice_service, "dismiss", broken)
    card = shown_cards(page)[0]
    card.dismiss_button.click()
    assert card.isHidden()
    assert page.total.text() == "≈ $0.00 / month"
    qtbot.waitUntil(lambda: not card.isHidden(), timeout=10_000)
    assert "could not be dismissed" in page.banner.label.text()
    assert "disk full" in page.banner.label.text()
    assert page.total.text() == "≈ $10.00 / month"


# -- apply ---------------------------------------------------------------------------------------
def _stored_run(db: Path, argv: list[str], gpus: int, sweep: str | None = None) -> int:
    with RunStore.open(db) as runs:
        return runs.insert(
            name="train",
            sweep=sweep,
            backend="local",
            spec={"argv": argv, "env": {"KEEP": "1"}, "gpus": gpus, "cwd": None, "budget": 5.0},
            status="succeeded",
            created=time.time() - 600,
            started=time.time() - 600,
            ended=time.time() - 60,
            gpus=list(range(gpus)),
            pids=[],
        )


@pytest.mark.integration
def test_apply_relaunch_opens_the_prefilled_dialog_and_makes_a_child_run(
    qtbot, make_ctx, fixed_advice, tmp_path
) -> None:
    ctx = make_ctx(db_path=tmp_path / "relaunch.db")
    Store.open(ctx.db_path).close()
    argv = [sys.executable, "-c", "import os, sys; print(os.environ['ADVISED'], sys.argv[1:])"]
    parent = _stored_run(ctx.db_path, argv, 2)
    ctx.live.set_devices(host_info(), device_infos(n=2))
    ctx.runs = RunManager(ctx)
    changes = {"gpus": 1, "argv_append": ["--packed"], "env": {"ADVISED": "yes"}}
    over = rec("overallocated", 20.0, run=parent, kind="relaunch", changes=changes)
    fixed_advice["result"] = result(over)
    page = advice_page(qtbot, ctx)
    opened: list = []
    page.advice_actions.dialog_opened.connect(opened.append)
    page.cards[over.key].apply_button.click()
    qtbot.waitUntil(lambda: bool(opened), timeout=10_000)
    dialog = opened[0]
    assert dialog.command.text() == shlex.join([*argv, "--packed"])
    assert dialog.gpus.value() == 1
    assert dialog.name.text() == "train-advised"
    assert f"Run {parent} again" in dialog.note.text() and "GPUs 2 → 1" in dialog.note.text()
    children: list = []
    page.advice_actions.relaunched.connect(lambda ids, p: children.append((ids, p)))
    assert dialog.try_accept()
    qtbot.waitUntil(lambda: bool(children), timeout=15_000)
    ((ids, parents),) = children
    assert parents == (parent,) and len(ids) == 1

    def child_row() -> RunRow | None:
        with RunStore.open(ctx.db_path) as runs:
            return runs.get(ids[0])

    def finished() -> bool:
        row = child_row()
        return row is not None and row.status not in UNFINISHED

    qtbot.waitUntil(finished, timeout=30_000)
    child = child_row()
    assert child is not None
    assert child.parent_id == parent
    assert child.spec["argv"] == [*argv, "--packed"]
    assert child.spec["env"] == {"KEEP": "1", "ADVISED": "yes"}
    assert child.spec["gpus"] == 1
    assert child.status == "succeeded", child.message
    assert f"the child run of run {parent}" in page.banner.label.text()
    # The Runs page names the parent above the child's output.
    runs_page = RunsPage(ctx)
    qtbot.addWidget(runs_page)
    runs_page.show()
    runs_page.refresh()
    qtbot.waitUntil(lambda: runs_page.select_run(ids[0]), timeout=10_000)
    assert f"relaunched from run {parent}" in runs_page.log.title.text()
    qtbot.waitUntil(ctx.runs.settled, timeout=30_000)  # priced: nothing left on its threads
    ctx.runs.shutdown()


@pytest.mark.integration
def test_without_a_monitor_finished_reaches_listeners_before_costed(tmp_path: Path) -> None:
    """What the relaunch needs when sampling is off: the window waits for COSTED after
    FINISHED, so COSTED must never overtake it (it did: pricing started before FINISHED went
    out, and with no monitor to wait for it often finished first)."""
    db = tmp_path / "order.db"
    Store.open(db).close()
    options = RunServiceOptions(db_path=db, pricing=Config().pricing(), monitor=None, poll_s=0.05)
    service = RunService(LocalBackend(BackendConfig(state_dir=tmp_path)), options)
    kinds: list[tuple[int, EventKind]] = []

    def listen(event: RunEvent) -> None:
        if event.kind == EventKind.FINISHED:
            time.sleep(0.3)  # a listener that takes its time (the GUI's forwards through a lock)
        kinds.append((event.run.key, event.kind))

    service.subscribe(listen)
    try:
        ids = [service.submit(RunSpec(argv=(sys.executable, "-c", "pass"))) for _ in range(3)]
        assert service.wait(60)
    finally:
        service.close()
    for run_id in ids:
        mine = [k for key, k in kinds if key == run_id]
        assert mine.index(EventKind.FINISHED) < mine.index(EventKind.COSTED), mine


@pytest.mark.integration
def test_apply_on_a_sweep_relaunches_each_run_as_a_child_in_a_new_sweep(
    qtbot, make_ctx, fixed_advice, tmp_path, monkeypatch
) -> None:
    ctx = make_ctx(db_path=tmp_path / "sweep.db")
    Store.open(ctx.db_path).close()
    argv = [sys.executable, "-c", "pass"]
    originals = [_stored_run(ctx.db_path, argv, 1, sweep="lr-sweep") for _ in range(3)]
    _stored_run(ctx.db_path, argv, 1, sweep="another")
    ctx.live.set_devices(host_info(), device_infos(n=2))
    ctx.runs = RunManager(ctx)
    pack = dataclasses.replace(
        rec("pack-sweep", 9.0, device=None),
        target=Target(host="node-1", sweep="lr-sweep"),
        action=Action("Run 2 per GPU.", "relaunch", {"per_gpu": 2}),
    )
    fixed_advice["result"] = result(pack)
    page = advice_page(qtbot, ctx)
    asked: list[str] = []

    def yes(_parent: QWidget, _title: str, text: str, *args: object) -> QMessageBox.StandardButton:
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", yes)
    children: list = []
    page.advice_actions.relaunched.connect(lambda ids, p: children.append((ids, p)))
    page.cards[pack.key].apply_button.click()
    qtbot.waitUntil(lambda: bool(children), timeout=20_000)
    assert "the 3 runs of the sweep lr-sweep" in asked[0] and "2 runs per GPU" in asked[0]
    ((ids, parents),) = children
    assert sorted(parents) == originals and len(ids) == 3
    with RunStore.open(ctx.db_path) as runs:
        rows = [runs.get(i) for i in ids]
    assert {r.parent_id for r in rows if r} == set(originals)
    sweeps = {r.sweep for r in rows if r}
    assert len(sweeps) == 1 and next(iter(sweeps)).startswith("lr-sweep-advised-")
    qtbot.waitUntil(ctx.runs.settled, timeout=30_000)
    ctx.runs.shutdown()


def test_apply_relaunch_of_a_run_no_longer_stored_says_so(qtbot, make_ctx, fixed_advice) -> None:
    gone = rec("overallocated", 3.0, run=999, kind="relaunch", changes={"gpus": 1})
    fixed_advice["result"] = result(gone)
    page = advice_page(qtbot, make_ctx())
    page.cards[gone.key].apply_button.click()
    qtbot.waitUntil(lambda: "no longer in the database" in page.banner.label.text(), timeout=10_000)
    assert page.advice_actions.dialog is None


def test_compress_opens_the_compression_dialog_or_says_it_is_missing(
    qtbot, make_ctx, fixed_advice, monkeypatch
) -> None:
    comp = rec("compress", 12.0, kind="compress", changes={"model_path": "/models/m.pt"})
    fixed_advice["result"] = result(comp)
    page = advice_page(qtbot, make_ctx())
    calls: list = []
    fake = types.ModuleType(advice_actions.COMPRESS_MODULE)

    def open_compress_dialog(
        parent: QWidget, model_path: str | None = None, *, price: object = None
    ) -> str:
        calls.append((parent, model_path))
        assert price is not None  # the verdict prices serving at the user's core-hour price
        return "dialog"

    fake.open_compress_dialog = open_compress_dialog  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, advice_actions.COMPRESS_MODULE, fake)
    page.cards[comp.key].apply_button.click()
    assert calls == [(page, "/models/m.pt")]
    assert page.advice_actions.compress_dialog == "dialog"
    monkeypatch.setitem(sys.modules, advice_actions.COMPRESS_MODULE, None)  # import fails
    page.cards[comp.key].apply_button.click()
    assert "not part of this build" in page.banner.label.text()


def test_compress_opens_the_real_dialog_when_it_exists(qtbot, make_ctx, fixed_advice) -> None:
    module = pytest.importorskip(advice_actions.COMPRESS_MODULE)
    comp = rec("compress", 12.0, kind="compress")
    fixed_advice["result"] = result(comp)
    page = advice_page(qtbot, make_ctx())
    page.cards[comp.key].apply_button.click()
    dialog = page.advice_actions.compress_dialog
    assert isinstance(dialog, QWidget), module
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    assert dialog.parent() is page
    dialog.close()  # deletes itself


# -- the Overview --------------------------------------------------------------------------------
class _Window(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def show_page(self, key: str) -> None:
        self.shown.append(key)


def test_the_overview_shows_the_total_and_links_to_advice(qtbot, make_ctx, fixed_advice) -> None:
    fixed_advice["result"] = result(rec("idle-gpu", 803.5), rec("underused-gpu", 40.25, device=1))
    ctx = make_ctx()
    window = _Window()
    qtbot.addWidget(window)
    page = OverviewPage(ctx)
    page.setParent(window)
    tile = page.card_savings
    qtbot.waitUntil(lambda: "recommendations" in tile.detail.text(), timeout=10_000)
    assert tile.value.text() == "$844/mo"
    assert "2 recommendations over the last 24h" in tile.detail.text()
    tile.detail.linkActivated.emit("advice")
    assert window.shown == ["advice"]
    # The page and the tile share one poller: a dismiss on the page lowers the tile's total.
    assert AdvicePoller.of(ctx) is tile.poller
    fixed_advice["result"] = result(rec("underused-gpu", 40.25, device=1))
    AdvicePoller.of(ctx).refresh()
    qtbot.waitUntil(lambda: tile.value.text() == "$40.25/mo", timeout=10_000)


def test_the_host_selector_narrows_the_cards_and_the_totals(qtbot, make_ctx, fixed_advice) -> None:
    fixed_advice["result"] = result(
        rec("idle-gpu", 500.0, host="node-1"), rec("underused-gpu", 30.0, host="node-2")
    )
    ctx = make_ctx()
    page = advice_page(qtbot, ctx)
    overview = OverviewPage(ctx)
    qtbot.addWidget(overview)
    tile = overview.card_savings
    assert tile.value.text() == "$530/mo" and page.total.text() == "≈ $530 / month"
    ctx.set_host_filter("node-2")
    assert [c.rec.target.host for c in shown_cards(page)] == ["node-2"]
    assert page.total.text() == "≈ $30.00 / month"
    assert "on node-2 by 1 recommendation; 1 more on other hosts" in page.total_caption.text()
    assert tile.value.text() == "$30.00/mo"
    ctx.set_host_filter("node-3")
    assert shown_cards(page) == [] and not page.empty.isHidden()
    assert page.empty.text().startswith("Nothing needs changing on node-3")
    assert "choose All hosts" in page.empty.text()
    ctx.set_host_filter(None)
    assert len(shown_cards(page)) == 2


def test_settings_actions_open_settings_and_a_new_database_is_advised_on(
    qtbot, make_ctx, fixed_advice, tmp_path
) -> None:
    cap = rec("budget-forecast", 2.0, kind="settings")
    fixed_advice["result"] = result(cap)
    ctx = make_ctx(db_path=tmp_path / "first.db")
    window = _Window()
    qtbot.addWidget(window)
    page = AdvicePage(ctx)
    page.setParent(window)
    window.show()
    qtbot.waitUntil(lambda: page.snapshot is not None, timeout=10_000)
    assert page.snapshot is not None and page.snapshot.db_path == tmp_path / "first.db"
    page.cards[cap.key].apply_button.click()
    assert window.shown == ["settings"]
    # Sampling moved to another database (simulated GPUs): the next priced summary is the cue.
    ctx.db_path = tmp_path / "simulated.db"
    ctx.reader.set_path(ctx.db_path)
    ctx.signals.summary_ready.emit(None)
    qtbot.waitUntil(
        lambda: page.snapshot is not None and page.snapshot.db_path == ctx.db_path,
        timeout=10_000,
    )
