"""The Advice page: what to change to pay less, with evidence and savings.

The rules run on the store reader's thread (``AdvicePoller``: when the page is shown, every few
minutes, when the configuration changes, after a dismiss or snooze). Dismiss and snooze hide the
card at once and write through the reader; a write that fails shows the card again and says why.
"Apply" is handled by ``AdviceActions`` (relaunch a run with the change, open the compression
dialog, open Settings).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from costmeter.advice import engine
from costmeter.advice.model import Recommendation
from costmeter.gui.advice_actions import AdviceActions
from costmeter.gui.advice_poller import WINDOWS, AdvicePoller, AdviceSnapshot
from costmeter.gui.context import AppContext
from costmeter.gui.pages.base import Page
from costmeter.gui.tasks import alive
from costmeter.gui.who_pays_data import OwnerFootprint
from costmeter.gui.widgets.advice_card import AdviceCard, format_savings_money
from costmeter.gui.widgets.banner import Banner
from costmeter.gui.widgets.owner_filter_bar import OwnerFilterBar
from costmeter.service import advice as advice_service
from costmeter.service.reading import Store

SHOW_DISMISSED_SETTING = "advice/show_dismissed"
#: What each rule looks for, for the "nothing needs changing" sentence.
RULE_WORDS = {
    "idle-gpu": "idle GPUs",
    "kept-allocation": "GPUs kept after their work ended",
    "bursty-load": "GPUs working in bursts",
    "underused-gpu": "under-used GPUs",
    "overallocated": "runs holding GPUs they do not use",
    "memory-headroom": "unused GPU memory",
    "memory-pressure": "memory pressure",
    "input-bound": "input-bound runs",
    "power-cap": "power limits",
    "pack-sweep": "sweeps to pack",
    "budget-forecast": "budgets",
}
WINDOW_WORDS = {"1h": "hour", "24h": "24 hours", "7d": "7 days"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def checked_sentence(snapshot: AdviceSnapshot) -> str:
    """What the rules looked at: "Checked the last 24 hours of 4 GPUs on 1 host for …"."""
    words = [RULE_WORDS.get(rule, rule) for rule in engine.RULES]
    what = ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)
    return (
        f"Checked the last {WINDOW_WORDS.get(snapshot.window, snapshot.window)} of "
        f"{_plural(snapshot.devices, 'GPU')} on {_plural(snapshot.hosts, 'host')} for {what}."
    )


class AdvicePage(Page):
    title = "Advice"
    key = "advice"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.poller = AdvicePoller.of(ctx)
        self.advice_actions = AdviceActions(ctx, self)
        self.snapshot: AdviceSnapshot | None = None
        #: Cards by recommendation key (active and, when shown, hidden ones).
        self.cards: dict[str, AdviceCard] = {}
        #: Keys hidden here before the database says so (a dismiss or snooze being written).
        self.pending: set[str] = set()
        self._banner_level = ""
        #: Only findings about this owner (chosen on the Who pays page), or None for all.
        self.owner_key: dict[str, str | None] | None = None
        self.owner: OwnerFootprint | None = None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(8)
        bar = QHBoxLayout()
        bar.setSpacing(10)
        self.total = QLabel("…")
        big = QFont(self.total.font())
        big.setPointSizeF(big.pointSizeF() * 1.6)
        big.setBold(True)
        self.total.setFont(big)
        self.total.setObjectName("advice-total")
        bar.addWidget(self.total)
        self.total_caption = QLabel("")
        self.total_caption.setWordWrap(True)
        self.total_caption.setStyleSheet("color: palette(placeholder-text);")
        bar.addWidget(self.total_caption, 1)
        bar.addWidget(QLabel("Look at the last"))
        self.window_box = QComboBox()
        self.window_box.addItems(list(WINDOWS))
        self.window_box.setCurrentText(self.poller.window)
        self.window_box.setToolTip("How much history the rules look at.")
        self.window_box.currentTextChanged.connect(self._window_changed)
        bar.addWidget(self.window_box)
        self.show_dismissed = QCheckBox("Show dismissed")
        self.show_dismissed.setChecked(
            str(ctx.settings.value(SHOW_DISMISSED_SETTING, "false")).lower() == "true"
        )
        self.show_dismissed.setToolTip("List dismissed and snoozed recommendations too.")
        self.show_dismissed.toggled.connect(self._toggle_dismissed)
        bar.addWidget(self.show_dismissed)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Run the rules again now (F5)")
        self.refresh_button.clicked.connect(self.refresh)
        bar.addWidget(self.refresh_button)
        layout.addLayout(bar)
        self.status = QLabel("Checking…")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.status)
        #: Sentences from the engine (a rule that failed, no price known) and from actions.
        self.banner = Banner()
        layout.addWidget(self.banner)
        self.owner_bar = OwnerFilterBar("finding")
        self.owner_bar.cleared.connect(lambda: self.filter_owner(None))
        layout.addWidget(self.owner_bar)

        self.list = QWidget()
        self.list.setObjectName("advice-list")
        self.list_layout = QVBoxLayout(self.list)
        self.list_layout.setContentsMargins(0, 0, 8, 0)
        self.list_layout.setSpacing(10)
        self.empty = QLabel("")
        self.empty.setObjectName("advice-empty")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: palette(placeholder-text); font-size: 14px;")
        self.empty.setMinimumHeight(160)
        self.empty.hide()
        self.list_layout.addWidget(self.empty)
        self.list_layout.addStretch(1)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setWidget(self.list)
        layout.addWidget(self.scroll_area, 1)

        ctx.signals.advice_ready.connect(self._show)
        ctx.signals.host_filter_changed.connect(self._on_host_filter)
        self.poller.failed.connect(self._failed)
        self.poller.started.connect(self._checking)  # bound: disconnected with the page
        self.advice_actions.message.connect(self.say)
        if self.poller.latest is not None:
            self._show(self.poller.latest)

    def _on_host_filter(self, _host: object) -> None:
        self._reshow()

    def _checking(self) -> None:
        self.status.setText("Checking…")

    # -- the Page API -------------------------------------------------------------------------
    def on_shown(self) -> None:
        self.refresh()  # about 0.3 s on the reader for a day of 4 GPUs

    def has_data(self) -> bool:
        return self.snapshot is not None

    def save_state(self, settings: QSettings) -> None:
        settings.setValue(SHOW_DISMISSED_SETTING, self.show_dismissed.isChecked())

    def refresh(self) -> None:
        self.poller.refresh()

    def say(self, text: str, level: str = "info") -> None:
        """A sentence for the user, in the page's banner."""
        self._banner_level = level
        self.banner.show_message(text, level)

    # -- showing a result ---------------------------------------------------------------------
    def _window_changed(self, label: str) -> None:
        if label in WINDOWS and label != self.poller.window:
            self.poller.set_window(label)

    def _toggle_dismissed(self, on: bool) -> None:
        self.ctx.settings.setValue(SHOW_DISMISSED_SETTING, on)
        self._reshow()

    def _reshow(self) -> None:
        if self.snapshot is not None:
            self._show(self.snapshot)

    def _failed(self, message: str) -> None:
        self.status.setText("")
        self.say(f"The advice could not be worked out: {message}", "error")
        self._banner_level = "advice-error"  # the next result that comes through clears it

    def _show(self, snapshot: AdviceSnapshot) -> None:
        if not alive(self):
            return
        self.snapshot = snapshot
        result = snapshot.result
        active_keys = {r.key for r in result.recommendations}
        self.pending &= active_keys  # written: the database hides them now
        if self.window_box.currentText() != snapshot.window:
            self.window_box.blockSignals(True)
            self.window_box.setCurrentText(snapshot.window)
            self.window_box.blockSignals(False)
        stamp = time.strftime("%H:%M", time.localtime(snapshot.at))
        self.status.setText(f"{checked_sentence(snapshot)} Updated {stamp}.")
        if result.messages:
            self.say(" ".join(result.messages), "warning")
        elif self._banner_level != "error":
            self.banner.hide()
        scroll = self.scroll_area.verticalScrollBar().value()
        shown = sorted(self._on_host(result.recommendations), key=_by_savings)
        if self.show_dismissed.isChecked():
            shown += sorted(self._on_host(result.hidden), key=_by_savings)
        hidden_keys = {r.key for r in result.hidden}
        old, self.cards = self.cards, {}
        for card in old.values():
            self.list_layout.removeWidget(card)  # put back below, in the new order
        for position, rec in enumerate(shown, start=1):  # after the empty-state label
            hidden = rec.key in hidden_keys
            reused = old.pop(rec.key, None)
            # A card of the same shape shows the new figures in place: building its plots
            # again would cost tens of milliseconds of the GUI thread per card.
            if reused is not None and reused.hidden_rec == hidden and reused.update_from(rec):
                card = reused
            else:
                if reused is not None:
                    old[rec.key] = reused
                card = self._new_card(rec, hidden=hidden)
            self.cards[rec.key] = card
            self.list_layout.insertWidget(position, card)
            card.setVisible(rec.key not in self.pending)  # once it has its parent
        for card in old.values():
            card.plot.discard()
            card.hide()
            card.deleteLater()
        self._update_summary()
        self.scroll_area.verticalScrollBar().setValue(scroll)

    def _new_card(self, rec: Recommendation, *, hidden: bool) -> AdviceCard:
        card = AdviceCard(rec, hidden=hidden)
        card.apply_requested.connect(self.advice_actions.apply)
        card.dismiss_requested.connect(self.dismiss)
        card.snooze_requested.connect(self.snooze)
        card.restore_requested.connect(self.restore)
        return card

    def _on_host(self, recs: tuple[Recommendation, ...]) -> list[Recommendation]:
        """Those about the host chosen in the host selector (all for "All hosts"), and about the
        owner chosen on the Who pays page when one is."""
        return [r for r in recs if self.ctx.shows_host(r.target.host) and self._names_owner(r)]

    def filter_owner(
        self, key: Mapping[str, str | None] | None, footprint: OwnerFootprint | None = None
    ) -> None:
        """Show only the findings that name the owner ``key`` (or, for a finding that names
        nobody, are about a GPU or a run of its ``footprint``); None shows every finding."""
        self.owner_key = dict(key) if key else None
        self.owner = footprint if key else None
        self.owner_bar.show_owner(key, "findings that name it or are about its GPUs and runs")
        self._reshow()

    def _names_owner(self, rec: Recommendation) -> bool:
        if self.owner_key is None:
            return True
        target = rec.target
        if target.owner:  # "alice (82 %)", "project vision": the owner's values as words
            values = [v for v in self.owner_key.values() if v]
            return bool(values) and all(
                re.search(rf"(?<![\w.-]){re.escape(v)}(?![\w.-])", target.owner) for v in values
            )
        footprint = self.owner
        if footprint is None:
            return False
        return (target.uuid is not None and target.uuid in footprint.uuids) or (
            target.run is not None and target.run in footprint.run_ids
        )

    def visible_recommendations(self) -> list[Recommendation]:
        """The active recommendations shown now (on the host chosen, not hidden)."""
        if self.snapshot is None:
            return []
        recs = self._on_host(self.snapshot.result.recommendations)
        return [r for r in recs if r.key not in self.pending]

    def _update_summary(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        recs = self.visible_recommendations()
        currency = snapshot.result.currency
        money = sum(r.savings.money_per_month for r in recs if r.savings)
        self.total.setText(f"≈ {format_savings_money(money, currency)} / month")
        hidden = len(self._on_host(snapshot.result.hidden)) + len(self.pending)
        extra = f"; {hidden} dismissed or snoozed" if hidden else ""
        host = self.ctx.host_filter
        if host is not None:
            elsewhere = len(snapshot.result.recommendations) - len(
                self._on_host(snapshot.result.recommendations)
            )
            extra += f"; {elsewhere} more on other hosts" if elsewhere else ""
        where = f" on {host}" if host is not None else ""
        self.total_caption.setText(
            f"could be saved{where} by {_plural(len(recs), 'recommendation')}{extra}"
        )
        any_card = any(not c.isHidden() for c in self.cards.values())
        self.empty.setVisible(not any_card)
        self.empty.setText(self._empty_text(snapshot, hidden))

    def _empty_text(self, snapshot: AdviceSnapshot, hidden: int) -> str:
        found = snapshot.result.recommendations or snapshot.result.hidden
        if snapshot.data_range is None and not found:
            return (
                "No history yet. Advice comes from recorded samples: leave Costmeter recording "
                "for a few minutes (or run `costmeter record`), then look again."
            )
        newest = snapshot.data_range[1] if snapshot.data_range else snapshot.at
        if newest < snapshot.at - snapshot.since_s and not found:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(newest))
            return (
                f"Nothing was recorded in the last {WINDOW_WORDS.get(snapshot.window)}: the "
                f"newest sample is from {when}. Choose a longer window, or start recording."
            )
        more = (
            f" ({hidden} dismissed or snoozed: tick Show dismissed to see them.)" if hidden else ""
        )
        host = self.ctx.host_filter
        where = f" on {host}" if host is not None else ""
        if host is not None and snapshot.result.recommendations:
            more += " Other hosts have recommendations: choose All hosts to see them."
        return f"Nothing needs changing{where}.\n\n{checked_sentence(snapshot)}{more}"

    # -- dismiss, snooze, restore ------------------------------------------------------------
    def dismiss(self, rec: Recommendation) -> None:
        key, rule = rec.key, rec.rule
        self._write(rec, "dismissed", lambda store: advice_service.dismiss(store, key, rule))

    def snooze(self, rec: Recommendation, seconds: float) -> None:
        key, rule, until = rec.key, rec.rule, time.time() + seconds
        self._write(rec, "snoozed", lambda store: advice_service.snooze(store, key, rule, until))

    def restore(self, rec: Recommendation) -> None:
        key = rec.key

        def failed(message: str) -> None:
            self.say(f"“{rec.title}” could not be restored: {message}", "error")

        self.ctx.reader.submit(
            f"advice-write-{key}",
            lambda store: advice_service.restore(store, key),
            lambda _r: self.refresh(),
            failed,
        )

    def _write(self, rec: Recommendation, what: str, job: Callable[[Store], None]) -> None:
        """Hide the card now and write the state; show it again if the write fails."""
        key = rec.key
        self.pending.add(key)
        card = self.cards.get(key)
        if card is not None:
            card.hide()
        self._update_summary()

        def done(_result: object) -> None:
            self.refresh()  # the Overview's total follows

        def failed(message: str) -> None:
            if not alive(self):
                return
            self.pending.discard(key)
            again = self.cards.get(key)
            if again is not None:
                again.show()
            self._update_summary()
            self.say(f"“{rec.title}” could not be {what} ({message}); it is shown again.", "error")

        self.ctx.reader.submit(f"advice-write-{key}", job, done, failed)


def _by_savings(rec: Recommendation) -> tuple[float, float, str]:
    money = rec.savings.money_per_month if rec.savings else -1.0
    return (-money, -rec.confidence, rec.key)
