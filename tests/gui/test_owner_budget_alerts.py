"""The tray tells once per owner per day when an owner passes its ``[[budgets]]`` entry, priced
by the cost poller on the reader thread from a real database; advice cards name the owner."""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMainWindow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import owned_history as oh
from costmeter.advice.model import Action, Evidence, Recommendation, Target
from costmeter.config import parse_config
from costmeter.core.owner import Owner
from costmeter.cost.forecast import day_start
from costmeter.gui.cost_poller import CostPoller
from costmeter.gui.pages.overview import OverviewPage
from costmeter.gui.tray import Tray
from costmeter.gui.widgets.advice_card import AdviceCard
from costmeter.service.budgets import BudgetStatus

CONFIG = """
[[attribution.rules]]
project = "vision"
users = ["alice"]

[[budgets]]
by = "project"
key = "vision"
daily = 0.01
monthly = 0.01

[[budgets]]
by = "user"
key = "alice"
daily = 0.01

[[budgets]]
by = "user"
key = "bob"
daily = 1000.0
"""


def test_the_tray_tells_once_per_owner_per_day(qtbot, make_ctx, tmp_path: Path) -> None:
    now = time.time()
    midnight = day_start(datetime.now().astimezone()).timestamp()
    start = max(now - 240.0, midnight)  # today's part only: a run just after midnight too
    alice = oh.Holder(0, 7001, Owner(uid=1001, user="alice"), util=90.0, power_w=300.0)
    bob = oh.Holder(1, 7002, Owner(uid=1002, user="bob"), util=0.0, power_w=60.0)
    db = tmp_path / "owners.db"
    oh.write(db, [oh.Stretch(start, now - 1.0, (alice, bob))])
    config = parse_config(CONFIG, tmp_path / "config.toml")
    ctx = make_ctx(db, config)
    window = QMainWindow()
    qtbot.addWidget(window)
    tray = Tray(ctx, window)
    overview = OverviewPage(ctx)
    qtbot.addWidget(overview)
    poller = CostPoller(ctx, window)
    got: list[tuple[BudgetStatus, ...]] = []
    ctx.signals.budgets_ready.connect(got.append)
    qtbot.waitUntil(lambda: len(got) >= 1, timeout=20_000)
    titles = sorted(a.title for a in tray.alerts if a.kind == "budget")
    assert titles == [
        "Project vision passed its daily budget",
        "Project vision passed its monthly budget",
        "User alice passed its daily budget",
    ]
    message = next(a.message for a in tray.alerts if a.title.startswith("User alice"))
    assert message.startswith("User alice passed its daily budget: $") and "of $0.01" in message
    # The Overview names the owners over budget (bob, far under his, is not named).
    line = overview.budgets_over.text()
    assert line.startswith("Over budget: project vision: $") and "of $0.01 this month" in line
    assert "user alice: $" in line and "bob" not in line
    # Priced again: still over, nothing new said the same day.
    poller.refresh_budgets()
    qtbot.waitUntil(lambda: len(got) >= 2, timeout=20_000)
    assert len(tray.alerts) == 3
    # The next day the daily budgets are told again (the monthly one only in a new month).
    vision, alice_status, bob_status = got[-1]
    assert alice_status.daily_over is True
    assert bob_status.daily_over is False
    tomorrow = tuple(
        dataclasses.replace(s, day_start=s.day_start + 86400.0, now=s.now + 86400.0)
        for s in got[-1]
    )
    tray.check_owner_budgets(tomorrow)
    new_month = (
        datetime.fromtimestamp(tomorrow[0].day_start).month
        != datetime.fromtimestamp(vision.day_start).month
    )
    new = sorted(a.title for a in tray.alerts[3:])
    expected = ["Project vision passed its daily budget", "User alice passed its daily budget"]
    if new_month:
        expected.insert(1, "Project vision passed its monthly budget")
    assert new == expected
    tray.hide()


def test_an_advice_card_names_the_owner_among_its_facts(qtbot) -> None:
    target = Target("node-1", 1, "GPU-1", "NVIDIA A100-SXM4-80GB", owner="bob (100 %)")
    ev = Evidence(0.0, 3600.0, (("p95 GPU utilisation", "0 %"),))
    rec = Recommendation("idle-gpu", "Release GPU 1", target, ev, None, 0.8, Action("Stop it."))
    card = AdviceCard(rec)
    qtbot.addWidget(card)
    assert [(k.text(), v.text()) for k, v in card.fact_labels] == [
        ("Owner:", "bob (100 %)"),
        ("p95 GPU utilisation:", "0 %"),
    ]
    # A new owner is a new figure for the same card, not a new card.
    assert card.update_from(dataclasses.replace(rec, target=dataclasses.replace(target, owner="x")))
    assert card.fact_labels[0][1].text() == "x"
    nobody = AdviceCard(dataclasses.replace(rec, target=dataclasses.replace(target, owner=None)))
    qtbot.addWidget(nobody)
    assert [k.text() for k, _ in nobody.fact_labels] == ["p95 GPU utilisation:"]


@pytest.fixture(autouse=True)
def _no_tray_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notifications stay in ``tray.alerts``: no desktop bubble from a test."""
    monkeypatch.setattr(Tray, "supportsMessages", lambda _self: False)
