"""The Who pays page: a period's cost split over owners (users, jobs, containers, runs, tags...).

``costmeter.service.chargeback.chargeback`` runs on the store reader's thread (it reads the
store's attribution and prices it like ``costmeter report``); the page shows its groups with
Unattributed, Idle and Total in a table and its series as stacked bars. An owner's row leads to
the Processes, Runs, History and Advice pages filtered to that owner.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from PySide6.QtCore import QPoint, QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
)

from costmeter.cost.chargeback import ChargebackReport
from costmeter.cost.ledger import format_money
from costmeter.gui.context import AppContext
from costmeter.gui.models.owner_model import OwnerSortProxy, OwnerTableModel
from costmeter.gui.models.selection import selected_source_row
from costmeter.gui.pages.base import Page
from costmeter.gui.tasks import alive
from costmeter.gui.who_pays_data import (
    DIMENSION_CHOICES,
    PERIODS,
    OwnerFootprint,
    bucket_for,
    dimension_name,
    empty_text,
    is_empty,
    key_text,
    owner_footprint,
    period_range,
    stacked_series,
)
from costmeter.gui.widgets.owner_chart import OwnerChart
from costmeter.service.chargeback import chargeback
from costmeter.service.export import write_chargeback_csv
from costmeter.service.reading import Store

#: The pages an owner can be shown in, with the menu's words.
LINKED_PAGES: tuple[tuple[str, str], ...] = (
    ("processes", "Show in Processes"),
    ("runs", "Show in Runs"),
    ("history", "Show in History"),
    ("advice", "Show in Advice"),
)


@runtime_checkable
class Navigator(Protocol):
    """What the page needs of the main window to open another page."""

    def page(self, key: str) -> Page: ...
    def show_page(self, key: str) -> None: ...


@runtime_checkable
class OwnerFilterable(Protocol):
    def filter_owner(
        self, key: Mapping[str, str | None] | None, footprint: OwnerFootprint | None = None
    ) -> None: ...


class WhoPaysPage(Page):
    title = "Who pays"
    key = "who-pays"
    #: A report was shown (or the empty state for it).
    loaded = Signal()
    #: An export finished: the file and the owner rows written.
    exported = Signal(str, int)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.report: ChargebackReport | None = None
        self.bucket_s: float = 3600.0
        #: The last owner sent to another page, and its footprint (tests read them).
        self.linked: tuple[str, OwnerFootprint] | None = None
        self._request_id = 0
        self._loading = False
        self._build()
        ctx.signals.config_changed.connect(lambda _c: self.reload())
        ctx.signals.theme_changed.connect(lambda _t: self.chart.apply_theme())
        ctx.signals.host_filter_changed.connect(self._host_changed)

    # -- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        bar = QHBoxLayout()
        bar.setSpacing(8)
        bar.addWidget(QLabel("By"))
        self.dim_box = self._dimension_box(with_none=False)
        bar.addWidget(self.dim_box)
        self.tag_edit = self._tag_edit()
        bar.addWidget(self.tag_edit)
        bar.addWidget(QLabel("then"))
        self.dim2_box = self._dimension_box(with_none=True)
        bar.addWidget(self.dim2_box)
        self.tag2_edit = self._tag_edit()
        bar.addWidget(self.tag2_edit)
        bar.addSpacing(12)
        self.period_box = QComboBox()
        for key, label in PERIODS:
            self.period_box.addItem(label, key)
        self.period_box.setCurrentIndex(1)
        self.period_box.currentIndexChanged.connect(lambda _i: self.reload())
        bar.addWidget(self.period_box)
        self.share_idle = QCheckBox("Share idle")
        self.share_idle.setToolTip(
            "Spread machine idle over the owners in proportion to their cost (OpenCost's "
            "shareIdle); off, idle stays a row of its own"
        )
        self.share_idle.setChecked(self.ctx.config.attribution.share_idle)
        self.share_idle.toggled.connect(lambda _on: self.reload())
        bar.addWidget(self.share_idle)
        bar.addStretch(1)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Write the table to a CSV file")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._ask_export)
        bar.addWidget(self.export_button)

        self.status = QLabel("")
        self.status.setObjectName("who-pays-status")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(placeholder-text);")

        self.model = OwnerTableModel(self)
        self.proxy = OwnerSortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setObjectName("who-pays-table")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(lambda _i: self.show_owner_in("processes"))
        self.context_menu: QMenu | None = None

        self.chart = OwnerChart()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.chart)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.empty = QLabel("")
        self.empty.setObjectName("who-pays-empty")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty.setStyleSheet("color: palette(placeholder-text); font-size: 14px;")
        self.body = QStackedWidget()
        self.body.addWidget(self.splitter)
        self.body.addWidget(self.empty)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(8)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        layout.addWidget(self.body, 1)

    def _dimension_box(self, *, with_none: bool) -> QComboBox:
        box = QComboBox()
        if with_none:
            box.addItem("—", "")
        for key, label in DIMENSION_CHOICES:
            box.addItem(label, key)
        box.currentIndexChanged.connect(lambda _i: self._dimensions_changed())
        return box

    def _tag_edit(self) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText("tag key, e.g. team")
        edit.setMaximumWidth(140)
        edit.hide()
        edit.editingFinished.connect(self.reload)
        return edit

    # -- choices -----------------------------------------------------------------------------
    def set_dimensions(self, first: str, second: str = "") -> None:
        """Choose the dimensions ("user", "tag:team"...; ``second`` "" for none) and reload."""
        for box, edit, dim in (
            (self.dim_box, self.tag_edit, first),
            (self.dim2_box, self.tag2_edit, second),
        ):
            choice = "tag:" if dim.startswith("tag:") else dim
            box.blockSignals(True)
            box.setCurrentIndex(max(0, box.findData(choice)))
            box.blockSignals(False)
            edit.setText(dim[4:] if dim.startswith("tag:") else "")
        self._dimensions_changed()

    def set_period(self, period: str) -> None:
        self.period_box.setCurrentIndex(max(0, self.period_box.findData(period)))

    def dimensions(self) -> tuple[str, ...] | None:
        """The dimensions chosen; None while a tag dimension has no key yet."""
        first = dimension_name(str(self.dim_box.currentData()), self.tag_edit.text())
        choice2 = str(self.dim2_box.currentData() or "")
        second = dimension_name(choice2, self.tag2_edit.text()) if choice2 else ""
        if first is None or second is None:
            return None
        return (first,) if not second or second == first else (first, second)

    def _dimensions_changed(self) -> None:
        self.tag_edit.setVisible(self.dim_box.currentData() == "tag:")
        self.tag2_edit.setVisible(self.dim2_box.currentData() == "tag:")
        self.reload()

    # -- Page --------------------------------------------------------------------------------
    def on_shown(self) -> None:
        self.reload()

    def has_data(self) -> bool:
        return self.report is not None and not self._loading

    def loading(self) -> bool:
        return self._loading

    def save_state(self, settings: QSettings) -> None:
        dims = self.dimensions() or ("user",)
        settings.setValue(f"{self.key}/by", ",".join(dims))
        settings.setValue(f"{self.key}/period", self.period_box.currentData())

    def restore_state(self, settings: QSettings) -> None:
        by = str(settings.value(f"{self.key}/by", "user") or "user").split(",")
        self.period_box.blockSignals(True)
        self.set_period(str(settings.value(f"{self.key}/period", "24h")))
        self.period_box.blockSignals(False)
        self.dim_box.blockSignals(True)
        self.dim2_box.blockSignals(True)
        self.set_dimensions(by[0], by[1] if len(by) > 1 else "")
        self.dim_box.blockSignals(False)
        self.dim2_box.blockSignals(False)

    # -- loading -----------------------------------------------------------------------------
    def period(self) -> tuple[float, float]:
        return period_range(str(self.period_box.currentData()), time.time())

    def reload(self) -> None:
        """Ask for the report of the choices shown (on the reader; "Loading…" until back)."""
        by = self.dimensions()
        if by is None:
            self._say("Type the tag's key (such as team) to group by a tag.")
            return
        start, end = self.period()
        bucket = self.bucket_s = bucket_for(start, end)
        config, share_idle = self.ctx.config, self.share_idle.isChecked()
        self._request_id += 1
        rid = self._request_id
        self._loading = True
        self._say("Loading…")

        def job(store: Store) -> ChargebackReport:
            return chargeback(store, config, start, end, by, share_idle=share_idle, bucket_s=bucket)

        self.ctx.reader.submit(
            "who-pays", job, lambda r: self._on_report(rid, r), lambda m: self._failed(rid, m)
        )

    def _on_report(self, rid: int, report: ChargebackReport) -> None:
        if rid != self._request_id or not alive(self):
            return  # an older answer
        self._loading = False
        self.report = report
        self.model.set_report(report)
        self.table.sortByColumn(self.model.key_columns(), Qt.SortOrder.DescendingOrder)
        header = self.table.horizontalHeader()
        keys = self.model.key_columns()
        for col in range(self.model.columnCount()):
            mode = QHeaderView.ResizeMode.Stretch if col < keys else QHeaderView.ResizeMode.Fixed
            header.setSectionResizeMode(col, mode)
            if col >= keys:
                self.table.setColumnWidth(col, 110)
        self._fit_table()
        self.export_button.setEnabled(True)
        if is_empty(report):
            text = empty_text(report.start, report.end)
            if report.total.cost > 0:  # recorded, but nobody held a GPU: say what that cost
                total = format_money(report.total.cost, report.currency)
                idle = format_money(report.idle.cost, report.currency)
                text += (
                    f"\n\nWhat was recorded cost {total}: {idle} of it idle, the rest CPU time "
                    "of processes Costmeter did not track."
                )
            self.empty.setText(text)
            self.body.setCurrentWidget(self.empty)
            self.chart.clear()
        else:
            self.body.setCurrentWidget(self.splitter)
            series = stacked_series(report, bucket_s=self.bucket_s)
            self.chart.set_series(series, self.bucket_s, report.currency)
        self._say(self._summary(report))
        self.loaded.emit()

    def _fit_table(self) -> None:
        """Give the table room for every row (at most half the page), the chart the rest."""
        rows = self.model.rowCount()
        wanted = self.table.horizontalHeader().height() + rows * 26 + 6
        total = max(self.splitter.height(), 400)
        table = min(wanted, total // 2)
        self.splitter.setSizes([table, total - table])

    def _failed(self, rid: int, message: str) -> None:
        if rid != self._request_id or not alive(self):
            return
        self._loading = False
        self._say(f"Could not work out who pays: {message}", error=True)
        self.loaded.emit()

    def _summary(self, report: ChargebackReport) -> str:
        fmt = "%Y-%m-%d %H:%M"
        span = (
            f"{time.strftime(fmt, time.localtime(report.start))} to "
            f"{time.strftime(fmt, time.localtime(report.end))}"
        )
        count = len(report.groups)
        noun = "owner" if count == 1 else "owners"
        per = "hour" if self.bucket_s <= 3600 else "day"
        idle = "idle shared over owners" if report.share_idle else "idle apart"
        text = f"{count} {noun} from {span}; bars per {per}; {idle}."
        if self.ctx.host_filter is not None:
            text += " Every host is counted here: group by Host to see one."
        if report.notes:
            text += " " + " ".join(report.notes)
        return text

    def _host_changed(self, _host: object) -> None:
        if self.report is not None and not self._loading:
            self._say(self._summary(self.report))

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        colour = "#dc2626" if error else "palette(placeholder-text)"
        self.status.setStyleSheet(f"color: {colour};")

    # -- owners to other pages ---------------------------------------------------------------
    def selected_key(self) -> Mapping[str, str | None] | None:
        row = selected_source_row(self.table, self.proxy)
        if row is None:
            return None
        picked = self.model.row(row)
        return picked.key if picked.kind == "group" else None

    def select_owner(self, key: Mapping[str, str | None]) -> bool:
        """Select the row of the owner ``key`` (tests and links)."""
        for r in range(self.proxy.rowCount()):
            source = self.proxy.mapToSource(self.proxy.index(r, 0)).row()
            if self.model.row(source).key == dict(key):
                self.table.selectRow(r)
                return True
        return False

    def _context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        key = self.selected_key()
        if key is None:
            return
        menu = QMenu(self)
        for page, words in LINKED_PAGES:
            menu.addAction(words, functools.partial(self.show_owner_in, page))
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.destroyed.connect(self._menu_closed)
        self.context_menu = menu
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def _menu_closed(self) -> None:
        self.context_menu = None

    def show_owner_in(self, page_key: str) -> None:
        """Open ``page_key`` filtered to the selected owner (its footprint read first)."""
        key = self.selected_key()
        report = self.report
        if key is None or report is None:
            return
        config, start, end = self.ctx.config, report.start, report.end
        self._say(f"Finding where {key_text(key, tuple(key))} ran…")

        def job(store: Store) -> OwnerFootprint:
            return owner_footprint(store, config, start, end, key)

        def done(footprint: OwnerFootprint) -> None:
            if alive(self):
                self._open_filtered(page_key, footprint)

        def failed(message: str) -> None:
            if alive(self):
                self._say(f"Could not find that owner's processes: {message}", error=True)

        self.ctx.reader.submit("who-pays/footprint", job, done, failed)

    def _open_filtered(self, page_key: str, footprint: OwnerFootprint) -> None:
        self.linked = (page_key, footprint)
        if self.report is not None:
            self._say(self._summary(self.report))
        window = self.window()
        if not isinstance(window, Navigator):
            return
        page = window.page(page_key)
        if isinstance(page, OwnerFilterable):
            page.filter_owner(footprint.key, footprint)
        window.show_page(page_key)

    # -- export ------------------------------------------------------------------------------
    def _ask_export(self) -> None:
        if self.report is None:
            return
        name = f"costmeter-who-pays-{'-'.join(self.report.by).replace(':', '_')}.csv"
        path, _chosen = QFileDialog.getSaveFileName(
            self, "Export who pays", str(Path.home() / name), "CSV (*.csv)"
        )
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        """Write the report shown to ``path`` (on a worker: a slow disk never blocks the window)."""
        report = self.report
        if report is None:
            return

        def job(_store: Store) -> int:
            return write_chargeback_csv(path, report)

        def done(count: int) -> None:
            if alive(self):
                self._say(f"Exported {count:,} owners to {path}.")
                self.exported.emit(str(path), count)

        def failed(message: str) -> None:
            if alive(self):
                self._say(f"Could not export: {message}", error=True)

        self.ctx.reader.submit("who-pays/export", job, done, failed)
