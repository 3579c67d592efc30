"""The Who pays chart: cost per hour (or day) as stacked bars, one colour per owner.

Idle sits at the bottom in grey, then the owners that cost most, then "others". One
``BarGraphItem`` per layer, its ``y0`` the top of the layers under it. The legend is a line of
text under the plot, so it never covers the bars however many owners there are.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from costmeter.gui.theme import SERIES_COLOURS
from costmeter.gui.who_pays_data import IDLE, OTHERS, StackedSeries

IDLE_COLOUR = "#9ca3af"
OTHERS_COLOUR = "#64748b"
#: Of a bucket's width, the part a bar fills.
BAR_FILL = 0.85


def layer_colour(label: str, index: int) -> str:
    """Grey for idle, slate for others, else the series colours in order (slate skipped)."""
    if label == IDLE:
        return IDLE_COLOUR
    if label == OTHERS:
        return OTHERS_COLOUR
    palette = [c for c in SERIES_COLOURS if c != OTHERS_COLOUR]
    return palette[index % len(palette)]


class OwnerChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setObjectName("who-pays-chart")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        item = self.plot.getPlotItem()
        item.showGrid(x=False, y=True, alpha=0.25)
        left = self.plot.getAxis("left")
        left.enableAutoSIPrefix(False)
        left.setWidth(64)
        #: The bar items drawn, one per layer (tests count them).
        self.bars: list[pg.BarGraphItem] = []
        self.labels: list[str] = []
        self.message = QLabel()
        self.message.setObjectName("who-pays-chart-message")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: palette(placeholder-text); font-size: 14px;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.plot)
        self.stack.addWidget(self.message)
        self.legend = QLabel("")
        self.legend.setObjectName("who-pays-legend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.legend)

    def clear(self) -> None:
        for bar in self.bars:
            self.plot.removeItem(bar)
        self.legend.setText("")
        self.bars, self.labels = [], []

    def show_message(self, text: str) -> None:
        self.clear()
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def set_series(self, series: StackedSeries, bucket_s: float, currency: str) -> None:
        self.clear()
        self.stack.setCurrentWidget(self.plot)
        per = "hour" if bucket_s <= 3600 else "day"
        self.plot.setLabel("left", f"{currency} per {per}")
        if not series.buckets:
            return
        x = np.asarray(series.buckets, dtype=float) + bucket_s / 2.0
        bottom = np.zeros(len(x))
        owners = 0
        keys: list[str] = []
        for label, costs in series.layers:
            height = np.asarray(costs, dtype=float)
            colour = layer_colour(label, owners)
            if label not in (IDLE, OTHERS):
                owners += 1
            bar = pg.BarGraphItem(
                x=x,
                height=height,
                y0=bottom.copy(),
                width=bucket_s * BAR_FILL,
                brush=pg.mkBrush(colour),
                pen=pg.mkPen(None),
            )
            self.plot.addItem(bar)
            keys.append(
                f'<span style="color:{colour}; font-size:14px;">&#9632;</span>&nbsp;'
                f"{html.escape(label)}"
            )
            self.bars.append(bar)
            self.labels.append(label)
            bottom += height
        # Top layer first, as the eye reads the stack from the top.
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(reversed(keys)))
        top = float(bottom.max()) if len(bottom) else 0.0
        self.plot.setXRange(float(series.buckets[0]), float(series.buckets[-1]) + bucket_s, 0.01)
        self.plot.setYRange(0.0, top * 1.05 if top > 0 else 1.0, padding=0)

    def apply_theme(self) -> None:
        fg = pg.mkColor(pg.getConfigOption("foreground"))
        self.plot.setBackground(pg.mkColor(pg.getConfigOption("background")))
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setPen(fg)
            axis.setTextPen(fg)
