"""The History page draws what the store returns, prices the visible range, exports it, and says
so when there is nothing to show or a read fails."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from costmeter.core.units import format_energy_kwh
from costmeter.cost.ledger import format_money, price_usage
from costmeter.gui.history_data import VISIBLE_POINTS
from costmeter.gui.pages.history import NO_HISTORY, HistoryPage
from costmeter.service.export import iso_utc
from costmeter.store import Store
from costmeter.store.queries import Series

from .conftest import simulate_history

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of an A100 training and a T4 idling, shared by the module (a few seconds)."""
    db = tmp_path_factory.mktemp("history") / "history.db"
    simulate_history(db, hours=2)
    return db


def _open(ctx, qtbot) -> HistoryPage:
    page = HistoryPage(ctx)
    qtbot.addWidget(page)
    page.resize(1100, 700)
    page.show()
    page.on_shown()
    return page


def _settled(page: HistoryPage) -> bool:
    return page.has_data() and not page.loading() and page.cost is not None


def _store_series(db: Path, page: HistoryPage) -> Series:
    """What the store returns for the range and point budget the page asked for."""
    target, metric = page.current_target(), page.current_metric()
    assert target is not None and metric is not None and page.loaded is not None
    with Store.open(db) as store:
        return store.query_series(target.id, metric.name, *page.loaded)


