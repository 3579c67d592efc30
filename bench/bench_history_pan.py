"""Panning the History page over 30 days of 1 Hz data for one GPU: frame times, offscreen.

Run: .venv/bin/python bench/bench_history_pan.py [--days 30] [--steps 20] [--db KEEP.db]
The data are written as bench_history.py does (bulk rows, then a rollup rebuild). At three zoom
levels the view is shifted by 5 % of its width per step, as a mouse drag would, and the event loop
runs until the debounced re-query has landed. Per step it times:

- pan frame: setXRange + processing events + a full repaint (``grab()``) of the plot;
- landing frame: the event-loop pass that delivered the new series or cost, + a repaint;
- drag frame: the pan frame during a continuous drag at 60 steps a second that pauses now and
  then, so re-queries run on the reader thread while frames are drawn;
- series and cost latency: from the shift until the new series (cost) is on screen; both include
  the 150 ms debounce, and the queries run on the reader thread, not in a frame.

The baseline is what the page avoids: every raw sample of the range in one PlotDataItem, left to
pyqtgraph's own clip-to-view and peak downsampling. Target: at most 30 ms per frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # measured offscreen, as in the tests
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from bench_history import T0, generate
from costmeter.config import Config
from costmeter.gui.context import AppContext, ContextSignals
from costmeter.gui.pages.history import HistoryPage
from costmeter.gui.reader import StoreReader
from costmeter.gui.theme import apply_theme
from costmeter.service.live import LiveState

ZOOMS = (("30 days", 30 * 86400.0), ("1 day", 86400.0), ("1 hour", 3600.0))


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def ms(values: list[float]) -> str:
    if not values:
        return "     —     "
    return f"{statistics.median(values):5.1f} /{p95(values):6.1f}"


def wait(app: QApplication, done: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > end:
            raise TimeoutError("the History page did not finish loading")
        app.processEvents()
        time.sleep(0.002)


def pan_page(
    app: QApplication, page: HistoryPage, mid: float, span: float, steps: int
) -> dict[str, list]:
    """Shift the view ``steps`` times by 5 % from around ``mid``; time frames and re-queries."""
    start = mid - span / 2
    page.show_range(start, start + span)
    wait(app, lambda: page.has_data() and not page.loading())
    out: dict[str, list] = {k: [] for k in ("pan", "land", "latency", "cost", "points", "res")}
    widget = page.plot.plot
    for _ in range(steps):
        start += span * 0.05
        t0 = time.perf_counter()
        page.plot.set_visible_range(start, start + span)
        app.processEvents()
        widget.grab()
        out["pan"].append((time.perf_counter() - t0) * 1000)
        series_at = cost_at = None
        shown, cost = page._shown_id, page.cost
        while series_at is None or page.loading():
            time.sleep(0.001)
            t = time.perf_counter()
            app.processEvents()
            if page._shown_id != shown or page.cost is not cost:  # delivered in this pass
                widget.grab()
                out["land"].append((time.perf_counter() - t) * 1000)
                if page._shown_id != shown and series_at is None:
                    series_at = time.perf_counter()
                if page.cost is not cost and cost_at is None:
                    cost_at = time.perf_counter()
                shown, cost = page._shown_id, page.cost
            if time.perf_counter() - t0 > 60:
                raise TimeoutError("the re-query did not land")
        out["latency"].append((series_at - t0) * 1000)
        if cost_at is not None:
            out["cost"].append((cost_at - t0) * 1000)
        out["points"].append(len(page.series or ()))
        out["res"].append(page.series.resolution if page.series else "?")
    return out


def drag_page(app: QApplication, page: HistoryPage, steps: int) -> list[float]:
    """A continuous drag: 0.5 % every 16 ms, pausing 200 ms every 20 steps so the view settles
    and re-queries run on the reader while the drag goes on (the reader competes for the GIL)."""
    start, end = page.plot.visible_range()
    span = end - start
    widget = page.plot.plot
    times = []
    for i in range(steps * 3):
        start -= span * 0.005
        t0 = time.perf_counter()
        page.plot.set_visible_range(start, start + span)
        app.processEvents()
        widget.grab()
        times.append((time.perf_counter() - t0) * 1000)
        pause = 0.2 if i % 20 == 19 else 0.016
        end_pause = time.perf_counter() + pause
        while time.perf_counter() < end_pause:
            app.processEvents()
            time.sleep(0.002)
    wait(app, lambda: not page.loading())
    return times


def pan_naive(app: QApplication, x: np.ndarray, y: np.ndarray, span: float, steps: int) -> list:
    """The baseline: all raw points in one item; pyqtgraph clips and downsamples each frame."""
    import pyqtgraph as pg

    plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
    plot.resize(830, 640)
    plot.getPlotItem().setDownsampling(auto=True, mode="peak")
    plot.getPlotItem().setClipToView(True)
    plot.plot(x, y, pen=pg.mkPen("#3b82f6", width=1.5))
    plot.show()
    start = float(x[0] + (x[-1] - x[0]) / 2 - span / 2)
    plot.setXRange(start, start + span, padding=0)
    app.processEvents()
    plot.grab()
    times = []
    for _ in range(steps):
        start += span * 0.05
        t0 = time.perf_counter()
        plot.setXRange(start, start + span, padding=0)
        app.processEvents()
        plot.grab()
        times.append((time.perf_counter() - t0) * 1000)
    plot.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--db", type=Path, help="reuse (or keep) the generated database here")
    ap.add_argument("--no-baseline", action="store_true", help="skip the all-raw-points plot")
    args = ap.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, Qt platform {os.environ.get('QT_QPA_PLATFORM', 'default')}"
    )
    tmp = tempfile.TemporaryDirectory()
    db = args.db or Path(tmp.name) / "pan.db"
    if not db.exists():
        t = time.perf_counter()
        generate(db, args.days, 1)
        print(
            f"generated {args.days:g} days x 1 GPU at 1 Hz = {int(args.days * 86400):,} raw rows"
            f" + rollups in {time.perf_counter() - t:.1f} s"
        )
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    apply_theme(app, "light")
    settings = QSettings(str(Path(tmp.name) / "s.ini"), QSettings.Format.IniFormat)
    ctx = AppContext(
        Config(), Path(tmp.name) / "c.toml", db, StoreReader(db), LiveState(), settings,
        ContextSignals(),
    )  # fmt: skip
    page = HistoryPage(ctx)
    page.resize(1110, 760)  # the page's share of the default 1280 x 820 window
    page.show()
    page.on_shown()
    wait(app, lambda: page.has_data() and not page.loading())
    page.controls.metric_box.setCurrentIndex(page.controls.metric_box.findData("power_w"))
    print(
        f"\nHistory page, {page.plot.plot.width()} x {page.plot.plot.height()} px plot, "
        f"{args.steps} pan steps of 5 % per zoom; milliseconds, median / p95"
    )
    print(f"{'view':8s} {'res':>4s} {'points':>6s} {'pan frame':>14s} {'landing frame':>14s}"
          f" {'series latency':>15s} {'cost latency':>15s} {'drag frame':>14s}")  # fmt: skip
    for label, span in ZOOMS:
        r = pan_page(app, page, T0 + args.days * 86400 / 2, span, args.steps)
        drag = drag_page(app, page, args.steps)
        print(
            f"{label:8s} {max(set(r['res']), key=r['res'].count):>4s}"
            f" {int(statistics.median(r['points'])):6d} {ms(r['pan']):>14s} {ms(r['land']):>14s}"
            f" {ms(r['latency']):>15s} {ms(r['cost']):>15s} {ms(drag):>14s}"
        )
    ctx.reader.stop()
    if not args.no_baseline:
        t = time.perf_counter()
        with sqlite3.connect(db) as conn:
            rows = np.array(
                conn.execute(
                    "SELECT ts, power_mw FROM device_samples WHERE device_id = 1 ORDER BY ts"
                ).fetchall(),
                dtype=float,
            )
        x, y = rows[:, 0] / 1000, rows[:, 1] / 1000
        print(f"\nbaseline: {len(x):,} raw points loaded in {time.perf_counter() - t:.1f} s")
        for label, span in ZOOMS[:2]:
            times = pan_naive(app, x, y, span, args.steps)
            print(f"{label:8s}  raw {len(x):,} points, pyqtgraph only: frame {ms(times)} ms")
    tmp.cleanup()
    print("\ntarget: at most 30 ms per frame")


if __name__ == "__main__":
    main()
