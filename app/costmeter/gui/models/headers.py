"""Header cells shared by the app's table models: titles, tooltips, numbers aligned right."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt


def header_data(
    section: int,
    orientation: Qt.Orientation,
    role: int,
    *,
    columns: Sequence[str],
    numeric: Collection[int],
    tips: Mapping[int, str],
) -> Any:
    if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(columns):
        return None
    if role == Qt.ItemDataRole.DisplayRole:
        return columns[section]
    if role == Qt.ItemDataRole.ToolTipRole:
        return tips.get(section)
    if role == Qt.ItemDataRole.TextAlignmentRole:
        side = Qt.AlignmentFlag.AlignRight if section in numeric else Qt.AlignmentFlag.AlignLeft
        return int(side | Qt.AlignmentFlag.AlignVCenter)
    return None
