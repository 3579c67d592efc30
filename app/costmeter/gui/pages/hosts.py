"""The Hosts page: this machine, the remote agents and exporters, and the Prometheus sources.

The table merges the ``[hosts.NAME]`` and ``[sources.NAME]`` tables of the configuration, the
``remote_hosts`` table (read on the reader thread every few seconds while the page is shown)
and, when this window's monitor collects, its in-memory statuses. Add, Edit, Remove and
Enable/Disable write the configuration through ``config_writer`` on a TaskRunner worker, then
hand the new configuration to the context, which passes the host list on to the running
collector (sources are read by the recorder from its next start).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QHideEvent, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from costmeter.config import Config, SourceConfig
from costmeter.gui.context import AppContext
from costmeter.gui.host_status import (
    BACKFILLING,
    CONNECTED,
    DISABLED,
    NOT_RECORDING,
    RECORDING,
    HostRow,
    StatusRow,
    ago,
    from_collector,
    lag_text,
    local_row,
    merge_rows,
    read_status_table,
)
from costmeter.gui.pages.base import Page
from costmeter.gui.tasks import TaskRunner, alive
from costmeter.gui.widgets.host_dialog import HostDialog
from costmeter.gui.widgets.source_dialog import SourceDialog
from costmeter.service.host_edit import remove, save_draft, set_enabled
from costmeter.service.reading import Store
from costmeter.service.source_edit import delete_source, save_source, set_source_enabled
from costmeter.service.tokens import default_token_dir, keyring_available

COLUMNS = ("Host", "URL", "Kind", "State", "Last contact", "Lag", "Newest sample", "Error")
COL_URL, COL_KIND, COL_STATE = 1, 2, 3
COL_ERROR = 7
#: A newest sample older than this shows its date too.
DATED_S = 20 * 3600
SOURCE_KIND_TEXT = "Prometheus source"
#: The table is read again this often while the page is shown.
REFRESH_MS = 2000

_STATE_COLOURS = {
    RECORDING: "#16a34a",
    CONNECTED: "#16a34a",
    BACKFILLING: "#2563eb",
    NOT_RECORDING: "#d97706",
    DISABLED: "#9ca3af",
}


def state_colour(state: str) -> str:
    """Green when data flows, blue while catching up, red when down, grey when unknown."""
    if state in _STATE_COLOURS:
        return _STATE_COLOURS[state]
    return "#dc2626" if state in ("disconnected", "error") else "#9ca3af"


def _dot(colour: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(colour))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(1, 1, 10, 10)
    painter.end()
    return QIcon(pixmap)


def newest_text(ts: float | None, now: float) -> str:
    """The newest sample's time; with its date when it is older than about a day."""
    if ts is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M" if now - ts > DATED_S else "%H:%M:%S"
    return time.strftime(fmt, time.localtime(ts))


