"""The Runs page: this window's queue live and earlier runs from the database, a run's output,
cancel, and the launch dialog.

Rows come from three places (see ``models/run_model.merge``): the database, read on the store
reader's thread every few seconds and after every run event; this window's queue, whose events
the run manager forwards to the GUI thread; and the live figures of running runs (cost so far,
ETA, cost to complete), which ``RunService.live`` works out on a worker thread. Runs another
Costmeter process launched (``costmeter run`` into the same database) get their live figures
from the reader; their rows say so when no process watches them any more.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtGui import QHideEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from costmeter.gui.context import AppContext
from costmeter.gui.models.run_model import (
    COL_ID,
    RunSortProxy,
    RunTableModel,
    RunView,
    merge,
)
from costmeter.gui.models.selection import select_first, selected_source_row
from costmeter.gui.pages.base import Page
from costmeter.gui.run_manager import GRACE_S, Launched, RunManager
from costmeter.gui.tasks import alive
from costmeter.gui.who_pays_data import OwnerFootprint
from costmeter.gui.widgets.launch_dialog import LaunchDialog
from costmeter.gui.widgets.log_view import LogView
from costmeter.gui.widgets.owner_filter_bar import OwnerFilterBar
from costmeter.gui.widgets.whatif_dialog import WhatIfDialog
from costmeter.runs.events import EventKind, RunEvent
from costmeter.service.reading import RunRow, Store
from costmeter.service.run_costs import LiveRun
from costmeter.service.run_listing import load_runs
from costmeter.service.whatif import WhatIf, whatif_run

#: Runs read from the database (newest first).
ROW_LIMIT = 500
#: Live figures and the database are read this often while the page is shown.
POLL_MS = 2000


class RunsPage(Page):
    title = "Runs"
    key = "runs"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        if ctx.runs is None:
            ctx.runs = RunManager(ctx)
        self.manager: RunManager = ctx.runs
        self._rows: dict[int, RunRow] = {}
        self._live: dict[int, LiveRun] = {}
        self._notes: dict[int, str] = {}
        self._loaded = False
        self._hostname = socket.gethostname()
        self.dialog: LaunchDialog | None = None
        #: Only these runs (those of an owner chosen on the Who pays page), or None for all.
        self.owner_runs: frozenset[int] | None = None
        self.model = RunTableModel(self)
        self.proxy = RunSortProxy(self)
        self.proxy.setSourceModel(self.model)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(8)
        bar = QHBoxLayout()
        self.new_button = QPushButton("New run…")
        self.new_button.setToolTip("Launch a command or a sweep (Ctrl+N)")
        self.new_button.clicked.connect(self.open_launch_dialog)
        bar.addWidget(self.new_button)
        self.cancel_button = QPushButton("Cancel run…")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_selected)
        bar.addWidget(self.cancel_button)
        self.whatif_button = QPushButton("What if on another GPU…")
        self.whatif_button.setEnabled(False)
        self.whatif_button.setToolTip(
            "Estimate the selected finished run's duration and cost on every priced GPU model"
        )
        self.whatif_button.clicked.connect(self.open_whatif)
        bar.addWidget(self.whatif_button)
        self.whatif: WhatIfDialog | None = None
        self.count = QLabel("")
        self.count.setStyleSheet("color: palette(placeholder-text);")
        bar.addWidget(self.count)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.owner_bar = OwnerFilterBar("run")
        self.owner_bar.cleared.connect(lambda: self.filter_owner(None))
        layout.addWidget(self.owner_bar)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result.hide()
        layout.addWidget(self.result)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_ID, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        widths = (56, 190, 64, 100, 52, 78, 70, 120, 70, 96)
        for col, width in enumerate(widths):
            self.table.setColumnWidth(col, width)
        header.setMinimumSectionSize(40)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        self.empty = QLabel(
            "No runs yet. Start one with New run… (Ctrl+N), or from a terminal: "
            "costmeter run -- python train.py"
        )
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: palette(placeholder-text);")
        self.empty.hide()
        self.log = LogView(self.manager.read_log)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.table, 1)
        top_layout.addWidget(self.empty)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.log)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout.addWidget(self.splitter, 1)

        shortcut = QShortcut(QKeySequence(QKeySequence.StandardKey.New), self)
        shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut.activated.connect(self.open_launch_dialog)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._on_poll)
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self.model.tick)
        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(250)
        self._soon.timeout.connect(self.refresh)
        self.manager.run_event.connect(self._on_event)
        ctx.signals.host_filter_changed.connect(self._on_host_filter)
        self.manager.launched.connect(self._on_launched)
        self.manager.message.connect(self._on_message)
        self._update_count()

    # -- showing -------------------------------------------------------------------------------
    def on_shown(self) -> None:
        self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._poll.start()
        self._clock.start()
        self.log.resume()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._poll.stop()
        self._clock.stop()
        self.log.pause()

    def has_data(self) -> bool:
        return self._loaded

    def _on_poll(self) -> None:
        self.refresh()
        self.poll_live()

    # -- data ----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the runs from the database (on the reader thread)."""
        ours = frozenset(self.manager.runs)
        pricing = self.ctx.pricing()
        hostname = self._hostname

        def job(store: Store) -> tuple[list[RunRow], dict[int, LiveRun], dict[int, str]]:
            return load_runs(store, ROW_LIMIT, ours, pricing, hostname)

        self.ctx.reader.submit("runs-list", job, self._loaded_rows)

    def _loaded_rows(self, result: tuple[list[RunRow], dict[int, LiveRun], dict[int, str]]) -> None:
        if not alive(self):
            return
        rows, others_live, notes = result
        self._rows = {r.id: r for r in rows}
        for run_id in list(self._live):
            if run_id not in self.manager.runs:
                del self._live[run_id]
        self._live.update(others_live)
        self._notes = notes
        first_load = not self._loaded
        self._loaded = True
        self.rebuild()
        if first_load and self.selected() is None and self.proxy.rowCount():
            self.table.selectRow(0)  # the newest run, with its output below

    def poll_live(self) -> None:
        """Ask for the live figures of this window's running runs (worker thread)."""
        ids = [info.key for info in self.manager.active() if info.started is not None]
        if ids:
            self.manager.live(ids, self._got_live)

    def _got_live(self, figures: dict[int, LiveRun]) -> None:
        if not alive(self):
            return
        self._live.update(figures)
        self.rebuild()

    def _on_host_filter(self, _host: object) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        currency = self.ctx.currency
        ids = set(self._rows) | set(self.manager.runs)
        ids = {i for i in ids if self._on_chosen_host(i)}
        if self.owner_runs is not None:
            ids &= self.owner_runs
        views = [
            merge(
                self._rows.get(i),
                self.manager.runs.get(i),
                self._live.get(i),
                currency,
                note=self._notes.get(i, ""),
            )
            for i in ids
        ]
        self.model.set_rows(views)
        self._update_count()
        self._selection_changed()

    def filter_owner(
        self, key: Mapping[str, str | None] | None, footprint: OwnerFootprint | None = None
    ) -> None:
        """Show only the runs of the owner ``key``: those its processes belonged to in the
        period (``footprint``, from the Who pays page), or the run itself for a ``run`` key;
        None shows every run again."""
        runs: set[int] = set(footprint.run_ids) if footprint is not None else set()
        run = (key or {}).get("run")
        if run is not None and run.isdigit():
            runs.add(int(run))
        self.owner_runs = frozenset(runs) if key else None
        if key:
            count = len(runs)
            self.owner_bar.show_owner(
                key, f"{count} run{'s' if count != 1 else ''}" if count else "no Costmeter run"
            )
        else:
            self.owner_bar.show_owner(None)
        self.rebuild()

    def _on_chosen_host(self, run_id: int) -> bool:
        """Whether the run's samples are of the host chosen (runs launched here: this one)."""
        row = self._rows.get(run_id)
        host = row.host if row is not None and row.host else self._hostname
        return self.ctx.shows_host(host)

    def _update_count(self) -> None:
        total = self.model.rowCount()
        going = sum(1 for v in self.model.rows() if not v.finished)
        text = f"{total} run{'s' if total != 1 else ''}"
        if going:
            text += f", {going} going"
        self.count.setText(text)
        self.empty.setVisible(self._loaded and total == 0)

    def _on_event(self, event: RunEvent) -> None:
        self.rebuild()
        if event.kind != EventKind.OUTPUT:
            self._soon.start()
        info = event.run
        if event.kind == EventKind.FINISHED:
            word = {"succeeded": "succeeded", "failed": "failed", "cancelled": "was cancelled"}
            text = f"Run {info.key} ({info.name}) {word.get(info.state.value, info.state.value)}"
            if info.exit_code is not None:
                text += f" with exit code {info.exit_code}"
            text += f": {info.message}" if info.message else "."
            self._say(text)
        elif event.kind == EventKind.COSTED:
            self.poll_live()

    def _on_launched(self, launched: Launched) -> None:
        if not launched.ids:
            self.refresh()
            return
        first = launched.ids[0]
        if any(self.manager.runs[i].state.finished for i in launched.ids if i in self.manager.runs):
            pass  # it ended already (it could not start): its end was said
        elif len(launched.ids) == 1:
            self._say(f"Queued run {first}.")
        else:
            self._say(f"Queued {len(launched.ids)} runs of the sweep {launched.sweep}.")
        self.rebuild()
        self.select_run(first)
        self.refresh()

    def _on_message(self, text: str, level: str) -> None:
        self._say(text, error=level == "error")
        self.refresh()

    def _say(self, text: str, *, error: bool = False) -> None:
        self.result.setText(text)
        self.result.setStyleSheet("color: #dc2626;" if error else "")
        self.result.show()
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(text, 15000)

    # -- selection -----------------------------------------------------------------------------
    def selected(self) -> RunView | None:
        row = selected_source_row(self.table, self.proxy)
        return None if row is None else self.model.row(row)

    def select_run(self, run_id: int) -> bool:
        return select_first(self.table, self.proxy, lambda r: self.model.row(r).id == run_id)

    def _selection_changed(self) -> None:
        view = self.selected()
        self.cancel_button.setEnabled(view is not None and view.ours and not view.finished)
        self.whatif_button.setEnabled(view is not None and view.finished)
        if view is not None and not view.ours and not view.finished:
            self.cancel_button.setToolTip(
                "This run was launched by another Costmeter process: cancel it there."
            )
        else:
            self.cancel_button.setToolTip("Stop the selected run (asks first)")
        if view is None:
            self.log.follow(None)
        else:
            row = self._rows.get(view.id)
            parent = f", relaunched from run {row.parent_id}" if row and row.parent_id else ""
            self.log.follow(view.id, f"Output of run {view.id} ({view.name}{parent})")
            if view.finished:
                self.log.resume()  # read to the end once

    # -- actions -------------------------------------------------------------------------------
    def open_whatif(self) -> WhatIfDialog | None:
        """The selected finished run estimated on every priced GPU (read on the reader thread)."""
        view = self.selected()
        if view is None or not view.finished:
            return None
        if self.whatif is not None:
            self.whatif.close()
        self.whatif = WhatIfDialog(view.id, view.name, self._ask_whatif, self)
        self.whatif.show()
        self.whatif.ask()
        return self.whatif

    def _ask_whatif(self, run_id: int, precision: str) -> None:
        config = self.ctx.config
        dialog = self.whatif

        def job(store: Store) -> WhatIf:
            return whatif_run(store, config, run_id, precision)

        def done(result: WhatIf) -> None:
            if dialog is not None and alive(dialog):
                dialog.show_result(result)

        def failed(sentence: str) -> None:
            if dialog is not None and alive(dialog):
                dialog.show_error(sentence)

        self.ctx.reader.submit("runs-whatif", job, done, failed)

    def open_launch_dialog(self) -> LaunchDialog | None:
        if not self.isVisible():
            return None
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.raise_()
            return self.dialog
        dialog = LaunchDialog(self.ctx, self.manager, self)
        dialog.accepted.connect(lambda: self._launch(dialog))
        dialog.finished.connect(lambda _code: self._dialog_closed(dialog))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _dialog_closed(self, dialog: LaunchDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    def _launch(self, dialog: LaunchDialog) -> None:
        request = dialog.request
        if request is None:
            return
        n = len(request.specs)
        self._say(f"Launching {n} run{'s' if n != 1 else ''}…")
        self.manager.launch(request)

    def cancel_selected(self) -> str | None:
        """Ask, then cancel the selected run; returns the sentence shown (None: not asked)."""
        view = self.selected()
        if view is None or not view.ours or view.finished:
            return None
        answer = QMessageBox.question(
            self,
            "Cancel run",
            f"Cancel run {view.id} ({view.name})?\n\nIt is sent SIGTERM, and SIGKILL if it has "
            f"not stopped {GRACE_S:g} s later. Its cost so far is still recorded.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return None
        run_id, name = view.id, view.name

        def done(asked: bool) -> None:
            if not alive(self):
                return
            if asked:
                self._say(f"Cancelling run {run_id} ({name})…")
            else:
                self._say(f"Run {run_id} ({name}) had already finished; nothing to cancel.")

        self.manager.cancel(run_id, done)
        text = f"Asked run {run_id} ({name}) to stop."
        self._say(text)
        return text

    # -- persistence ---------------------------------------------------------------------------
    def save_state(self, settings: QSettings) -> None:
        settings.setValue(f"{self.key}/header", self.table.horizontalHeader().saveState())
        settings.setValue(f"{self.key}/splitter", self.splitter.saveState())

    def restore_state(self, settings: QSettings) -> None:
        state = settings.value(f"{self.key}/header")
        if isinstance(state, QByteArray):
            self.table.horizontalHeader().restoreState(state)
        split = settings.value(f"{self.key}/splitter")
        if isinstance(split, QByteArray):
            self.splitter.restoreState(split)
