"""The Overview shows what the store and the live samples say, in the user's currency."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from costmeter.cost.ledger import format_money
from costmeter.cost.rates import rate_now
from costmeter.gui import cost_poller as poller_module
from costmeter.gui.cost_poller import CostPoller
from costmeter.gui.pages.overview import OverviewPage
from costmeter.service.summary import report_between
from costmeter.store import Store
from costmeter.store.testing import device_infos, host_info, make_tick

from .conftest import simulate_history

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("overview") / "hist.db"
    simulate_history(db, hours=1.0, spec="a100:train,h100:idle")
    return db


def test_cost_today_matches_the_report_for_the_same_range(qtbot, make_ctx, history_db) -> None:
    ctx = make_ctx(db_path=history_db)
    page = OverviewPage(ctx)
    qtbot.addWidget(page)
    CostPoller(ctx, page)
    qtbot.waitUntil(lambda: page.summary is not None, timeout=10_000)
    assert page.summary is not None
    today = page.summary.today
    with Store.open(history_db) as store:
        expected = report_between(store, ctx.pricing(), today.start, today.end)
    assert today.total.cost == pytest.approx(expected.total.cost)
    assert expected.total.cost > 0 or time.localtime().tm_hour == 0
    assert page.card_today.value.text() == format_money(expected.total.cost, expected.currency)
    assert (
        format_money(expected.total.idle_cost, expected.currency) in page.card_today.detail.text()
    )
    assert f"{expected.total.carbon_kg:.2f} kg" in page.card_energy.detail.text()


def test_live_cards_follow_the_latest_tick(qtbot, make_ctx) -> None:
    ctx = make_ctx()
    page = OverviewPage(ctx)
    qtbot.addWidget(page)
    infos = device_infos(n=2)
    ctx.live.set_devices(host_info(), infos)
    tick = make_tick(time.time(), devices=2, util=1.0, with_processes=True)
    ctx.live.push(tick)
    page.on_live()
    rate = rate_now(ctx.live.devices, tick.devices, host_info(), tick.host_sample, ctx.pricing())
    assert page.card_rate.value.text() == format_money(rate.per_hour, ctx.currency) + "/h"
    assert page.card_gpus.value.text() == "0 / 2 busy"
    assert "2 idle but allocated" in page.card_gpus.detail.text()
    assert "2 GPUs are held by a process" in page.note.text()
    x, y = page.plot_util.curve_data(infos[0].uuid)
    assert list(y) == [1.0] and x[0] == pytest.approx(0.0)


def test_a_lost_gpu_is_counted_as_lost(qtbot, make_ctx) -> None:
    ctx = make_ctx()
    page = OverviewPage(ctx)
    qtbot.addWidget(page)
    ctx.live.set_devices(host_info(), device_infos(n=2))
    ctx.live.push(make_tick(time.time(), devices=2, util=90.0, lost=frozenset({1})))
    page.on_live()
    assert page.card_gpus.value.text() == "1 / 2 busy"
    assert "1 lost" in page.card_gpus.detail.text()


def test_the_window_stays_responsive_while_the_database_is_slow(
    qtbot, make_ctx, monkeypatch
) -> None:
    """A read that takes seconds runs on the reader thread; the event loop keeps turning."""
    from PySide6.QtCore import QTimer

    started = []

    def slow_summary(store: Store, pricing: object) -> object:
        started.append(time.monotonic())
        time.sleep(2.0)
        raise RuntimeError("database is locked")

    monkeypatch.setattr(poller_module, "cost_summary", slow_summary)
    ctx = make_ctx()
    page = OverviewPage(ctx)
    qtbot.addWidget(page)
    CostPoller(ctx, page)
    beats: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: beats.append(time.monotonic()))
    timer.start(20)
    qtbot.waitUntil(lambda: bool(started), timeout=5000)
    qtbot.waitUntil(lambda: "could not be read" in page.note.text(), timeout=10_000)
    timer.stop()
    during = [b for b in beats if started[0] <= b <= started[0] + 2.0]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert len(during) > 40  # ~100 expected at 20 ms
    assert max(gaps) < 0.5
    assert "busy" in page.note.text() or "locked" in page.note.text()


def test_gaps_in_live_data_are_not_bridged() -> None:
    import numpy as np

    from costmeter.gui.widgets.live_plot import break_gaps

    x = np.array([-300.0, -299, -298, -100, -99])
    y = np.array([1.0, 2, 3, 4, 5])
    bx, by = break_gaps(x, y)
    assert len(bx) == 6 and np.isnan(by[3]) and list(by[[0, 1, 2, 4, 5]]) == [1, 2, 3, 4, 5]
    _, same_y = break_gaps(x[:3], y[:3])
    assert list(same_y) == [1, 2, 3]
