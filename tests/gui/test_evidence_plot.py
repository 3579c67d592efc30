"""Evidence charts are built after their cards, one per pass of the event loop."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from costmeter.advice.model import EvidenceSeries
from costmeter.gui.widgets.evidence_plot import EvidencePlot


def _series(label: str) -> tuple[EvidenceSeries, ...]:
    ts = tuple(float(t) for t in range(0, 600, 10))
    return (EvidenceSeries(label, "%", ts, tuple(50.0 for _ in ts), threshold=40.0),)


def test_charts_are_built_lazily_one_per_pass(qtbot) -> None:
    charts = [EvidencePlot(_series(f"s{i}")) for i in range(4)]
    for chart in charts:
        qtbot.addWidget(chart)
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
