"""Prices today, this month and the projection from the store every few seconds, off the GUI thread.

One poller serves the Overview and the tray: both listen to ``summary_ready`` on the context's
signals, so the tray's figure is current whichever page is open. With ``[[budgets]]`` in the
config it also prices each owner's budget (``budgets_ready``), less often: that is a chargeback.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer

from costmeter.config import Config
from costmeter.gui.context import AppContext
from costmeter.service.budgets import BudgetStatus, PastSpending, budget_status
from costmeter.service.reading import Store
from costmeter.service.summary import CostSummary, cost_summary

#: Cost figures come from the database; re-read them this often.
REFRESH_MS = 10_000
#: While there is no cost yet (the first seconds), price again this soon after new samples.
EARLY_RETRY_S = 1.5
#: Owner budgets (a chargeback per period and dimension) are priced this often.
BUDGETS_REFRESH_MS = 60_000


class CostPoller(QObject):
    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._last_request = 0.0
        #: The owners' spending before today, kept between refreshes (used on the reader
        #: thread only, one job at a time).
        self._past = PastSpending()
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        ctx.signals.config_changed.connect(lambda _c: self.refresh())
        ctx.signals.cost_refresh_requested.connect(self.refresh)
        ctx.signals.live_updated.connect(self._early)
        QTimer.singleShot(0, self.refresh)
        self._budgets_timer = QTimer(self)
        self._budgets_timer.setInterval(BUDGETS_REFRESH_MS)
        self._budgets_timer.timeout.connect(self.refresh_budgets)
        self._budgets_timer.start()
        ctx.signals.config_changed.connect(lambda _c: self.refresh_budgets())
        QTimer.singleShot(0, self.refresh_budgets)

    def refresh(self) -> None:
        self._last_request = time.monotonic()
        pricing = self.ctx.pricing()

        def job(store: Store) -> CostSummary:
            return cost_summary(store, pricing)

        self.ctx.reader.submit("cost-summary", job, self._done, self._failed)

    def refresh_budgets(self) -> None:
        """Price every ``[[budgets]]`` owner on the reader thread (nothing without budgets)."""
        config: Config = self.ctx.config
        if not config.budgets:
            return
        past = self._past

        def job(store: Store) -> tuple[BudgetStatus, ...]:
            return budget_status(store, config, past=past)

        self.ctx.reader.submit("owner-budgets", job, self._budgets_done, self._failed)

    def _budgets_done(self, statuses: tuple[BudgetStatus, ...]) -> None:
        self.ctx.signals.budgets_ready.emit(statuses)

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
