"""The Who pays table: one row per owner, then Unattributed, Idle and Total.

The key columns follow the report's dimensions (one or two). Sorting by any column keeps the
three summary rows at the bottom (``OwnerSortProxy``), so "who pays most" can be sorted either way
without losing the total.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QFont

from costmeter.core.units import format_energy_kwh
from costmeter.cost.chargeback import ChargebackReport
from costmeter.cost.ledger import format_money
from costmeter.gui.models.headers import header_data
from costmeter.gui.who_pays_data import TableRow, table_rows

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ModelIndex = QModelIndex | QPersistentModelIndex

AMOUNT_COLUMNS: tuple[str, ...] = ("Cost", "Idle cost", "Energy", "GPU-hours", "Share")
_TIPS = {
    "Cost": "Everything charged to the owner: use, and time it held a GPU running nothing",
    "Idle cost": "The part of the cost when the owner held a GPU (memory, an allocation, a "
    "placement) but ran nothing on it",
    "Energy": "The owner's share of the measured (or estimated) energy",
    "GPU-hours": "The owner's share of GPU time, summed over GPUs",
    "Share": "Of the total cost in the period",
}
_DIMENSION_TITLES = {
    "user": "User",
    "job": "Job",
    "account": "Account",
    "container": "Container",
    "pod": "Pod",
    "namespace": "Namespace",
    "run": "Run",
    "project": "Project",
    "host": "Host",
    "gpu-model": "GPU model",
}
#: Summary rows sort after every owner, whichever way the column is sorted.
_SUMMARY_ORDER = {"unattributed": 1, "idle": 2, "total": 3}


def dimension_title(dim: str) -> str:
    if dim.startswith("tag:"):
        return f"Tag {dim[4:]}"
    return _DIMENSION_TITLES.get(dim, dim)


def _gpu_hours(hours: float) -> str:
    return f"{hours:,.2f}" if hours >= 0.01 or hours == 0 else f"{hours:.4f}"


class OwnerTableModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[TableRow] = []
        self._by: tuple[str, ...] = ("user",)
        self._currency = "USD"

    # -- reading -----------------------------------------------------------------------------
    @property
    def by(self) -> tuple[str, ...]:
        return self._by

    def key_columns(self) -> int:
        return len(self._by)

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._by) + len(AMOUNT_COLUMNS)

    def row(self, index: int) -> TableRow:
        return self._rows[index]

    def rows(self) -> list[TableRow]:
        return list(self._rows)

    def columns(self) -> tuple[str, ...]:
        return (*(dimension_title(d) for d in self._by), *AMOUNT_COLUMNS)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, col = self._rows[index.row()], index.column()
        keys = len(self._by)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == SORT_ROLE:
            return self._sort_key(row, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= keys:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and row.kind != "group":
            font = QFont()
            font.setBold(row.kind == "total")
            font.setItalic(row.kind != "total")
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            if row.tooltip and col < keys:
                return row.tooltip
            if col < keys and row.kind == "group":
                return "Double-click to see this owner's processes; right-click for more"
        return None

    def _display(self, row: TableRow, col: int) -> str:
        keys = len(self._by)
        if col < keys:
            return row.cells[col] if col < len(row.cells) else ""
        a, name = row.amounts, AMOUNT_COLUMNS[col - keys]
        if name == "Cost":
            return format_money(a.cost, self._currency)
        if name == "Idle cost":
            return format_money(a.idle_cost, self._currency)
        if name == "Energy":
            return format_energy_kwh(a.energy_kwh)
        if name == "GPU-hours":
            return _gpu_hours(a.gpu_hours)
        return "" if row.share is None else f"{row.share * 100:.1f} %"

    def _sort_key(self, row: TableRow, col: int) -> tuple[int, float | str]:
        keys = len(self._by)
        rank = _SUMMARY_ORDER.get(row.kind, 0)
        if col < keys:
            return (rank, row.cells[col].lower() if col < len(row.cells) else "")
        a, name = row.amounts, AMOUNT_COLUMNS[col - keys]
        value = {
            "Cost": a.cost,
            "Idle cost": a.idle_cost,
            "Energy": a.energy_kwh,
            "GPU-hours": a.gpu_hours,
        }.get(name, row.share or 0.0)
        return (rank, value)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        keys = len(self._by)
        columns = self.columns()
        tips = {keys + i: _TIPS[name] for i, name in enumerate(AMOUNT_COLUMNS)}
        numeric = range(keys, len(columns))
        return header_data(section, orientation, role, columns=columns, numeric=numeric, tips=tips)

    # -- updating ----------------------------------------------------------------------------
    def set_report(self, report: ChargebackReport | None) -> None:
        self.beginResetModel()
        if report is None:
            self._rows = []
        else:
            self._by, self._currency = report.by, report.currency
            self._rows = table_rows(report)
        self.endResetModel()


class OwnerSortProxy(QSortFilterProxyModel):
    """Sorts by ``SORT_ROLE``; Unattributed, Idle and Total stay last in either order."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)

    def lessThan(self, left: ModelIndex, right: ModelIndex) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if not isinstance(a, tuple) or not isinstance(b, tuple):
            return False
        if a[0] != b[0]:  # summary rows: below the owners however the column is sorted
            descending = self.sortOrder() == Qt.SortOrder.DescendingOrder
            return (a[0] > b[0]) if descending else (a[0] < b[0])
        return bool(a[1] < b[1])
