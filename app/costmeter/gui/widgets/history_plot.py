"""The History page's chart: a date axis, the average as a line, the min–max range as a band.

Pan and zoom are the mouse's (x only; y follows the visible data). ``range_settled`` fires once the
view has stopped moving for ``SETTLE_MS``, so the page can re-query at the new resolution without
querying on every frame of a drag.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen, QResizeEvent
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from costmeter.gui.history_data import PlotArrays, envelope

#: Quiet time after the last pan or zoom step before the view counts as settled.
SETTLE_MS = 150
#: The narrowest and widest spans the mouse can zoom to, in seconds.
MIN_SPAN_S = 60.0
MAX_SPAN_S = 5 * 366 * 86400.0
#: The band's resolution in pixels. Qt fills a polygon span by span, so a band with a vertex per
#: pixel that zigzags (busy and idle hours alternating) costs tens of milliseconds a frame.
BAND_PX = 3
#: Qt's raster engine blends translucent lines and polygons many times slower than it paints
#: opaque ones (15 ms vs 0.7 ms for a grid on a 2-vCPU VM), so the grid and the band use opaque
#: colours mixed with the background instead of alpha.
GRID_MIX = 0.12
BAND_MIX = 0.22


class HistoryPlot(QWidget):
    #: The visible x range (start, end) after panning or zooming stopped.
    range_settled = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setObjectName("history-plot")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True)
        item.setDownsampling(auto=True, mode="peak")
        item.setClipToView(True)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("left").setWidth(64)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setStyle(tickAlpha=255, maxTickLevel=1)
            axis.setZValue(-200)  # the grid under the data, not across the line
        self.view = item.getViewBox()
        self.view.setMouseEnabled(x=True, y=False)
        self.view.enableAutoRange(axis="y")
        self.view.setAutoVisible(y=True)
        self.view.setLimits(minXRange=MIN_SPAN_S, maxXRange=MAX_SPAN_S)
        self.lo = self.plot.plot([], [], connect="finite")
        self.hi = self.plot.plot([], [], connect="finite")
        for edge in (self.lo, self.hi):
            edge.setDownsampling(auto=False)  # already one point per pixel (see ``envelope``)
        self.band = pg.FillBetweenItem(self.lo, self.hi)
        item.addItem(self.band)
        self.avg = self.plot.plot([], [], connect="finite")
        self.hint = QLabel(self.plot)
        self.hint.setObjectName("history-hint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hint.setStyleSheet("color: palette(placeholder-text); font-size: 14px;")
        self.hint.hide()
        self.message = QLabel()
        self.message.setObjectName("history-message")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: palette(placeholder-text); font-size: 15px;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.plot)
        self.stack.addWidget(self.message)
        self.readout = QLabel(" ")
        self.readout.setStyleSheet("color: palette(placeholder-text);")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.readout)
        self._arrays: PlotArrays | None = None
        self._unit = ""
        self._colour = "#3b82f6"
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._emit_settled)
        self.view.sigXRangeChanged.connect(lambda *_: self._settle.start())
        self.plot.scene().sigMouseMoved.connect(self._hover)
        self.apply_theme()

    # -- what is drawn -----------------------------------------------------------------------
    def set_colour(self, colour: str) -> None:
        self._colour = colour
        background = pg.mkColor(pg.getConfigOption("background"))
        # A 1-pixel cosmetic pen: wider lines go through Qt's slow stroker.
        self.avg.setPen(pg.mkPen(colour, width=1))
        # The band's edges are not stroked (NoPen) but still give FillBetweenItem its outline.
        for edge in (self.lo, self.hi):
            edge.setPen(QPen(Qt.PenStyle.NoPen))
        self.band.setBrush(pg.mkBrush(_mix(QColor(colour), background, BAND_MIX)))

    def set_axis_label(self, text: str, unit: str) -> None:
        self._unit = unit
        self.plot.setLabel("left", f"{text} ({unit})" if unit else text)

    def set_y_range(self, fixed: tuple[float, float] | None) -> None:
        """Pin the y axis to ``fixed``, or let it follow the visible data (None)."""
        if fixed is None:
            self.view.enableAutoRange(axis="y")
        else:
            self.view.disableAutoRange(axis="y")
            self.view.setYRange(*fixed, padding=0.02)

    def set_data(self, arrays: PlotArrays, band: bool) -> None:
        """Draw ``arrays``; the band only for rollups (raw samples have min = avg = max)."""
        self._arrays = arrays
        self.avg.setData(arrays.x, arrays.avg, connect="finite")
        x = lo = hi = np.empty(0)
        if band:
            start, end = self.visible_range()
            step = (end - start) / self._pixels() * BAND_PX
            x, lo, hi = envelope(arrays.x, arrays.lo, arrays.hi, step)
        self.lo.setData(x, lo, connect="finite")
        self.hi.setData(x, hi, connect="finite")
        self.band.setVisible(band)
        self.stack.setCurrentWidget(self.plot)

    def _pixels(self) -> float:
        """The plot's width in pixels (a sensible guess before it is laid out)."""
        width = self.view.width()
        return float(width) if width > 50 else 800.0

    def clear(self) -> None:
        self._arrays = None
        for curve in (self.avg, self.lo, self.hi):
            curve.setData([], [])

    def set_hint(self, text: str) -> None:
        """Text over the chart that keeps it usable (nothing in this range: pan elsewhere)."""
        self.hint.setText(text)
        self.hint.setVisible(bool(text))
        self._place_hint()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_hint()

    def _place_hint(self) -> None:
        rect = self.plot.rect()
        self.hint.setGeometry(rect.adjusted(80, rect.height() // 3, -20, -rect.height() // 3))

    def show_message(self, text: str) -> None:
        """Replace the chart by ``text`` (no history yet, nothing in range, a failed read)."""
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def showing_message(self) -> bool:
        return self.stack.currentWidget() is self.message

    def drawn(self) -> tuple[np.ndarray, np.ndarray]:
        """The average line's data as given (before pyqtgraph's clipping and downsampling)."""
        if self._arrays is None:
            return np.empty(0), np.empty(0)
        return self._arrays.x, self._arrays.avg

    # -- the visible range -------------------------------------------------------------------
    def visible_range(self) -> tuple[float, float]:
        (start, end), _ = self.view.viewRange()
        return float(start), float(end)

    def set_visible_range(self, start: float, end: float) -> None:
        self.view.setXRange(start, end, padding=0)

    def settle_now(self) -> None:
        """Emit ``range_settled`` without waiting (after a programmatic range change)."""
        self._settle.stop()
        self._emit_settled()

    def _emit_settled(self) -> None:
        self.range_settled.emit(*self.visible_range())

    # -- looks and the value under the mouse -------------------------------------------------
    def apply_theme(self) -> None:
        """Take pyqtgraph's current colours (``theme.apply_theme`` sets them)."""
        fg = pg.mkColor(pg.getConfigOption("foreground"))
        bg = pg.mkColor(pg.getConfigOption("background"))
        self.plot.setBackground(bg)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setPen(fg)
            axis.setTextPen(fg)
            axis.setTickPen(_mix(fg, bg, GRID_MIX))
        self.set_colour(self._colour)

    def _hover(self, pos: QPointF) -> None:
        arrays = self._arrays
        if arrays is None or len(arrays.x) == 0 or not self.view.sceneBoundingRect().contains(pos):
            self.readout.setText(" ")
            return
        x = self.view.mapSceneToView(pos).x()
        i = int(np.clip(np.searchsorted(arrays.x, x), 1, len(arrays.x) - 1))
        if abs(arrays.x[i - 1] - x) < abs(arrays.x[i] - x):
            i -= 1
        avg = arrays.avg[i]
        when = time.strftime("%a %d %b %H:%M:%S", time.localtime(float(arrays.x[i])))
        if np.isnan(avg):
            self.readout.setText(f"{when}: no data")
            return
        unit = f" {self._unit}" if self._unit else ""
        text = f"{when}: {_num(avg)}{unit}"
        if arrays.hi[i] != arrays.lo[i]:
            text += f" (min {_num(arrays.lo[i])}, max {_num(arrays.hi[i])})"
        self.readout.setText(text)


def _mix(colour: QColor, background: QColor, amount: float) -> QColor:
    """The opaque colour of ``colour`` at ``amount`` opacity over ``background``."""

    def part(a: float, b: float) -> float:
        return a * amount + b * (1 - amount)

    return QColor.fromRgbF(
        part(colour.redF(), background.redF()),
        part(colour.greenF(), background.greenF()),
        part(colour.blueF(), background.blueF()),
    )


def _num(v: float) -> str:
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}"
