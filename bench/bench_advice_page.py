"""How long the Advice page holds the GUI thread when its cards first appear.

Run: .venv/bin/costmeter simulate --hours 2 --interval 10 --db /tmp/adv.db \
         --simulate a100:train,h100:idle,t4:light,rtx4090:input-bound,a100:memory-bound
     QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_advice_page.py /tmp/adv.db

Prints the lazy build (cards first, then one evidence chart per pass of the event loop: the
longest pass is the longest the window cannot answer) beside the eager baseline measured in the
same run (every chart built at once, as before).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from costmeter.config import Config
from costmeter.gui import advice_poller
from costmeter.gui.context import AppContext, ContextSignals
from costmeter.gui.pages.advice import AdvicePage
from costmeter.gui.reader import StoreReader
from costmeter.gui.theme import apply_theme
from costmeter.gui.widgets import evidence_plot
from costmeter.service.live import LiveState
from costmeter.store import Store


def main() -> int:
    app = QApplication([])
    apply_theme(app, "light")
    db = Path(sys.argv[1])
    snap = advice_poller.compute(Store.open(db), Config(), "24h")
    settings = QSettings(str(db.with_suffix(".bench.ini")), QSettings.Format.IniFormat)
    ctx = AppContext(
        config=Config(),
        config_path=db.with_suffix(".toml"),
        db_path=db,
        reader=StoreReader(db),
        live=LiveState(),
        settings=settings,
        signals=ContextSignals(),
    )
    lazy_first, lazy_longest, eager = [], [], []
    for _ in range(5):
        page = AdvicePage(ctx)
        page.resize(1280, 800)
        page.show()
        app.processEvents()
        t = time.perf_counter()
        page._show(snap)
        lazy_first.append(time.perf_counter() - t)
        passes = []
        while evidence_plot.waiting_charts():
            t = time.perf_counter()
            app.processEvents()
            passes.append(time.perf_counter() - t)
        lazy_longest.append(max(passes, default=0.0))
        page.close()
        page = AdvicePage(ctx)
        page.resize(1280, 800)
        page.show()
        app.processEvents()
        t = time.perf_counter()
        page._show(snap)
        for chart in evidence_plot.waiting_charts():
            chart.ensure_built()
        app.processEvents()
        eager.append(time.perf_counter() - t)
        page.close()
    cards = len(snap.result.recommendations)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms"

    print(f"{cards} cards, medians of 5:")
    print(f"  lazy: cards {ms(lazy_first)}, then the longest pass {ms(lazy_longest)}")
    print(f"  eager baseline (all charts at once): {ms(eager)} in one block")
    ratio = statistics.median(lazy_longest) / statistics.median(eager)
    print(f"  longest stall, lazy / eager: {ratio:.2f}")
    ctx.reader.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
