"""One recommendation as a card: what, where, why (facts and a chart), how much, how sure, and
what can be done about it (apply, snooze, dismiss; restore for a hidden one).

The card only asks: its buttons emit signals with the recommendation, and the page does the work.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from costmeter.advice.model import Recommendation, Savings, Target
from costmeter.core.units import format_energy_kwh
from costmeter.cost.ledger import format_money
from costmeter.gui.widgets.evidence_plot import EvidencePlot

#: Snooze choices: label -> seconds.
SNOOZE_CHOICES: dict[str, float] = {"1 day": 86_400.0, "1 week": 7 * 86_400.0}
#: What the Apply button says for each kind of action (the action's own text is shown above it).
APPLY_LABELS = {
    "relaunch": "Relaunch with this change…",
    "compress": "Measure compression…",
    "settings": "Open Settings",
    "delete_files": "Review and delete files…",
}
MUTED = "color: palette(placeholder-text);"
#: Green that reads on the light and the dark background.
SAVINGS_STYLE = "color: #16a34a;"


def describe_target(target: Target) -> str:
    """ "node-1 · GPU 0 NVIDIA A100-SXM4-80GB · run 12 train-lr" """
    parts = [target.host]
    if target.device is not None:
        gpu = f"GPU {target.device}"
        parts.append(f"{gpu} {target.device_name}" if target.device_name else gpu)
    elif target.device_name:
        parts.append(target.device_name)
    if target.run is not None:
        run = f"run {target.run}"
        parts.append(f"{run} {target.run_name}" if target.run_name else run)
    if target.sweep:
        parts.append(f"sweep {target.sweep}")
    if target.group:
        parts.append(f"replicas of {target.group}")
    return " · ".join(p for p in parts if p)


def format_savings_money(amount: float, currency: str) -> str:
    """Whole units from 100 up (an estimate is not worth cents)."""
    return format_money(amount, currency, digits=0 if abs(amount) >= 100 else 2)


def describe_savings(savings: Savings | None) -> str:
    """ "≈ $123 / month · 45 kWh", or why there is no figure."""
    if savings is None:
        return "Savings: no figure (no price is known for this; see the detail)"
    kwh = savings.kwh_per_month
    amount = savings.money_per_month
    money = format_savings_money(amount, savings.currency)
    energy = f"{kwh:,.0f} kWh" if kwh >= 10 else format_energy_kwh(kwh)
    per = "once" if savings.once else "/ month"
    if kwh < 0.05 and abs(amount) < 0.005:
        return "No saving to state (see the detail)"
    if kwh < 0.05:  # money only (a smaller GPU at the same power, say)
        return f"≈ {money} {per}"
    if abs(amount) < 0.005:  # energy only (no tariff for it)
        return f"≈ {energy} {per}"
    return f"≈ {money} {per} · {energy}"


def card_facts(rec: Recommendation) -> tuple[tuple[str, str], ...]:
    """The facts a card lists: who pays for it first (when known), then the evidence's."""
    owner = rec.target.owner
    return ((("Owner", owner),) if owner else ()) + rec.evidence.facts


def confidence_label(confidence: float) -> str:
    if confidence >= 0.75:
        return "High"
    if confidence >= 0.45:
        return "Medium"
    return "Low"


def _small(label: QLabel, scale: float = 0.9) -> QLabel:
    font = QFont(label.font())
    font.setPointSizeF(font.pointSizeF() * scale)
    label.setFont(font)
    return label


