"""The tray icon: money today in its tooltip and menu, notifications from the alert watchers."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu, QSystemTrayIcon

from costmeter.cost.ledger import format_money
from costmeter.gui.context import AppContext
from costmeter.gui.icons import app_icon
from costmeter.service.alerts import Alert, BudgetWatch, IdleAllocatedWatch, OwnerBudgetWatch
from costmeter.service.budgets import BudgetStatus


class Tray(QSystemTrayIcon):
    def __init__(self, ctx: AppContext, window: QMainWindow) -> None:
        super().__init__(app_icon(), window)
        self.ctx = ctx
        self.window = window
        self.idle_watch = IdleAllocatedWatch(ctx.config.alerts.idle_allocated_minutes * 60)
        self.budget_watch = BudgetWatch(ctx.config.alerts.daily_budget)
        self.owner_budget_watch = OwnerBudgetWatch()
        #: Every alert raised, newest last (shown in the window when there is no tray).
        self.alerts: list[Alert] = []
        menu = QMenu()
        self.today_action = QAction("Today: —", menu)
        self.today_action.setEnabled(False)
        menu.addAction(self.today_action)
        menu.addSeparator()
        show = QAction("Show Costmeter", menu)
        show.triggered.connect(self._show_window)
        menu.addAction(show)
        quit_action = QAction("Quit", menu)
        quit_action.triggered.connect(window.close)
        menu.addAction(quit_action)
        self.setContextMenu(menu)
        self._menu = menu
        self.activated.connect(lambda _reason: self._show_window())
        self.setToolTip("Costmeter")
        ctx.signals.live_updated.connect(self._check_idle)
        ctx.signals.config_changed.connect(self._config_changed)
        ctx.signals.cost_today.connect(self.set_cost_today)
        ctx.signals.budgets_ready.connect(self.check_owner_budgets)
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.show()

    def _show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _config_changed(self, _config: object) -> None:
        self.idle_watch.after_s = self.ctx.config.alerts.idle_allocated_minutes * 60
        self.budget_watch.budget = self.ctx.config.alerts.daily_budget

    def set_cost_today(self, cost: float) -> None:
        """Today's cost, as the Overview priced it (``cost_today`` signal)."""
        money = format_money(cost, self.ctx.currency)
        self.today_action.setText(f"Today: {money}")
        self.setToolTip(f"Costmeter — {money} today")
        budget = self.budget_watch.budget
        if budget is not None:
            alert = self.budget_watch.update(
                datetime.now().strftime("%Y-%m-%d"),
                cost,
                money,
                format_money(budget, self.ctx.currency),
            )
            if alert is not None:
                self.notify(alert)

    def check_owner_budgets(self, statuses: tuple[BudgetStatus, ...]) -> None:
        """Owners past their daily or monthly budget (``budgets_ready`` signal): once per
        owner per day (month)."""
        for alert in self.owner_budget_watch.update(statuses, format_money):
            self.notify(alert)

    def _check_idle(self) -> None:
        tick = self.ctx.live.latest
        if tick is None:
            return
        names = {u: d.name for u, d in self.ctx.live.devices.items()}
        for alert in self.idle_watch.update(tick.ts, tick.devices, names):
            self.notify(alert)

    def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)
        if self.isVisible() and self.supportsMessages():
            self.showMessage(alert.title, alert.message, QSystemTrayIcon.MessageIcon.Warning, 15000)
        banner = getattr(self.window, "banner", None)
        if banner is not None:
            banner.show_message(f"{alert.title}: {alert.message}", "warning")