class HostsPage(Page):
    title = "Hosts"
    key = "hosts"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.tasks = TaskRunner(workers=2, parent=self)  # probes and file writes
        self.destroyed.connect(self.tasks.shutdown)
        self.rows: list[HostRow] = []
        self._table_rows: list[StatusRow] = []
        self._loaded = False
        self._dots: dict[str, QIcon] = {}
        #: The open add/edit dialog, if any (tests fill it in).
        self.dialog: HostDialog | None = None
        self.source_dialog: SourceDialog | None = None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(8)
        intro = QLabel(
            "Machines whose GPUs this window records: this one, Costmeter agents "
            "(costmeter agent), Prometheus exporters such as dcgm-exporter, and Prometheus "
            "servers (sources) whose stored history of many hosts is read back and followed. "
            "Their samples go into the same database, so every page can show one host or all."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        bar = QHBoxLayout()
        self.add_button = QPushButton("Add host…")
        self.add_source_button = QPushButton("Add Prometheus source…")
        self.edit_button = QPushButton("Edit…")
        self.toggle_button = QPushButton("Disable")
        self.remove_button = QPushButton("Remove…")
        self.add_button.clicked.connect(self.add_host)
        self.add_source_button.clicked.connect(self.add_source)
        self.edit_button.clicked.connect(self.edit_selected)
        self.toggle_button.clicked.connect(self.toggle_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        for button in (
            self.add_button,
            self.add_source_button,
            self.edit_button,
            self.toggle_button,
            self.remove_button,
        ):
            bar.addWidget(button)
        bar.addStretch(1)
        layout.addLayout(bar)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((150, 180, 130, 140, 90, 60, 130)):
            self.table.setColumnWidth(col, width)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.doubleClicked.connect(lambda _i: self.edit_selected())
        layout.addWidget(self.table, 1)

        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.note)
        self.token_note = QLabel(self._token_place())
        self.token_note.setWordWrap(True)
        self.token_note.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.token_note)

        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        ctx.signals.config_changed.connect(self._on_config_changed)
        self._selection_changed()

    def _on_config_changed(self, _config: object) -> None:
        self.show_rows()

    @staticmethod
    def _token_place() -> str:
        if keyring_available():
            return "Tokens you enter are stored in the OS keyring, never in the configuration file."
        return (
            "No OS keyring is available here, so tokens you enter are stored in "
            f"{default_token_dir()}, in files only you can read (mode 0600); never in the "
            "configuration file."
        )

    # -- Page --------------------------------------------------------------------------------
    def on_shown(self) -> None:
        self.refresh()
        self._timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def has_data(self) -> bool:
        return self._loaded

    def on_live(self) -> None:
        if self._loaded:
            self.show_rows()

    # -- data --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the remote_hosts table (reader thread), then draw."""

        def job(store: Store) -> list[StatusRow]:
            return read_status_table(store.path)

        self.ctx.reader.submit("hosts-status", job, self._got_table)

    def _got_table(self, rows: list[StatusRow]) -> None:
        if not alive(self):
            return
        self._table_rows = rows
        self._loaded = True
        self.show_rows()

    def collector_statuses(self) -> list[StatusRow]:
        """The in-memory statuses of this window's collector, when it runs one."""
        bridge = self.ctx.monitor_bridge
        return from_collector(bridge.remote_statuses()) if bridge is not None else []

    def current_rows(self) -> list[HostRow]:
        now = time.time()
        live = self.ctx.live
        newest = live.latest.ts if live.latest is not None else None
        local = local_row(live.local_host or socket.gethostname(), newest, self._interval(), now)
        remote = merge_rows(self.ctx.config, self._table_rows, self.collector_statuses(), now=now)
        return [local, *remote]

    def _interval(self) -> float:
        return self.ctx.config.interval_s

    def show_rows(self) -> None:
        selected = self.selected()
        self.rows = self.current_rows()
        now = time.time()
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            name = row.name + (" (this machine)" if row.local else "")
            kind = SOURCE_KIND_TEXT if row.is_source else row.kind
            kind = kind if row.configured or row.local else f"{kind} (command line)"
            filling = row.progress is not None  # its sentence is progress, not an error
            values = (
                name,
                row.url,
                kind,
                row.state_text,
                ago(row.last_contact, now) if row.enabled else "—",
                lag_text(row.lag_s),
                newest_text(row.newest_sample, now),
                "" if filling else row.error or "",
            )
            for c, text in enumerate(values):
                item = self.table.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(r, c, item)
                if item.text() != text:
                    item.setText(text)
                if c == COL_STATE:
                    colour = state_colour(row.state)
                    icon = self._dots.get(colour) or self._dots.setdefault(colour, _dot(colour))
                    item.setIcon(icon)
                    item.setToolTip(row.error or "" if filling else "")
                if c in (COL_URL, COL_KIND, COL_ERROR):  # may be cut short
                    item.setToolTip(text)
        if selected is not None:
            self.select(selected.name)
        self._selection_changed()

    # -- selection ---------------------------------------------------------------------------
    def selected(self) -> HostRow | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or not (0 <= rows[0].row() < len(self.rows)):
            return None
        return self.rows[rows[0].row()]

    def select(self, name: str) -> bool:
        for r, row in enumerate(self.rows):
            if row.name == name:
                if self.selected() is not row:
                    self.table.selectRow(r)
                return True
        return False

    def _selection_changed(self) -> None:
        row = self.selected()
        editable = row is not None and row.configured
        if row is not None and row.progress is not None:
            self.note.setStyleSheet("")
            self.note.setText(f"{row.name}: {row.error}")
        for button in (self.edit_button, self.remove_button, self.toggle_button):
            button.setEnabled(editable)
        self.toggle_button.setText("Enable" if row is not None and not row.enabled else "Disable")
        if row is not None and not row.local and not row.configured:
            self.note.setText(
                f"{row.name} is recorded by a costmeter record --remote command, not by this "
                "configuration: it cannot be edited here."
            )

    # -- actions -----------------------------------------------------------------------------
    def add_host(self) -> HostDialog:
        return self._open_dialog(None)

    def edit_selected(self) -> HostDialog | SourceDialog | None:
        row = self.selected()
        if row is not None and row.source is not None:
            return self._open_source_dialog(row.source)
        if row is None or row.config is None:
            return None
        return self._open_dialog(row)

    def add_source(self) -> SourceDialog:
        return self._open_source_dialog(None)

    def _open_source_dialog(self, source: SourceConfig | None) -> SourceDialog:
        path = self.ctx.config_path
        config = self.ctx.config
        dialog = SourceDialog(
            self.tasks,
            lambda draft: save_source(path, draft),
            taken=[s.name for s in config.sources],
            hosts=[h.name for h in config.hosts],
            original=source,
            parent=self,
        )
        dialog.accepted.connect(lambda: self._dialog_saved(dialog))
        dialog.finished.connect(lambda _r: self._source_dialog_closed(dialog))
        self.source_dialog = dialog
        dialog.open()
        return dialog

    def _source_dialog_closed(self, dialog: SourceDialog) -> None:
        if self.source_dialog is dialog:
            self.source_dialog = None
        dialog.deleteLater()

    def _open_dialog(self, row: HostRow | None) -> HostDialog:
        path = self.ctx.config_path
        dialog = HostDialog(
            self.tasks,
            lambda draft: save_draft(path, draft),
            taken=[h.name for h in self.ctx.config.hosts],
            local_name=self.ctx.live.local_host or socket.gethostname(),
            original=row.config if row is not None else None,
            parent=self,
        )
        dialog.accepted.connect(lambda: self._dialog_saved(dialog))
        dialog.finished.connect(lambda _r: self._dialog_closed(dialog))
        self.dialog = dialog
        dialog.open()  # window-modal, without a nested event loop
        return dialog

    def _dialog_saved(self, dialog: HostDialog | SourceDialog) -> None:
        value = dialog.result_value
        if isinstance(value, tuple):
            self._applied(value)

    def _dialog_closed(self, dialog: HostDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    def toggle_selected(self) -> None:
        row = self.selected()
        if row is not None and row.source is not None:
            source, path = row.source, self.ctx.config_path
            self._run("host-toggle", lambda: set_source_enabled(path, source, not source.enabled))
            return
        if row is None or row.config is None:
            return
        host, path = row.config, self.ctx.config_path
        self._run("host-toggle", lambda: set_enabled(path, host, not host.enabled))

    def remove_selected(self, confirm: bool = True) -> None:
        row = self.selected()
        if row is not None and row.source is not None:
            self._remove_source(row.source, confirm)
            return
        if row is None or row.config is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Remove host",
                f"Remove {row.name} ({row.url})?\n\nCostmeter stops recording it and forgets "
                "its token; the samples already recorded stay in the database.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        host, path = row.config, self.ctx.config_path
        self._run("host-remove", lambda: remove(path, host))

    def _remove_source(self, source: SourceConfig, confirm: bool) -> None:
        if confirm:
            answer = QMessageBox.question(
                self,
                "Remove source",
                f"Remove the source {source.name} ({source.url})?\n\nCostmeter stops reading "
                "it; the history already read stays in the database, and its token file is "
                "left where it is.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        path = self.ctx.config_path
        self._run("host-remove", lambda: delete_source(path, source))

    def _run(self, key: str, work: Callable[[], tuple[Config, str]]) -> None:
        self.tasks.submit(key, work, self._applied, self._failed)

    def _applied(self, result: tuple[Config, str]) -> None:
        if not alive(self):
            return
        config, sentence = result
        self.ctx.set_config(config)
        self.note.setStyleSheet("")
        self.note.setText(sentence)
        self.refresh()

    def _failed(self, message: str) -> None:
        if alive(self):
            self.note.setStyleSheet("color: #b91c1c;")
            self.note.setText(message)
