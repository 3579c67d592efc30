"""The History page's choices: device, metric, range (a preset or two dates), export, status.

Setters change the widgets without emitting their signals, so only the user's own changes reach
the page.
"""

from __future__ import annotations

from PySide6.QtCore import QDateTime, QSignalBlocker
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from costmeter.gui.history_data import PRESETS, Metric, Target


class HistoryControls(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device_box = QComboBox()
        self.device_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.device_box.setMinimumContentsLength(28)
        self.metric_box = QComboBox()
        self.metric_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.metric_box.setMinimumContentsLength(20)
        self.preset_box = QComboBox()
        for key, label, _ in PRESETS:
            self.preset_box.addItem(label, key)
        self.start_edit, self.end_edit = QDateTimeEdit(), QDateTimeEdit()
        for edit in (self.start_edit, self.end_edit):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the visible range as CSV or JSON")
        self.status = QLabel(" ")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        rows: tuple[tuple[str, tuple[QWidget, ...], QWidget], ...] = (
            ("Device", (self.device_box, QLabel("Metric"), self.metric_box), self.export_button),
            ("Range", (self.preset_box, self.start_edit, QLabel("to"), self.end_edit), self.status),
        )
        for r, (caption, widgets, last) in enumerate(rows):
            grid.addWidget(QLabel(caption), r, 0)
            row = QHBoxLayout()
            for w in widgets:
                if isinstance(w, QLabel):
                    row.addSpacing(6)
                row.addWidget(w)
            if last is self.status:
                row.addSpacing(12)
                row.addWidget(last, 1)
            else:
                row.addStretch(1)
                row.addWidget(last)
            grid.addLayout(row, r, 1)

    def set_targets(self, targets: list[Target], wanted: str) -> None:
        with QSignalBlocker(self.device_box):
            self.device_box.clear()
            for t in targets:
                self.device_box.addItem(t.label, t.key)
            self.device_box.setCurrentIndex(max(self.device_box.findData(wanted), 0))

    def set_metrics(self, metrics: tuple[Metric, ...], wanted: str) -> None:
        names = [m.name for m in metrics]
        with QSignalBlocker(self.metric_box):
            self.metric_box.clear()
            for m in metrics:
                self.metric_box.addItem(m.label, m.name)
            self.metric_box.setCurrentIndex(names.index(wanted) if wanted in names else 0)

    def preset(self) -> str:
        return str(self.preset_box.currentData())

    def set_preset(self, key: str) -> None:
        with QSignalBlocker(self.preset_box):
            self.preset_box.setCurrentIndex(max(self.preset_box.findData(key), 0))

    def set_range(self, start: float, end: float) -> None:
        for edit, ts in ((self.start_edit, start), (self.end_edit, end)):
            with QSignalBlocker(edit):
                edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(ts)))

    def edited_range(self) -> tuple[float, float]:
        return (
            float(self.start_edit.dateTime().toSecsSinceEpoch()),
            float(self.end_edit.dateTime().toSecsSinceEpoch()),
        )

    def set_status(self, text: str, error: bool = False) -> None:
        grey = "color: palette(placeholder-text);"
        self.status.setStyleSheet("color: #dc2626;" if error else grey)
        self.status.setText(text or " ")
        self.status.setToolTip(text)
