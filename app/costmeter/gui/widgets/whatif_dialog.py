"""The "What if on another GPU…" dialog: a finished run estimated on every priced GPU model
(cheapest first; models its memory does not fit are greyed).

The estimate is ``costmeter.service.whatif.whatif_run`` (the one ``costmeter whatif`` prints),
read on the store reader's thread through ``request``; the dialog only shows what comes back,
so the GUI thread never waits. Changing the precision asks again.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from costmeter.cost.gpu_specs import PRECISIONS
from costmeter.cost.whatif import DEFAULT_PRECISION, WhatIf
from costmeter.cost.whatif_text import HEADERS, NUMERIC, cells, closing
from costmeter.gui.widgets.form_field import ERROR_STYLE, HINT_STYLE

#: ``request(run_id, precision)``: start working the estimate out (answered by ``show_result``
#: or ``show_error``).
Request = Callable[[int, str], None]


class WhatIfDialog(QDialog):
    def __init__(self, run_id: int, run_name: str, request: Request, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_id = run_id
        self._request = request
        self.setWindowTitle(f"What if run {run_id} ({run_name}) ran on another GPU")
        self.resize(1120, 480)
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Scale compute by"))
        self.precision = QComboBox()
        for p in PRECISIONS:
            self.precision.addItem(p.upper(), p)
        self.precision.setCurrentIndex(PRECISIONS.index(DEFAULT_PRECISION))
        self.precision.setToolTip(
            "The dense TFLOPS column the busy time scales by (BF16: mixed-precision training)"
        )
        self.precision.currentIndexChanged.connect(lambda _i: self.ask())
        bar.addWidget(self.precision)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels([h.capitalize() for h in HEADERS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.estimate: WhatIf | None = None

    def chosen_precision(self) -> str:
        return str(self.precision.currentData())

    def ask(self) -> None:
        """Ask for the estimate at the chosen precision (answered on the GUI thread later)."""
        self.status.setStyleSheet(HINT_STYLE)
        self.status.setText("Estimating from the run's samples…")
        self._request(self.run_id, self.chosen_precision())

    def show_result(self, result: WhatIf) -> None:
        if result.precision != self.chosen_precision():
            return  # an answer to an earlier choice: the newer one is on its way
        self.estimate = result
        notes = " ".join(result.notes)
        self.status.setStyleSheet(HINT_STYLE)
        self.status.setText(notes or "An estimate, not a benchmark: measure one run there first.")
        self.table.setRowCount(len(result.options))
        for row, option in enumerate(result.options):
            for col, text in enumerate(cells(option, result.currency)):
                item = QTableWidgetItem(text)
                if col in NUMERIC:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if option.current:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                elif option.fits is False:  # listed for its price, greyed: it cannot hold it
                    item.setForeground(self.palette().placeholderText())
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()
        self.summary.setText(closing(result))

    def show_error(self, sentence: str) -> None:
        self.estimate = None
        self.table.setRowCount(0)
        self.summary.setText("")
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(sentence)
