"""A small live plot: one curve per series, x in seconds before now, redrawn from ring buffers."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem, QWidget


class LivePlot(pg.PlotWidget):
    def __init__(
        self,
        title: str,
        unit: str,
        *,
        y_range: tuple[float, float] | None = None,
        window_s: float = 300.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent=parent)
        self.window_s = window_s
        self._title = title
        self._labels: dict[str, tuple[str, str]] = {}
        self.setTitle(title, size="10pt")
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        item = self.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setLabel("left", units=unit)
        item.setLabel("bottom", "seconds ago")
        # The grid is drawn by the axes across the whole view, so every curve update repainted
        # the axes' text; a cached pixmap makes that a blit (it is redrawn when the range moves).
        for name in ("left", "bottom"):
            item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        item.setDownsampling(mode="peak")
        item.setClipToView(True)
        self.setXRange(-window_s, 0, padding=0)
        if y_range is not None:
            self.setYRange(*y_range, padding=0.02)
        else:
            item.enableAutoRange(axis="y")
        self.setMinimumHeight(170)
        self._curves: dict[str, pg.PlotDataItem] = {}

    def set_series(
        self, key: str, label: str, colour: str, ts: np.ndarray, values: np.ndarray, now: float
    ) -> None:
        curve = self._curves.get(key)
        if curve is None:
            curve = self.plot([], [], pen=pg.mkPen(colour, width=2), connect="finite")
            self._curves[key] = curve
            self._labels[key] = (label, colour)
            self._retitle()
        x = ts - now
        keep = x >= -self.window_s - 5
        x, y = break_gaps(x[keep], values[keep])
        curve.setData(x, y)

    def _retitle(self) -> None:
        """The legend lives in the title: a legend box inside the plot would hide data."""
        keys = "&nbsp;&nbsp;".join(  # curves that share a label and colour share a key
            f'<span style="color:{colour}">&#9632;</span>&nbsp;{label}'
            for label, colour in dict.fromkeys(self._labels.values())
        )
        self.setTitle(f"<b>{self._title}</b>&nbsp;&nbsp;&nbsp;{keys}", size="9pt")

    def keys(self) -> list[str]:
        return list(self._curves)

    def set_title(self, title: str) -> None:
        """Rename the plot (the legend stays)."""
        if title != self._title:
            self._title = title
            self._retitle()

    def retain(self, keys: set[str]) -> None:
        """Drop the series whose key is not in ``keys`` (another host was chosen)."""
        gone = [k for k in self._curves if k not in keys]
        for key in gone:
            self.removeItem(self._curves.pop(key))
            self._labels.pop(key, None)
        if gone:
            self._retitle()

    def curve_data(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._curves[key].getData()
        return (np.asarray(x), np.asarray(y))


def break_gaps(
    x: np.ndarray, y: np.ndarray, *, min_gap_s: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN where samples are missing (the app was closed), so no line bridges the gap."""
    if len(x) < 2:
        return x, y
    steps = np.diff(x)
    typical = float(np.median(steps))
    gaps = np.nonzero(steps > max(min_gap_s, 3 * typical))[0] + 1
    if len(gaps) == 0:
        return x, y
    return np.insert(x, gaps, x[gaps - 1] + typical), np.insert(y, gaps, np.nan)
