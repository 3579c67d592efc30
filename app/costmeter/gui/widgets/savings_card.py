"""The Overview's "Savings available" tile: the Advice page's monthly total, with a link to it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from costmeter.gui.advice_poller import AdvicePoller, AdviceSnapshot
from costmeter.gui.context import AppContext
from costmeter.gui.tasks import alive
from costmeter.gui.widgets.advice_card import format_savings_money
from costmeter.gui.widgets.card import Card

LINK = '<a href="advice">See Advice</a>'


class SavingsCard(Card):
    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__("Savings available", parent)
        self.setObjectName("card")
        self.setToolTip("What the Advice page's recommendations could save a month.")
        self.ctx = ctx
        self.poller = AdvicePoller.of(ctx)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.detail.linkActivated.connect(self.open_advice)
        self.detail.setText(f"working it out… · {LINK}")
        self.snapshot: AdviceSnapshot | None = None
        ctx.signals.advice_ready.connect(self.show_snapshot)
        ctx.signals.host_filter_changed.connect(self._host_changed)
        self.poller.failed.connect(self._failed)
        if self.poller.latest is not None:
            self.show_snapshot(self.poller.latest)

    def show_snapshot(self, snapshot: AdviceSnapshot) -> None:
        if not alive(self):
            return
        self.snapshot = snapshot
        result = snapshot.result
        recs = [r for r in result.recommendations if self.ctx.shows_host(r.target.host)]
        total = sum(r.savings.money_per_month for r in recs if r.savings)
        self.value.setText(f"{format_savings_money(total, result.currency)}/mo")
        count = len(recs)
        where = f" on {self.ctx.host_filter}" if self.ctx.host_filter is not None else ""
        if count:
            noun = "recommendation" if count == 1 else "recommendations"
            detail = f"{count} {noun}{where} over the last {snapshot.window}"
        elif snapshot.has_data:
            detail = f"nothing to change{where} over the last {snapshot.window}"
        else:
            detail = "no history to advise on yet"
        self.detail.setText(f"{detail} · {LINK}")

    def _host_changed(self, _host: object) -> None:
        if self.snapshot is not None:
            self.show_snapshot(self.snapshot)

    def _failed(self, message: str) -> None:
        if alive(self):
            self.value.setText("—")
            self.detail.setText(f"advice unavailable · {LINK}")
            self.detail.setToolTip(message)

    def open_advice(self, _link: str = "advice") -> None:
        show = getattr(self.window(), "show_page", None)
        if callable(show):
            show("advice")
