"""What every page shares: configuration, the live state, the database reader, preferences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSettings, Signal

from costmeter.config import Config
from costmeter.cost.pricing import Pricing
from costmeter.gui.reader import StoreReader
from costmeter.service.live import LiveState
from costmeter.service.summary import CostSummary

if TYPE_CHECKING:
    from costmeter.gui.bridge import MonitorBridge
    from costmeter.gui.run_manager import RunManager


class ContextSignals(QObject):
    #: The configuration was saved from Settings (the new ``Config``).
    config_changed = Signal(object)
    #: The theme preference changed ("light" or "dark").
    theme_changed = Signal(str)
    #: New live data arrived (emitted at most a few times per second by the main window).
    live_updated = Signal()
    #: Ask the cost poller to price again now.
    cost_refresh_requested = Signal()
    #: Today, this month and the projection were priced (a ``CostSummary``).
    summary_ready = Signal(object)
    #: Pricing from the database failed (a sentence for the user).
    summary_failed = Signal(str)
    #: Today's cost was priced (the amount, in the configured currency).
    cost_today = Signal(float)
    #: The ``[[budgets]]`` owners were priced (a tuple of ``service.budgets.BudgetStatus``).
    budgets_ready = Signal(object)
    #: The host selector changed: the host name to show, or None for every host.
    host_filter_changed = Signal(object)
    #: Advice was worked out (a ``costmeter.gui.advice_poller.AdviceSnapshot``).
    advice_ready = Signal(object)


@dataclass
class AppContext:
    config: Config
    config_path: Path
    db_path: Path
    reader: StoreReader
    live: LiveState
    settings: QSettings
    signals: ContextSignals
    simulate: str | None = None
    #: The latest priced summary (set by the cost poller).
    summary: CostSummary | None = None
    #: Runs launched from this window (made by the main window, or by the Runs page alone).
    runs: RunManager | None = None

    def pricing(self) -> Pricing:
        return self.config.pricing()

    @property
    def currency(self) -> str:
        return self.pricing().currency

    #: The host the pages show (a name as ticks carry it), or None for every host.
    host_filter: str | None = None
    #: The sampling worker (set by the main window): the Hosts page asks it for the
    #: collector's in-memory statuses.
    monitor_bridge: MonitorBridge | None = None

    def set_host_filter(self, host: str | None) -> None:
        if host != self.host_filter:
            self.host_filter = host
            self.signals.host_filter_changed.emit(host)

    def shows_host(self, host: str) -> bool:
        """Whether data of ``host`` is shown under the current host filter."""
        return self.host_filter is None or self.host_filter == host

    def set_config(self, config: Config) -> None:
        self.config = config
        self.signals.config_changed.emit(config)
