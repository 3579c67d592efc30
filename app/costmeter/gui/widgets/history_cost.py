"""Beside the History chart: what the visible range cost, in all and for the chosen device."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from costmeter.core.units import format_energy_kwh
from costmeter.cost.ledger import CostReport, format_money
from costmeter.gui.history_data import Target, target_cost
from costmeter.gui.widgets.card import Card


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


class CostPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.total = Card("Visible range, all devices")
        self.selected = Card("Selected device")
        self.selected.caption.setWordWrap(True)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(placeholder-text);")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.total)
        layout.addWidget(self.selected)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self.setFixedWidth(260)

    def set_target(self, target: Target) -> None:
        self.selected.caption.setText(target.label)

    def show_nothing(self, detail: str) -> None:
        self.total.set("—", detail)
        self.selected.set("—")
        self.note.setText("")

    def show_report(self, report: CostReport, target: Target | None) -> None:
        cur = report.currency
        t = report.total
        self.total.set(
            format_money(t.cost, cur),
            f"idle {format_money(t.idle_cost, cur)} · {format_energy_kwh(t.energy_kwh)}",
        )
        mine = target_cost(report, target) if target is not None else None
        if mine is None:
            self.selected.set("—", "no samples in this range")
        else:
            self.selected.set(
                format_money(mine.cost, cur),
                f"idle {format_money(mine.idle_cost, cur)} · {format_energy_kwh(mine.energy_kwh)}",
            )
        hours = (report.end - report.start) / 3600
        self.note.setText(
            f"From {_when(report.start)} to {_when(report.end)} ({hours:,.1f} h). Idle cost is "
            "what was paid while a device did no work."
        )
