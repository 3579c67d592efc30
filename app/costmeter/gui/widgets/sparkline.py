"""A tiny live plot without axes, for the shape of the last minutes next to a current value."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

#: Seconds of history a sparkline shows once it has that much.
SPARK_WINDOW_S = 300.0
#: The shortest window: with less history the curve starts part-way across.
SPARK_MIN_WINDOW_S = 30.0


class Sparkline(pg.PlotWidget):
    """A tiny plot without axes: the shape of the last minutes, not a place to read values."""

    def __init__(self, colour: str, y_max: float | None, parent: QWidget | None = None) -> None:
        super().__init__(parent=parent, background=None)
        # Transparent, so the card's colour shows through in both themes.
        self.setStyleSheet("background: transparent;")
        self.viewport().setAutoFillBackground(False)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setFixedHeight(46)
        self.setMinimumWidth(120)
        item = self.getPlotItem()
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.setContentsMargins(0, 0, 0, 0)
        item.setDownsampling(mode="peak")
        item.setClipToView(True)
        #: Seconds the x axis spans now: it grows with the history, up to ``SPARK_WINDOW_S``,
        #: so that a freshly started app shows a curve rather than a sliver at the right edge.
        self.window_s = SPARK_MIN_WINDOW_S
        self.setXRange(-self.window_s, 0, padding=0)
        self.set_y_max(y_max)
        fill = pg.mkColor(colour)
        fill.setAlpha(50)
        self.curve = self.plot(
            [], [], pen=pg.mkPen(colour, width=1.5), connect="finite", fillLevel=0, brush=fill
        )

    def set_y_max(self, y_max: float | None) -> None:
        if y_max:
            self.setYRange(0, y_max, padding=0.05)
        else:
            self.getPlotItem().enableAutoRange(axis="y")

    def set_data(self, ts: np.ndarray, values: np.ndarray, now: float) -> None:
        x = ts - now
        keep = x >= -SPARK_WINDOW_S - 5
        span = float(-x[keep][0]) if keep.any() else 0.0
        window = min(SPARK_WINDOW_S, max(SPARK_MIN_WINDOW_S, span))
        if window != self.window_s:
            self.window_s = window
            self.setXRange(-window, 0, padding=0)
        # No value (NaN: unreadable, or the GPU was lost) leaves a gap: connect="finite".
        self.curve.setData(x[keep], values[keep])


def describe_window(seconds: float) -> str:
    """ "last 45 s", "last 5 min": what a sparkline's caption says it spans."""
    return f"last {seconds:.0f} s" if seconds < 90 else f"last {seconds / 60:.0f} min"
