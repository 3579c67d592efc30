"""Evidence charts are built after their cards, one per pass of the event loop."""

from __future__ import annotations

import gc
import weakref

import shiboken6
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from costmeter.advice.model import EvidenceSeries
from costmeter.gui.widgets.evidence_plot import EvidencePlot, waiting_charts


def _series(label: str) -> tuple[EvidenceSeries, ...]:
    ts = tuple(float(t) for t in range(0, 600, 10))
    return (EvidenceSeries(label, "%", ts, tuple(50.0 for _ in ts), threshold=40.0),)


def test_charts_are_built_lazily_one_per_pass(qtbot) -> None:
    charts = [EvidencePlot(_series(f"s{i}")) for i in range(4)]
    for chart in charts:
        qtbot.addWidget(chart)
        chart.show()
    assert not any(c.built for c in charts)
    assert all(c.minimumHeight() > 0 for c in charts)  # the room is held meanwhile
    QApplication.processEvents()
    assert 1 <= sum(c.built for c in charts) < 4
    qtbot.waitUntil(lambda: all(c.built for c in charts), timeout=5000)
    assert charts[0].thresholds["s0"].value() == 40.0


def test_reading_a_chart_builds_it_and_new_values_wait_for_it(qtbot) -> None:
    chart = EvidencePlot(_series("a"))
    qtbot.addWidget(chart)
    newer = _series("a")[0]
    chart.update_series((EvidenceSeries("a", "%", newer.ts, tuple(9.0 for _ in newer.ts)),))
    assert not chart.built
    _, ys = chart.curves["a"].getData()  # reading builds it, with the newest values
    assert chart.built and float(ys[0]) == 9.0


def test_a_hidden_chart_waits_until_it_is_shown(qtbot) -> None:
    chart = EvidencePlot(_series("a"))
    qtbot.addWidget(chart)
    for _ in range(5):
        QApplication.processEvents()
    assert not chart.built and chart.waiting  # not on screen: nothing drawn for nobody
    chart.show()
    qtbot.waitUntil(lambda: chart.built, timeout=5000)


def test_a_discarded_chart_is_never_built_even_when_its_deletion_comes_late(qtbot) -> None:
    parent = QWidget()
    qtbot.addWidget(parent)
    layout = QVBoxLayout(parent)
    charts = [EvidencePlot(_series(f"s{i}")) for i in range(3)]
    for chart in charts:
        layout.addWidget(chart)
    parent.show()
    charts[1].discard()
    charts[1].deleteLater()  # the card's way out: its deletion waits for the event loop
    qtbot.waitUntil(lambda: charts[0].built and charts[2].built, timeout=5000)
    assert not charts[1].built if shiboken6.isValid(charts[1]) else True
    assert waiting_charts() == []


def test_closing_a_page_before_its_charts_are_built_builds_none(qtbot) -> None:
    parent = QWidget()
    qtbot.addWidget(parent)
    layout = QVBoxLayout(parent)
    charts = [EvidencePlot(_series(f"s{i}")) for i in range(3)]
    for chart in charts:
        layout.addWidget(chart)
    parent.show()
    parent.close()
    parent.deleteLater()
    for _ in range(5):
        QApplication.processEvents()
    assert all(not shiboken6.isValid(c) or not c.built for c in charts)
    assert waiting_charts() == []


def test_a_window_kept_only_by_a_cycle_survives_the_build_of_its_chart(qtbot, monkeypatch) -> None:
    """A garbage collection during a build used to delete the chart's window under it."""
    real = EvidencePlot._plot

    def plot_after_a_collection(self: EvidencePlot, unit: str):  # type: ignore[no-untyped-def]
        gc.collect()  # what the build's allocations may trigger at any moment
        return real(self, unit)

    monkeypatch.setattr(EvidencePlot, "_plot", plot_after_a_collection)
    window = QWidget()
    window.cycle = window  # type: ignore[attr-defined]  # only a cycle keeps it alive
    QVBoxLayout(window).addWidget(EvidencePlot(_series("a")))
    window.show()
    alive = weakref.ref(window)
    del window
    qtbot.waitUntil(lambda: not waiting_charts(), timeout=5000)
    QApplication.processEvents()
    gc.collect()
    assert alive() is None
