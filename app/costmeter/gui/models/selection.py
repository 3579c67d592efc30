"""Selection in a table shown through a sort/filter proxy, in the source model's row numbers."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSortFilterProxyModel
from PySide6.QtWidgets import QTableView


def selected_source_row(table: QTableView, proxy: QSortFilterProxyModel) -> int | None:
    """The source row of the first selected row; None when nothing is selected."""
    rows = table.selectionModel().selectedRows()
    if not rows:
        return None
    source = proxy.mapToSource(rows[0])
    return source.row() if source.isValid() else None


def select_first(
    table: QTableView, proxy: QSortFilterProxyModel, matches: Callable[[int], bool]
) -> bool:
    """Select and show the first visible row whose source row ``matches``; False if none."""
    for r in range(proxy.rowCount()):
        index = proxy.index(r, 0)
        if matches(proxy.mapToSource(index).row()):
            table.selectRow(r)
            table.scrollTo(index)
            return True
    return False