class AdviceCard(QFrame):
    apply_requested = Signal(object)
    dismiss_requested = Signal(object)
    #: The recommendation and the seconds to snooze it for.
    snooze_requested = Signal(object, float)
    restore_requested = Signal(object)

    def __init__(
        self, rec: Recommendation, *, hidden: bool = False, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.rec = rec
        self.hidden_rec = hidden
        self.setObjectName("card")
        self.setProperty("advice_key", rec.key)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(16, 12, 16, 12)
        outer.setSpacing(6)

        head = QHBoxLayout()
        self.title = QLabel()
        big = QFont(self.title.font())
        big.setPointSizeF(big.pointSizeF() * 1.25)
        big.setBold(True)
        self.title.setFont(big)
        self.title.setWordWrap(True)
        head.addWidget(self.title, 1)
        self.savings = QLabel()
        self.savings.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        head.addWidget(self.savings)
        outer.addLayout(head)

        self.target = _small(QLabel())
        self.target.setStyleSheet(MUTED)
        self.target.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.target)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        outer.addWidget(self.detail)

        body = QHBoxLayout()
        body.setSpacing(16)
        facts = QGridLayout()
        facts.setHorizontalSpacing(12)
        facts.setVerticalSpacing(2)
        #: (label, value) QLabels of the facts grid, in order.
        self.fact_labels: list[tuple[QLabel, QLabel]] = []
        for row, (name, _value) in enumerate(card_facts(rec)):
            key = _small(QLabel(f"{name}:"), 0.95)
            key.setStyleSheet(MUTED)
            key.setWordWrap(True)  # a narrow window wraps the longer names instead of cutting them
            val = _small(QLabel(), 0.95)
            val.setWordWrap(True)
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            facts.addWidget(key, row, 0, Qt.AlignmentFlag.AlignTop)
            facts.addWidget(val, row, 1, Qt.AlignmentFlag.AlignTop)
            self.fact_labels.append((key, val))
        facts.setColumnStretch(1, 1)
        facts.setRowStretch(len(self.fact_labels), 1)
        facts_box = QWidget()
        facts_box.setLayout(facts)
        facts_box.setMinimumWidth(260)
        body.addWidget(facts_box, 2)
        self.plot = EvidencePlot(rec.evidence.series)
        body.addWidget(self.plot, 3)
        outer.addLayout(body)

        self.formula = _small(QLabel())
        self.formula.setWordWrap(True)
        self.formula.setStyleSheet(MUTED)
        self.formula.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula.hide()
        self.how = QToolButton()
        self.how.setText("How is this computed?")
        self.how.setCheckable(True)
        self.how.setAutoRaise(True)
        self.how.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.how.toggled.connect(self.formula.setVisible)

        self.action_text = QLabel()
        self.action_text.setWordWrap(True)
        outer.addWidget(self.action_text)

        foot = QHBoxLayout()
        foot.setSpacing(8)
        self.confidence = _small(QLabel())
        foot.addWidget(self.confidence)
        self.confidence_bar = QProgressBar()
        self.confidence_bar.setRange(0, 100)
        self.confidence_bar.setTextVisible(False)
        self.confidence_bar.setFixedSize(80, 8)
        foot.addWidget(self.confidence_bar)
        foot.addWidget(self.how)
        foot.addStretch(1)

        self.apply_button = QPushButton(APPLY_LABELS.get(rec.action.kind, "Apply"))
        self.apply_button.clicked.connect(lambda: self.apply_requested.emit(self.rec))
        self.snooze_button = QToolButton()
        self.snooze_button.setText("Snooze")
        self.snooze_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.snooze_button)
        #: The snooze menu's actions by label (for tests and keyboard users).
        self.snooze_actions = {}
        for label, seconds in SNOOZE_CHOICES.items():
            act = menu.addAction(f"for {label}")
            act.triggered.connect(
                lambda _c=False, s=seconds: self.snooze_requested.emit(self.rec, s)
            )
            self.snooze_actions[label] = act
        self.snooze_button.setMenu(menu)
        self.snooze_button.setToolTip("Hide it for a while; it comes back if it still applies.")
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.setToolTip("Hide it until you restore it (Show dismissed).")
        self.dismiss_button.clicked.connect(lambda: self.dismiss_requested.emit(self.rec))
        self.restore_button = QPushButton("Restore")
        self.restore_button.setToolTip("Show it again among the active recommendations.")
        self.restore_button.clicked.connect(lambda: self.restore_requested.emit(self.rec))
        for button in (
            self.apply_button,
            self.snooze_button,
            self.dismiss_button,
            self.restore_button,
        ):
            foot.addWidget(button)
        outer.addLayout(foot)
        outer.addWidget(self.formula)
        # Shown or hidden only now that they have a parent (a parentless widget would open as
        # a window of its own).
        self.apply_button.setVisible(rec.action.kind in APPLY_LABELS and not hidden)
        self.snooze_button.setVisible(not hidden)
        self.dismiss_button.setVisible(not hidden)
        self.restore_button.setVisible(hidden)
        if hidden:
            self.title.setStyleSheet(MUTED)
        self._fill(rec)

    def update_from(self, rec: Recommendation) -> bool:
        """Show ``rec`` in this card when it has the same shape (same key, facts, series and
        action): new figures without building new plots. False: it needs a new card."""
        if shape(rec) != shape(self.rec):
            return False
        self.rec = rec
        self._fill(rec)
        self.plot.update_series(rec.evidence.series)
        return True

    def _fill(self, rec: Recommendation) -> None:
        self.title.setText(f"{rec.title} (dismissed or snoozed)" if self.hidden_rec else rec.title)
        figure = rec.savings is not None and (
            abs(rec.savings.money_per_month) >= 0.005 or rec.savings.kwh_per_month >= 0.05
        )
        strong = QFont(self.font())
        strong.setPointSizeF(strong.pointSizeF() * 1.15)
        strong.setBold(figure)
        self.savings.setFont(strong)
        self.savings.setText(describe_savings(rec.savings))
        self.savings.setStyleSheet(SAVINGS_STYLE if figure else MUTED)
        self.savings.setToolTip(rec.savings.formula if rec.savings else "")
        self.target.setText(f"{describe_target(rec.target)}  ·  rule {rec.rule}")
        self.detail.setText(rec.detail)
        self.detail.setVisible(bool(rec.detail))
        for (_key, val), (_name, value) in zip(self.fact_labels, card_facts(rec), strict=True):
            val.setText(value)
        self.formula.setText(rec.savings.formula if rec.savings else "")
        self.how.setVisible(rec.savings is not None)
        self.action_text.setText(f"<b>What to do:</b> {_escape(rec.action.text)}")
        self.action_text.setVisible(bool(rec.action.text))
        self.apply_button.setToolTip(rec.action.text)
        pct = round(max(0.0, min(1.0, rec.confidence)) * 100)
        self.confidence.setText(f"Confidence: {confidence_label(rec.confidence)}")
        tip = f"{pct}%: how long and how steady the evidence is (see docs/ADVICE.md)."
        self.confidence.setToolTip(tip)
        self.confidence_bar.setValue(pct)
        self.confidence_bar.setToolTip(tip)


def shape(rec: Recommendation) -> tuple[object, ...]:
    """What a card is built from (the rest it can update in place)."""
    series = tuple(
        (s.label, s.unit, s.threshold is not None, bool(s.ts) and len(s.ts) == len(s.values))
        for s in rec.evidence.series
    )
    facts = tuple(name for name, _ in card_facts(rec))
    return (rec.key, facts, series, rec.action.kind, rec.savings is None)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