def _finite(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[np.isfinite(a)]


def _assert_plot_matches(page: HistoryPage, series: Series, scale: float = 1.0) -> None:
    """The drawn line is the series' averages (divided by the axis' unit, e.g. GiB)."""
    x, avg = page.plot.drawn()
    keep = np.isfinite(avg)
    expected = np.asarray(series.avg, dtype=float) / scale
    assert len(series) > 0
    np.testing.assert_allclose(avg[keep], expected[np.isfinite(expected)])
    np.testing.assert_allclose(
        x[keep], (np.asarray(series.ts) + series.bucket_s / 2)[np.isfinite(expected)]
    )


def test_plot_shows_the_stores_series_and_presets_change_the_range(make_ctx, qtbot, history_db):
    page = _open(make_ctx(db_path=history_db), qtbot)
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    assert page.controls.preset() == "24h"
    assert page.current_target().label.endswith("GPU 0: NVIDIA A100-SXM4-80GB")
    start, end = page.plot.visible_range()
    assert end - start == pytest.approx(86400, abs=1)
    series = _store_series(history_db, page)
    assert page.series == series and series.resolution == "1m"
    _assert_plot_matches(page, series)
    # A rollup draws its min-max band from the same rows (coarsened to a few pixels a cell).
    band_lo, band_hi = page.plot.lo.getOriginalDataset()[1], page.plot.hi.getOriginalDataset()[1]
    assert 0 < len(band_lo) <= len(series)
    assert _finite(band_lo).min() == _finite(series.min).min()
    assert _finite(band_hi).max() == _finite(series.max).max()
    assert page.plot.band.isVisible()
    assert "1-minute averages" in page.controls.status.text()

    page.controls.preset_box.setCurrentIndex(page.controls.preset_box.findData("1h"))
    qtbot.waitUntil(lambda: _settled(page) and page.series.resolution == "raw", timeout=10_000)
    start, end = page.plot.visible_range()
    assert end - start == pytest.approx(3600, abs=1)
    assert page.loaded[1] - page.loaded[0] == pytest.approx(3600 * 1.5, abs=1)
    raw = _store_series(history_db, page)
    assert page.series == raw
    _assert_plot_matches(page, raw)
    assert not page.plot.band.isVisible()


def test_zooming_requeries_at_a_finer_resolution(make_ctx, qtbot, history_db):
    page = _open(make_ctx(db_path=history_db), qtbot)
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    assert page.series.resolution == "1m"
    _, end = page.plot.visible_range()
    page.plot.set_visible_range(end - 7200, end - 6600)  # as a mouse zoom would; settles later
    qtbot.waitUntil(lambda: _settled(page) and page.series.resolution == "raw", timeout=10_000)
    assert page.controls.preset() == "custom"
    assert page.loaded[1] - page.loaded[0] == pytest.approx(900, abs=1)
    _assert_plot_matches(page, _store_series(history_db, page))


def test_the_host_is_offered_with_its_own_metrics(make_ctx, qtbot, history_db):
    page = _open(make_ctx(db_path=history_db), qtbot)
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    assert [t.kind for t in page.targets] == ["device", "device", "host"]
    page.controls.metric_box.setCurrentIndex(page.controls.metric_box.findData("mem_used"))
    page.controls.device_box.setCurrentIndex(2)
    qtbot.waitUntil(lambda: _settled(page) and page.series.metric == "mem_used", timeout=10_000)
    assert page.current_target().kind == "host"
    assert page.current_metric().name == "mem_used"  # the same metric, where the host has it
    assert page.controls.metric_box.findData("cpu_percent") >= 0
    assert page.plot.plot.getAxis("left").labelText.endswith("(GiB)")
    target = page.current_target()
    with Store.open(history_db) as store:
        expected = store.query_host_series(target.id, "mem_used", *page.loaded)
    _assert_plot_matches(page, expected, scale=2**30)
    assert page.costs.selected.caption.text() == target.label


def test_cost_is_the_ledgers_price_of_the_visible_range(make_ctx, qtbot, history_db):
    ctx = make_ctx(db_path=history_db)
    page = _open(ctx, qtbot)
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    report = page.cost
    assert (report.start, report.end) == pytest.approx(page.plot.visible_range())
    with Store.open(history_db) as store:
        expected = price_usage(
            store.device_usage(report.start, report.end),
            store.host_usage(report.start, report.end),
            ctx.pricing(),
            report.start,
            report.end,
        )
    cur = ctx.currency
    assert expected.total.cost > 0
    assert page.costs.total.value.text() == format_money(expected.total.cost, cur)
    detail = page.costs.total.detail.text()
    assert format_money(expected.total.idle_cost, cur) in detail
    assert format_energy_kwh(expected.total.energy_kwh) in detail
    a100 = next(d for d in expected.devices if d.index == 0)
    assert page.costs.selected.value.text() == format_money(a100.cost, cur)
    assert format_energy_kwh(a100.energy_kwh) in page.costs.selected.detail.text()


def test_export_writes_the_visible_range_as_csv_and_json(make_ctx, qtbot, history_db, tmp_path):
    page = _open(make_ctx(db_path=history_db), qtbot)
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    start, end = page.plot.visible_range()
    target = page.current_target()
    with Store.open(history_db) as store:
        series = store.query_series(target.id, "gpu_util", start, end, VISIBLE_POINTS)
    with qtbot.waitSignal(page.exported, timeout=10_000) as sig:
        page.export_to(tmp_path / "gpu.csv")
    assert sig.args == [str(tmp_path / "gpu.csv"), len(series)]
    with open(tmp_path / "gpu.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(series) > 0
    assert list(rows[0]) == ["ts", "min", "avg", "max", "resolution"]
    assert [r["ts"] for r in rows] == [iso_utc(t) for t in series.ts]
    assert rows[0]["ts"].endswith("Z")
    assert [float(r["avg"]) for r in rows] == pytest.approx(series.avg)
    assert [float(r["max"]) for r in rows] == pytest.approx(series.max)
    assert {r["resolution"] for r in rows} == {series.resolution}

    with qtbot.waitSignal(page.exported, timeout=10_000):
        page.export_to(tmp_path / "gpu.json")
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["device"] == target.label
    assert (doc["metric"], doc["resolution"]) == ("gpu_util", series.resolution)
    assert (doc["start"], doc["end"]) == (iso_utc(start), iso_utc(end))
    assert [p["min"] for p in doc["points"]] == pytest.approx(series.min)
    assert [p["ts"] for p in doc["points"]] == [iso_utc(t) for t in series.ts]
    assert "Exported" in page.controls.status.text()


def test_a_loading_hint_shows_while_the_query_runs(make_ctx, qtbot, history_db, monkeypatch):
    gate = threading.Event()
    real = Store.query_series

    def slow(self, *args, **kw):
        gate.wait(5)
        return real(self, *args, **kw)

    monkeypatch.setattr(Store, "query_series", slow)
    page = _open(make_ctx(db_path=history_db), qtbot)
    qtbot.waitUntil(lambda: page.current_metric() is not None, timeout=10_000)
    assert page.loading() and not page.has_data()
    assert page.controls.status.text() == "Loading…"
    gate.set()
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    assert page.controls.status.text().endswith("points")


def test_an_empty_database_says_so(make_ctx, qtbot, tmp_path):
    page = _open(make_ctx(db_path=tmp_path / "empty.db"), qtbot)
    qtbot.waitUntil(lambda: page.plot.showing_message() and not page.loading(), timeout=10_000)
    assert page.plot.message.text() == NO_HISTORY
    assert "No history yet" in page.plot.message.text()
    assert not page.has_data()


def test_a_database_that_cannot_be_opened_shows_why(make_ctx, qtbot, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    page = _open(make_ctx(db_path=tmp_path / "a-file" / "x.db"), qtbot)
    qtbot.waitUntil(lambda: page.plot.showing_message() and not page.loading(), timeout=10_000)
    assert page.plot.message.text().startswith("Could not load the history.")
    assert "Could not load the history" in page.controls.status.text()
    assert not page.has_data()


def test_a_failing_query_shows_the_message_and_keeps_working(
    make_ctx, qtbot, history_db, monkeypatch
):
    def broken(*_args, **_kw):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "query_series", broken)
    page = _open(make_ctx(db_path=history_db), qtbot)
    qtbot.waitUntil(lambda: page.plot.showing_message() and not page.loading(), timeout=10_000)
    assert "disk I/O error" in page.plot.message.text()
    assert "disk I/O error" in page.controls.status.text()
    assert page.cost is not None  # the cost read did not fail
    monkeypatch.undo()
    page.controls.preset_box.setCurrentIndex(page.controls.preset_box.findData("1h"))
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    assert not page.plot.showing_message()
    assert "Could not" not in page.controls.status.text()


def test_choices_are_saved_and_restored(make_ctx, qtbot, history_db, tmp_path):
    ctx = make_ctx(db_path=history_db)
    page = _open(ctx, qtbot)
    qtbot.waitUntil(lambda: _settled(page), timeout=10_000)
    t4 = next(i for i, t in enumerate(page.targets) if "T4" in t.label)
    page.controls.device_box.setCurrentIndex(t4)
    page.controls.metric_box.setCurrentIndex(page.controls.metric_box.findData("power_w"))
    page.controls.preset_box.setCurrentIndex(page.controls.preset_box.findData("7d"))
    qtbot.waitUntil(lambda: _settled(page) and page.series.metric == "power_w", timeout=10_000)
    assert page.plot.plot.getAxis("left").labelText == "Power (W)"
    settings = QSettings(str(tmp_path / "saved.ini"), QSettings.Format.IniFormat)
    page.save_state(settings)
    assert settings.value("history/preset") == "7d"

    again = HistoryPage(ctx)
    qtbot.addWidget(again)
    again.restore_state(settings)
    again.on_shown()
    qtbot.waitUntil(lambda: _settled(again), timeout=10_000)
    assert "T4" in again.current_target().label
    assert again.current_metric().name == "power_w"
    assert again.controls.preset() == "7d"
    start, end = again.plot.visible_range()
    assert end - start == pytest.approx(7 * 86400, abs=1)
    assert math.isfinite(np.nanmax(again.plot.drawn()[1]))
