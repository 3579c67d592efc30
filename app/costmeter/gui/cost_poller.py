"""Prices today, this month and the projection from the store every few seconds, off the GUI thread.

One poller serves the Overview and the tray: both listen to ``summary_ready`` on the context's
signals, so the tray's figure is current whichever page is open.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer

from costmeter.gui.context import AppContext
from costmeter.service.reading import Store
from costmeter.service.summary import CostSummary, cost_summary

#: Cost figures come from the database; re-read them this often.
REFRESH_MS = 10_000
#: While there is no cost yet (the first seconds), price again this soon after new samples.
EARLY_RETRY_S = 1.5


class CostPoller(QObject):
    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._last_request = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        ctx.signals.config_changed.connect(lambda _c: self.refresh())
        ctx.signals.cost_refresh_requested.connect(self.refresh)
        ctx.signals.live_updated.connect(self._early)
        QTimer.singleShot(0, self.refresh)

    def refresh(self) -> None:
        self._last_request = time.monotonic()
        pricing = self.ctx.pricing()

        def job(store: Store) -> CostSummary:
            return cost_summary(store, pricing)

        self.ctx.reader.submit("cost-summary", job, self._done, self._failed)

    def _early(self) -> None:
        summary = self.ctx.summary
        empty = summary is None or summary.today.total.cost == 0
        if empty and time.monotonic() - self._last_request > EARLY_RETRY_S:
            self.refresh()

    def _done(self, summary: CostSummary) -> None:
        self.ctx.summary = summary
        self.ctx.signals.summary_ready.emit(summary)
        self.ctx.signals.cost_today.emit(summary.today.total.cost)

    def _failed(self, message: str) -> None:
        self.ctx.signals.summary_failed.emit(message)
