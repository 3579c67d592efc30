"""The GPU price table of the Settings page: every row in force, with its source and date.

A row is either the shipped default or the user's. Editing a default row turns it into the user's
own row for that model (written as a ``[[cost.gpu]]`` row that replaces the default); "Restore
default" turns it back. Rows the user adds need device-name patterns, since no default row lends
them its own. A new price on a default row no longer comes from the default's source, so the source
becomes "entered in Settings", dated today, unless the user writes another.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from costmeter.cost.pricing import PriceRow, load_default_pricing, make_row
from costmeter.service.form_text import FieldError, number_text, parse_number, split_patterns

COLUMNS = (
    "Model",
    "Per hour",
    "Energy in price",
    "Source",
    "Date",
    "Set by",
    "Device names matched",
)
MODEL, HOURLY, ENERGY, SOURCE, DATE, ORIGIN, MATCH = range(len(COLUMNS))
ENTERED_SOURCE = "entered in Settings"
#: The table grows to show this many rows before it scrolls inside the page.
MAX_VISIBLE_ROWS = 18
_DEFAULT_MODEL_TIP = "A model of Costmeter's default price table (its name cannot change)."
_BAD = QColor(220, 38, 38, 60)
_TIPS = {
    ENERGY: "Ticked: the hourly price already pays for the electricity (a cloud rental), so energy "
    "is shown but not charged again. Unticked: owned hardware; energy is charged at the tariff.",
    MATCH: "Regular expressions searched for in the NVIDIA device name (case does not matter), "
    "separated by commas, e.g. “RTX 3090, 3090 Ti”.",
    ORIGIN: "“default table”: Costmeter's price table. “you”: a row in your configuration file.",
}


@dataclass
class _RowInfo:
    default: PriceRow | None  # the shipped row of this model, if there is one
    user: bool
    url: str | None


def _today() -> str:
    return datetime.date.today().isoformat()


class PriceTable(QWidget):
    #: The user changed a row (or added, removed or restored one).
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("price-table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column, tip in _TIPS.items():
            header_item = self.table.horizontalHeaderItem(column)
            assert header_item is not None
            header_item.setToolTip(tip)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(SOURCE, QHeaderView.ResizeMode.Stretch)
        for column, width in ((MODEL, 150), (HOURLY, 115), (ENERGY, 110), (DATE, 90)):
            self.table.setColumnWidth(column, width)
        self.table.setColumnWidth(ORIGIN, 160)
        self.table.setColumnWidth(MATCH, 180)
        self.add_button = QPushButton("Add a GPU model")
        self.remove_button = QPushButton("Remove")
        self.restore_button = QPushButton("Restore default")
        self.add_button.clicked.connect(self.add_row)
        self.remove_button.clicked.connect(lambda: self.remove_row(self.table.currentRow()))
        self.restore_button.clicked.connect(lambda: self.restore_default(self.table.currentRow()))
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.restore_button)
        buttons.addStretch(1)
        # The source column is cut short; the chosen row's source is shown in full here.
        self.detail = QLabel()
        self.detail.setObjectName("price-detail")
        self.detail.setWordWrap(True)
        self.detail.setOpenExternalLinks(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)
        self._info: list[_RowInfo] = []
        self._loading = False
        self.table.itemChanged.connect(self._edited)
        self.table.currentCellChanged.connect(lambda *_: self._update_buttons())
        self._update_buttons()

    # -- filling -----------------------------------------------------------------------------
    def load(self, rows: Sequence[PriceRow], currency: str) -> None:
        """Show ``rows`` (the price table in force: defaults with the user's rows merged in)."""
        defaults = load_default_pricing()
        header_item = self.table.horizontalHeaderItem(HOURLY)
        assert header_item is not None
        header_item.setText(f"Per hour ({currency})")
        with self._quiet():
            self.table.setRowCount(0)
            self._info = []
            for row in rows:
                self._append(row, _RowInfo(defaults.row_for_model(row.model), row.user, row.url))
        self._fit_height()
        self._update_buttons()

    def _append(self, row: PriceRow, info: _RowInfo) -> int:
        index = self.table.rowCount()
        self.table.insertRow(index)
        self._info.append(info)
        model = QTableWidgetItem(row.model)
        if info.default is not None:  # renaming would detach it from the default it replaces
            model.setFlags(model.flags() & ~Qt.ItemFlag.ItemIsEditable)
            model.setToolTip(_DEFAULT_MODEL_TIP)
        energy = QTableWidgetItem()
        energy.setFlags(
            (energy.flags() | Qt.ItemFlag.ItemIsUserCheckable) & ~Qt.ItemFlag.ItemIsEditable
        )
        energy.setToolTip(_TIPS[ENERGY])
        origin = QTableWidgetItem()
        origin.setFlags(origin.flags() & ~Qt.ItemFlag.ItemIsEditable)
        origin.setToolTip(_TIPS[ORIGIN])
        for column, item in (
            (MODEL, model),
            (HOURLY, QTableWidgetItem()),
            (ENERGY, energy),
            (SOURCE, QTableWidgetItem()),
            (DATE, QTableWidgetItem()),
            (ORIGIN, origin),
            (MATCH, QTableWidgetItem()),
        ):
            self.table.setItem(index, column, item)
        self._fill(index, row)
        return index

    def _fill(self, index: int, row: PriceRow) -> None:
        self._set(index, HOURLY, number_text(row.hourly))
        self._cell(index, HOURLY).setTextAlignment(
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        )
        self._cell(index, ENERGY).setCheckState(
            Qt.CheckState.Checked if row.includes_energy else Qt.CheckState.Unchecked
        )
        self._set(index, SOURCE, row.source)
        self._set(index, DATE, row.date)
        self._set(index, MATCH, ", ".join(row.match))
        self._cell(index, MATCH).setToolTip(_TIPS[MATCH])
        self._show_origin(index)

    def _show_origin(self, index: int) -> None:
        info = self._info[index]
        if not info.user:
            text = "default table"
        elif info.default is None:
            text = "you"
        else:
            text = "you (replaces default)"
        origin = self._cell(index, ORIGIN)
        origin.setText(text)
        font = origin.font()
        font.setBold(info.user)
        origin.setFont(font)
        source = self._cell(index, SOURCE)
        source.setToolTip(
            "\n".join(t for t in (source.text(), info.url or "", self.text(index, DATE)) if t)
        )

    def _fit_height(self) -> None:
        """Tall enough for every row (up to a limit), so the page scrolls, not the table too."""
        visible = min(max(self.table.rowCount(), 3), MAX_VISIBLE_ROWS)
        row_height = self.table.verticalHeader().defaultSectionSize()
        header = self.table.horizontalHeader().sizeHint().height()
        frame = 2 * self.table.frameWidth()
        self.table.setFixedHeight(header + visible * row_height + frame)

    # -- editing -----------------------------------------------------------------------------
    def _edited(self, item: QTableWidgetItem) -> None:
        if self._loading or item.column() == ORIGIN:
            return
        index = item.row()
        info = self._info[index]
        with self._quiet():
            info.user = True
            default = info.default
            if (
                item.column() == HOURLY
                and default is not None
                and self.text(index, SOURCE) == default.source
            ):
                # The default's source does not vouch for the user's price.
                self._set(index, SOURCE, ENTERED_SOURCE)
                self._set(index, DATE, _today())
                info.url = None
            self._show_origin(index)
        self._update_buttons()
        self.changed.emit()

    def add_row(self) -> None:
        """A new model of the user's; its name cell opens for typing."""
        row = PriceRow("New GPU", (), 0.0, ENTERED_SOURCE, _today(), user=True)
        with self._quiet():
            index = self._append(row, _RowInfo(None, True, None))
        self._fit_height()
        self.table.setCurrentCell(index, MODEL)
        self.table.scrollToItem(self._cell(index, MODEL))
        self.table.editItem(self._cell(index, MODEL))
        self._update_buttons()
        self.changed.emit()

    def remove_row(self, index: int) -> None:
        """Remove one of the user's own models (a default row is restored instead)."""
        if not 0 <= index < len(self._info) or self._info[index].default is not None:
            return
        with self._quiet():
            self.table.removeRow(index)
            del self._info[index]
        self._fit_height()
        self._update_buttons()
        self.changed.emit()

    def restore_default(self, index: int) -> None:
        if not 0 <= index < len(self._info):
            return
        info = self._info[index]
        if info.default is None or not info.user:
            return
        with self._quiet():
            info.user, info.url = False, info.default.url
            self._fill(index, info.default)
            self._clear_marks(index)
        self._update_buttons()
        self.changed.emit()

    def _update_buttons(self) -> None:
        index = self.table.currentRow()
        info = self._info[index] if 0 <= index < len(self._info) else None
        self._show_detail(index if info is not None else None)
        self.remove_button.setEnabled(info is not None and info.default is None)
        self.restore_button.setEnabled(info is not None and info.default is not None and info.user)

    def _show_detail(self, index: int | None) -> None:
        if index is None:
            self.detail.setText("Choose a row to see where its price comes from.")
            return
        info = self._info[index]
        source = html.escape(self.text(index, SOURCE).strip() or "no source given")
        date = self.text(index, DATE).strip()
        text = f"<b>{html.escape(self.text(index, MODEL))}</b>: {source}"
        text += f" ({html.escape(date)})" if date else ""
        if info.url:
            url = html.escape(info.url, quote=True)
            text += f' — <a href="{url}">{html.escape(info.url)}</a>'
        self.detail.setText(text)

    # -- reading back ------------------------------------------------------------------------
    def user_rows(self) -> tuple[tuple[PriceRow, ...], list[str]]:
        """The user's rows for ``CostConfig.gpu``, and what is wrong with them, in words.

        Cells in error are tinted and the first one is made current.
        """
        with self._quiet():  # tinting a cell is no edit of the user's
            return self._read_rows()

    def _read_rows(self) -> tuple[tuple[PriceRow, ...], list[str]]:
        rows: list[PriceRow] = []
        problems: list[str] = []
        first_bad: tuple[int, int] | None = None
        seen: dict[str, int] = {}
        for index, info in enumerate(self._info):
            self._clear_marks(index)
            name = self.text(index, MODEL).strip()
            bad: list[tuple[int, str]] = []
            if not name:
                bad.append((MODEL, "give the model a name"))
            elif name.casefold() in seen:
                bad.append((MODEL, f"row {seen[name.casefold()] + 1} has the same model name"))
            seen.setdefault(name.casefold(), index)
            hourly = self._hourly(index, bad)
            patterns = split_patterns(self.text(index, MATCH))
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as err:
                    bad.append((MATCH, f"“{pattern}” is not a valid regular expression ({err})"))
            if not patterns and info.default is None:
                bad.append((MATCH, "say which device names it is for, such as “RTX 3090”"))
            for column, words in bad:
                problems.append(f"Price table, row {index + 1} ({name or 'no name'}): {words}.")
                self._cell(index, column).setBackground(QBrush(_BAD))
                self._cell(index, column).setToolTip(words)
                first_bad = first_bad or (index, column)
            if bad or not info.user or hourly is None:
                continue
            keeps_default = info.default is not None and tuple(patterns) == info.default.match
            rows.append(
                make_row(
                    model=name,
                    match=() if keeps_default else patterns,
                    hourly=hourly,
                    source=self.text(index, SOURCE).strip(),
                    date=self.text(index, DATE).strip(),
                    url=info.url,
                    user=True,
                    includes_energy=self._cell(index, ENERGY).checkState() == Qt.CheckState.Checked,
                )
            )
        if first_bad is not None:
            self.table.setCurrentCell(*first_bad)
            self.table.scrollToItem(self._cell(*first_bad))
        return tuple(rows), problems

    def _hourly(self, index: int, bad: list[tuple[int, str]]) -> float | None:
        try:
            hourly = parse_number(self.text(index, HOURLY), "1.29")
        except FieldError as err:
            bad.append((HOURLY, f"the price per hour: {str(err).rstrip('.')}"))
            return None
        if hourly is None:
            bad.append((HOURLY, "enter the price per hour (0 if it costs nothing)"))
        elif hourly < 0:
            bad.append((HOURLY, f"the price per hour cannot be negative ({number_text(hourly)})"))
            return None
        return hourly

    # -- helpers -----------------------------------------------------------------------------
    def row_count(self) -> int:
        return self.table.rowCount()

    def is_user_row(self, index: int) -> bool:
        return self._info[index].user

    def text(self, index: int, column: int) -> str:
        item = self.table.item(index, column)
        return item.text() if item is not None else ""

    def row_of(self, model: str) -> int:
        """The index of the row for ``model`` (case-insensitive); -1 if there is none."""
        for index in range(self.table.rowCount()):
            if self.text(index, MODEL).casefold() == model.casefold():
                return index
        return -1

    def _cell(self, index: int, column: int) -> QTableWidgetItem:
        item = self.table.item(index, column)
        assert item is not None
        return item

    def _set(self, index: int, column: int, text: str) -> None:
        self._cell(index, column).setText(text)

    def _clear_marks(self, index: int) -> None:
        for column in (MODEL, HOURLY, MATCH):
            self._cell(index, column).setData(Qt.ItemDataRole.BackgroundRole, None)
        default = self._info[index].default is not None
        self._cell(index, MODEL).setToolTip(
            "A model of the default price table." if default else ""
        )
        self._cell(index, HOURLY).setToolTip("")
        self._cell(index, MATCH).setToolTip(_TIPS[MATCH])

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Changes made by the table itself are not the user's edits."""
        loading, self._loading = self._loading, True
        try:
            yield
        finally:
            self._loading = loading
