"""The Processes page: who holds the GPUs, what they use on the host, and a way to stop them.

The table is rebuilt from ``ctx.live.latest`` on every live update, in place (see
``ProcessTableModel.set_rows``), so sorting and selection survive. Terminating goes through the
Qt-free ``costmeter.service.processes.terminate`` after a confirmation naming PID and command; it
sends the signal and returns at once (the next sample shows whether the process exited).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from PySide6.QtCore import QByteArray, QPoint, QSettings, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
)

from costmeter.core import Tick
from costmeter.gui.context import AppContext
from costmeter.gui.models.process_model import (
    COL_COMMAND,
    COL_GPU_MEM,
    OWNER_FILTER_DIMENSIONS,
    ProcessFilterProxy,
    ProcessRow,
    ProcessTableModel,
    rows_from_tick,
)
from costmeter.gui.models.selection import select_first, selected_source_row
from costmeter.gui.pages.base import Page
from costmeter.gui.who_pays_data import OwnerFootprint
from costmeter.gui.widgets.owner_filter_bar import owner_words
from costmeter.service.processes import refusal, terminate
from costmeter.service.reading import Store, unfinished_run_names

#: The runs other Costmeter processes launched are read from the database this often.
RUN_NAMES_EVERY_S = 5.0

#: Long command lines are cut to this many characters in the confirmation.
COMMAND_IN_QUESTION = 80


def _short(command: str, limit: int = COMMAND_IN_QUESTION) -> str:
    return command if len(command) <= limit else command[: limit - 1] + "…"


class ProcessesPage(Page):
    title = "Processes"
    key = "processes"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.model = ProcessTableModel(self)
        self.proxy = ProcessFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self._last_tick_ts: float | None = None
        #: PID -> run name of unfinished runs in the database (any launcher).
        self._db_runs: dict[int, str] = {}
        self._db_runs_read = 0.0
        #: The open context menu, if any (it deletes itself when closed).
        self.context_menu: QMenu | None = None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(8)
        bar = QHBoxLayout()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by command, user, job, container or PID")
        self.filter.setClearButtonEnabled(True)
        self.filter.setMaximumWidth(420)
        self.filter.textChanged.connect(self._filter_changed)
        bar.addWidget(self.filter, 1)
        self.count = QLabel("")
        self.count.setStyleSheet("color: palette(placeholder-text);")
        bar.addWidget(self.count)
        self.owner_note = QLabel("")
        self.owner_note.setObjectName("owner-filter")
        self.owner_note.hide()
        bar.addWidget(self.owner_note)
        self.owner_clear = QPushButton("Show every owner")
        self.owner_clear.setToolTip("Drop the owner chosen on the Who pays page")
        self.owner_clear.clicked.connect(lambda: self.filter_owner(None))
        self.owner_clear.hide()
        bar.addWidget(self.owner_clear)
        bar.addStretch(1)
        self.terminate_button = QPushButton("Terminate…")
        self.terminate_button.setToolTip("Send SIGTERM to the selected process (asks first)")
        self.terminate_button.setEnabled(False)
        self.terminate_button.clicked.connect(self.terminate_selected)
        bar.addWidget(self.terminate_button)
        layout.addLayout(bar)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_GPU_MEM, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_COMMAND, QHeaderView.ResizeMode.Stretch)
        for col, width in enumerate((80, 90, 0, 50, 95, 55, 65, 80, 80, 70, 110)):
            if width:
                self.table.setColumnWidth(col, width)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        layout.addWidget(self.table, 1)

        self.empty = QLabel("")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.empty)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.result)
        self._update_count()

    # -- live --------------------------------------------------------------------------------
    def shown_tick(self) -> Tick | None:
        """This machine's tick, or the chosen remote host's (All hosts: this machine's, whose
        processes are the ones that can be read and terminated here)."""
        host = self.ctx.host_filter
        live = self.ctx.live
        return live.latest if host is None or live.is_local(host) else live.tick_for(host)

    def shows_remote(self) -> bool:
        return self.ctx.host_filter is not None and not self.ctx.live.is_local(self.ctx.host_filter)

    def on_live(self) -> None:
        tick = self.shown_tick()
        if tick is not None and tick.ts == self._last_tick_ts:
            return
        self._last_tick_ts = tick.ts if tick is not None else None
        names = {} if self.shows_remote() else self.run_names()  # PIDs here mean this machine
        self.model.set_rows(rows_from_tick(tick, names))
        self._update_count()
        self._selection_changed()

    def has_data(self) -> bool:
        return self.ctx.live.latest is not None

    def run_names(self) -> dict[int, str]:
        """PID -> run name: this window's live runs, and unfinished runs in the database."""
        if time.monotonic() - self._db_runs_read > RUN_NAMES_EVERY_S:
            self._db_runs_read = time.monotonic()

            def job(store: Store) -> dict[int, str]:
                return unfinished_run_names(store)

            self.ctx.reader.submit("process-run-names", job, self._got_run_names)
        names = dict(self._db_runs)
        if self.ctx.runs is not None:
            names.update(self.ctx.runs.pid_names())
        return names

    def _got_run_names(self, names: dict[int, str]) -> None:
        self._db_runs = names

    def _filter_changed(self, text: str) -> None:
        self.proxy.set_filter_text(text)
        self._update_count()

    def filter_owner(
        self, key: Mapping[str, str | None] | None, footprint: OwnerFootprint | None = None
    ) -> None:
        """Show only the processes of the owner ``key`` (dimension -> value, as the Who pays
        page names owners); None shows every owner again. Rows are matched on their own owners;
        for what a process does not tell (run, tag, project, host) the ``footprint``'s PIDs on
        the host shown are kept."""
        key = dict(key or {})
        usable = {d: v for d, v in key.items() if d in OWNER_FILTER_DIMENSIONS}
        pids: frozenset[int] | None = None
        if key and len(usable) < len(key) and footprint is not None:
            tick = self.shown_tick()
            host = tick.host if tick is not None else None
            pids = frozenset(pid for h, pid in footprint.pids if host is None or h == host)
        self.proxy.set_owner_filter(usable or None, pids)
        if usable or pids is not None:
            self.owner_note.setText(f"Owner: {owner_words(key)}")
        elif key:
            names = ", ".join(key)
            self.owner_note.setText(f"Processes do not tell their {names}: every owner shown")
        self.owner_note.setVisible(bool(key))
        self.owner_clear.setVisible(bool(key))
        self._update_count()

    def _update_count(self) -> None:
        total, shown = self.model.rowCount(), self.proxy.rowCount()
        noun = "process" if total == 1 else "processes"
        self.count.setText(
            f"{total} {noun}" if shown == total else f"{shown} of {total} {noun} shown"
        )
        if self.ctx.live.latest is None:
            self.empty.setText("Waiting for the first sample…")
        elif total == 0:
            self.empty.setText(
                "No process is using a GPU right now. Processes appear here as soon as one "
                "allocates GPU memory."
            )
        elif shown == 0 and self.proxy.owner_filter is not None and not self.filter.text().strip():
            self.empty.setText(
                "No process of this owner is on a GPU right now (the Who pays page counts the "
                "whole period)."
            )
        elif shown == 0:
            self.empty.setText(f"No process matches “{self.filter.text().strip()}”.")
        else:
            self.empty.setText("")
        self.empty.setVisible(bool(self.empty.text()))

    # -- selection and terminating -----------------------------------------------------------
    def selected_row(self) -> ProcessRow | None:
        row = selected_source_row(self.table, self.proxy)
        return None if row is None else self.model.row(row)

    def select_pid(self, pid: int) -> bool:
        """Select the row of ``pid`` (used by tests and by links from other pages)."""
        return select_first(self.table, self.proxy, lambda r: self.model.row(r).pid == pid)

    def _selection_changed(self) -> None:
        remote = self.shows_remote()
        self.terminate_button.setEnabled(self.selected_row() is not None and not remote)
        self.terminate_button.setToolTip(
            "Only processes on this machine can be terminated from here"
            if remote
            else "Send SIGTERM to the selected process (asks first)"
        )

    def _context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        row = self.selected_row()
        if row is None:
            return
        menu = QMenu(self)
        if not self.shows_remote():
            menu.addAction(f"Terminate PID {row.pid}…", self.terminate_selected)
        menu.addAction("Copy PID", lambda: QGuiApplication.clipboard().setText(str(row.pid)))
        if row.command:
            menu.addAction("Copy command", lambda: QGuiApplication.clipboard().setText(row.command))
        # popup, not exec: no nested event loop, so live updates go on while the menu is open.
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.destroyed.connect(self._menu_closed)
        self.context_menu = menu
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def _menu_closed(self) -> None:
        self.context_menu = None

    def terminate_selected(self) -> str | None:
        """Ask, then terminate the selected process; returns the sentence shown (None: nothing
        was selected or the user said no)."""
        row = self.selected_row()
        if row is None or self.shows_remote():
            return None
        refused = refusal(row.pid)
        if refused is None:
            answer = QMessageBox.question(
                self,
                "Terminate process",
                f"Send SIGTERM to PID {row.pid} ({_short(row.label)})?\n\n"
                "The process is asked to exit; unsaved work in it may be lost.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return None
            message = terminate(row.pid, row.create_time)
        else:
            message = refused
        self._show_result(message)
        return message

    def _show_result(self, message: str) -> None:
        self.result.setText(message)
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(message, 15000)

    # -- persistence -------------------------------------------------------------------------
    def save_state(self, settings: QSettings) -> None:
        settings.setValue(f"{self.key}/header", self.table.horizontalHeader().saveState())

    def restore_state(self, settings: QSettings) -> None:
        state = settings.value(f"{self.key}/header")
        if isinstance(state, QByteArray):
            self.table.horizontalHeader().restoreState(state)
