"""The small chart on an advice card: the recommendation's series over its window, each with the
rule's threshold as a dashed line.

Series sharing a unit share a plot; a second unit (memory in GiB beside utilisation in %) gets a
second plot under the first, with the time axes linked. Mouse interaction is off and wheel events
go to the page, so scrolling the list of cards never zooms a chart.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent, QWheelEvent
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from costmeter.advice.model import EvidenceSeries
from costmeter.gui.theme import colour_for

#: Height of one plot (one unit); a card with two units is twice as tall.
PLOT_HEIGHT = 104
#: At most this many units are drawn (the rest are listed in the facts).
MAX_UNITS = 2
THRESHOLD_COLOUR = "#dc2626"


class _Plot(pg.PlotWidget):
    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()  # let the page scroll


def format_number(value: float) -> str:
    """A threshold as a person writes it: 280, 21.4, 0.05."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def by_unit(series: tuple[EvidenceSeries, ...]) -> list[tuple[str, list[EvidenceSeries]]]:
    """The series grouped by unit, in their order, with at most ``MAX_UNITS`` groups."""
    groups: dict[str, list[EvidenceSeries]] = {}
    for s in series:
        if s.unit in groups or len(groups) < MAX_UNITS:
            groups.setdefault(s.unit, []).append(s)
    return list(groups.items())


class EvidencePlot(QWidget):
    """The evidence chart of a card, built lazily: a page of cards shows its text at once and
    builds one chart per pass of the event loop (a pyqtgraph plot costs tens of milliseconds of
    the GUI thread), so the window keeps answering while a page of advice appears. Only a chart
    on screen is built; a hidden one waits until it is shown (a closed page, or a card on its way
    out, never gets a chart built into it while Qt deletes it). Reading ``plots``, ``curves`` or
    ``thresholds`` builds it at once."""

    def __init__(self, series: tuple[EvidenceSeries, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evidence-plot")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self._series = series
        self._built = False
        self._discarded = False
        self._plots: list[pg.PlotWidget] = []
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._thresholds: dict[str, pg.InfiniteLine] = {}
        #: Each plot with the labels of the series drawn in it.
        self._groups: list[tuple[pg.PlotWidget, list[str]]] = []
        units = len(by_unit(_drawable(series)))
        # Hold the room the plots will take, so the card does not jump when they arrive.
        self.setMinimumHeight(units * PLOT_HEIGHT + max(0, units - 1) * 2 if units else 60)
        _QUEUE.add(self)

    #: One plot per unit drawn; the curves and threshold lines by series label (for tests).
    @property
    def plots(self) -> list[pg.PlotWidget]:
        self.ensure_built()
        return self._plots

    @property
    def curves(self) -> dict[str, pg.PlotDataItem]:
        self.ensure_built()
        return self._curves

    @property
    def thresholds(self) -> dict[str, pg.InfiniteLine]:
        self.ensure_built()
        return self._thresholds

    @property
    def built(self) -> bool:
        return self._built

    @property
    def waiting(self) -> bool:
        """Queued for a lazy build: not built, not discarded, still alive."""
        return not (self._built or self._discarded) and shiboken6.isValid(self)

    def ensure_built(self) -> None:
        if self._built or self._discarded:
            return
        self._built = True
        self._build(self._series)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.waiting:
            _QUEUE.add(self)

    def discard(self) -> None:
        """Never build this chart: its card is going away (``deleteLater`` runs after the queue
        may have had its turn, and a chart built into a widget being deleted crashes pyqtgraph)."""
        self._discarded = True
        _QUEUE.forget(self)

    def _build(self, series: tuple[EvidenceSeries, ...]) -> None:
        layout = self.layout()
        if layout is None or not shiboken6.isValid(layout):
            return  # the widget is being torn down
        drawable = _drawable(series)
        if not drawable:
            empty = QLabel("No series to draw for this recommendation.")
            empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
            empty.setStyleSheet("color: palette(placeholder-text);")
            empty.setMinimumHeight(60)
            layout.addWidget(empty)
            return
        colour_index = 0
        for unit, group in by_unit(tuple(drawable)):
            plot = self._plot(unit)
            plot.addLegend(offset=(-4, 4), labelTextSize="8pt", verSpacing=-6)
            for s in group:
                colour = colour_for(colour_index)
                colour_index += 1
                self._draw(plot, s, colour)
            y_range = _y_range(group)
            if y_range is not None:
                plot.setYRange(*y_range, padding=0)
            if self._plots:
                plot.setXLink(self._plots[0])
            self._plots.append(plot)
            self._groups.append((plot, [s.label for s in group]))
            layout.addWidget(plot)
        # Only the lowest plot shows the time axis.
        for plot in self._plots[:-1]:
            plot.getPlotItem().hideAxis("bottom")

    def update_series(self, series: tuple[EvidenceSeries, ...]) -> None:
        """New values for the series already drawn (same labels and units): no new plots."""
        if not self._built:
            self._series = series
            return
        by_label = {s.label: s for s in series}
        for plot, labels in self._groups:
            group = [by_label[label] for label in labels if label in by_label]
            for s in group:
                self._curves[s.label].setData(
                    np.asarray(s.ts, dtype=float), np.asarray(s.values, dtype=float)
                )
                line = self._thresholds.get(s.label)
                if line is not None and s.threshold is not None:
                    line.setValue(s.threshold)
                    line.label.setFormat(_threshold_text(s))
            y_range = _y_range(group)
            if y_range is not None:
                plot.setYRange(*y_range, padding=0)

    def _plot(self, unit: str) -> pg.PlotWidget:
        plot = _Plot(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setFixedHeight(PLOT_HEIGHT)
        plot.setMinimumWidth(300)
        item = plot.getPlotItem()
        item.setDownsampling(mode="peak")
        item.setClipToView(True)
        item.showGrid(x=True, y=True, alpha=0.15)
        left = item.getAxis("left")
        left.enableAutoSIPrefix(False)
        left.setWidth(46)
        item.setLabel("left", unit)
        item.setContentsMargins(0, 2, 6, 0)
        return plot

    def _draw(self, plot: pg.PlotWidget, s: EvidenceSeries, colour: str) -> None:
        ts = np.asarray(s.ts, dtype=float)
        values = np.asarray(s.values, dtype=float)
        curve = plot.plot(ts, values, pen=pg.mkPen(colour, width=1.5), name=s.label)
        curve.setToolTip(f"{s.label} ({s.unit})")
        self._curves[s.label] = curve
        if s.threshold is not None:
            line = pg.InfiniteLine(
                pos=s.threshold,
                angle=0,
                pen=pg.mkPen(THRESHOLD_COLOUR, width=1.2, style=Qt.PenStyle.DashLine),
                label=_threshold_text(s),
                # Under the line, at its left end: inside the view whatever the data do.
                labelOpts={
                    "position": 0.02,
                    "color": THRESHOLD_COLOUR,
                    "anchors": [(0, 0), (0, 0)],
                },
            )
            plot.addItem(line)
            self._thresholds[s.label] = line


def _y_range(group: list[EvidenceSeries]) -> tuple[float, float] | None:
    """From 0 (or below, for negative data) to a little above the data and thresholds, so that
    a threshold stays in view even when the data stay far from it."""
    points = [v for s in group for v in s.values if np.isfinite(v)]
    points += [s.threshold for s in group if s.threshold is not None]
    if not points:
        return None
    lo, hi = min(points), max(points)
    pad = (hi - lo) * 0.12 or max(1.0, abs(hi) * 0.1)
    return (min(0.0, lo - pad) if lo < 0 else 0.0), hi + pad


def _threshold_text(s: EvidenceSeries) -> str:
    return f"threshold {format_number(s.threshold or 0.0)} {s.unit}"


def _drawable(series: tuple[EvidenceSeries, ...]) -> tuple[EvidenceSeries, ...]:
    return tuple(s for s in series if len(s.ts) and len(s.ts) == len(s.values))


class _BuildQueue:
    """Charts waiting to be built, oldest first; one is built per pass of the event loop.

    Entries are dropped when their chart is built, discarded or deleted, so nothing outlives the
    widgets it was queued for (a test, or a page closed before its charts were drawn)."""

    def __init__(self) -> None:
        self._charts: list[EvidencePlot] = []
        self._scheduled = False

    def add(self, chart: EvidencePlot) -> None:
        if not any(c is chart for c in self._charts):
            self._charts.append(chart)
        self._schedule()

    def forget(self, chart: EvidencePlot) -> None:
        self._charts = [c for c in self._charts if c is not chart]

    def waiting(self) -> list[EvidencePlot]:
        """The charts still to be built (dead and discarded entries are dropped)."""
        self._charts = [c for c in self._charts if c.waiting]
        return list(self._charts)

    def clear(self) -> None:
        self._charts.clear()

    def _schedule(self) -> None:
        if not self._scheduled and self._charts:
            self._scheduled = True
            QTimer.singleShot(0, self._build_next)

    def _build_next(self) -> None:
        self._scheduled = False
        while self._charts:
            chart = self._charts.pop(0)
            # A hidden chart leaves the queue; its showEvent puts it back.
            if chart.waiting and chart.isVisible():
                # Hold the window while building: a window that only reference cycles keep
                # (a closed page, a test's page) could otherwise be collected by a garbage
                # collection that the build's allocations trigger, deleting this chart's
                # widgets under it (pyqtgraph then crashed the process).
                window = chart.window()
                chart.ensure_built()
                del window
                break
        self._schedule()


_QUEUE = _BuildQueue()


def waiting_charts() -> list[EvidencePlot]:
    """The evidence charts queued for a lazy build and not built yet."""
    return _QUEUE.waiting()


def drop_queued_charts() -> None:
    """Forget every queued build (test teardown, after its widgets are gone)."""
    _QUEUE.clear()
