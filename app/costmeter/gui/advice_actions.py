"""What "Apply" on an advice card does: launch the run again with the change (the launch dialog,
prefilled, for the user to confirm), open the compression dialog, open Settings, or delete the
superseded checkpoint files listed (each shown in a confirmation first).

The relaunch reads the run's row on the store reader's thread, builds the form with
``advice_apply.relaunch_plan`` and opens ``LaunchDialog`` with it; the runs it launches record the
original as their ``parent_id``.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from costmeter.advice.model import Recommendation
from costmeter.advice.rules.storage import size_text
from costmeter.compress import ServingPrice
from costmeter.gui.context import AppContext
from costmeter.gui.run_manager import Launched, RunManager
from costmeter.gui.tasks import alive
from costmeter.gui.widgets.launch_dialog import LaunchDialog
from costmeter.service.advice_apply import RelaunchPlan, plan_relaunch, plan_sweep
from costmeter.service.checkpoint_apply import (
    DeletionPlan,
    Outcome,
    delete_listed,
    deletion_from_changes,
)
from costmeter.service.reading import Store
from costmeter.service.run_launch import LaunchRequest

#: The module and function that open the compression dialog (imported on first use).
COMPRESS_MODULE = "costmeter.gui.widgets.compress_dialog"
COMPRESS_FUNCTION = "open_compress_dialog"


class AdviceActions(QObject):
    #: A sentence for the user and its level ("info", "warning" or "error").
    message = Signal(str, str)
    #: A relaunch dialog opened (the ``LaunchDialog``).
    dialog_opened = Signal(object)
    #: Child runs were queued: (their ids, their parents' ids), once every launch answered.
    relaunched = Signal(object, object)
    #: Listed files were deleted after the user confirmed (the ``Outcome`` of each).
    files_deleted = Signal(object)

    def __init__(self, ctx: AppContext, page: QWidget) -> None:
        super().__init__(page)
        self.ctx = ctx
        self.page = page
        #: The open relaunch dialog, and the compression dialog last opened.
        self.dialog: LaunchDialog | None = None
        self.compress_dialog: Any = None
        self._manager: RunManager | None = None
        #: Launches of ours not answered yet, and what the answered ones gave (ids, parents).
        self._awaiting = 0
        self._children: list[int] = []
        self._parents: list[int] = []

    def manager(self) -> RunManager:
        """The window's run manager (made here when no page has made one yet)."""
        if self.ctx.runs is None:
            self.ctx.runs = RunManager(self.ctx)
        manager = self.ctx.runs
        if manager is not self._manager:
            self._manager = manager
            manager.launched.connect(self._launched)
            manager.message.connect(self._manager_message)
        return manager

    def apply(self, rec: Recommendation) -> None:
        kind = rec.action.kind
        if kind == "relaunch":
            self.relaunch(rec)
        elif kind == "compress":
            self.compress(rec)
        elif kind == "settings":
            self.open_settings()
        elif kind == "delete_files":
            self.delete_files(rec)
        else:
            self.message.emit(f"Nothing to apply here: {rec.action.text}", "info")

    # -- relaunch -----------------------------------------------------------------------------
    def relaunch(self, rec: Recommendation) -> None:
        run_id = rec.target.run
        if run_id is None and rec.target.sweep:
            self.relaunch_sweep(rec, rec.target.sweep)
            return
        if run_id is None:
            self.message.emit(
                f"“{rec.title}” names no run to launch again: apply it by hand.", "warning"
            )
            return
        changes = dict(rec.action.changes)

        def job(store: Store) -> RelaunchPlan:
            return plan_relaunch(store, run_id, changes)

        def done(plan: RelaunchPlan) -> None:
            if alive(self.page):
                self.open_dialog(plan, rec)

        def failed(text: str) -> None:
            self.message.emit(f"Run {run_id} cannot be launched again: {text}", "error")

        self.ctx.reader.submit("advice-relaunch", job, done, failed)

    def open_dialog(self, plan: RelaunchPlan, rec: Recommendation) -> LaunchDialog:
        manager = self.manager()
        if self.dialog is not None and alive(self.dialog) and self.dialog.isVisible():
            self.dialog.close()
        dialog = LaunchDialog(self.ctx, manager, self.page)
        changed = "; ".join(plan.changes) or "the same settings"
        dialog.setWindowTitle(f"Launch run {plan.parent_id} again")
        dialog.prefill(
            plan.form,
            parent_id=plan.parent_id,
            env=plan.env,
            note=(
                f"Run {plan.parent_id} again as its child run, as “{rec.title}” suggests "
                f"({changed}). Check the fields, then Launch."
            ),
        )
        dialog.accepted.connect(lambda: self._launch(dialog))
        dialog.finished.connect(lambda _code: dialog.deleteLater())
        self.dialog = dialog
        dialog.open()
        self.dialog_opened.emit(dialog)
        return dialog

    def relaunch_sweep(self, rec: Recommendation, sweep: str) -> None:
        """Every run of the sweep again with the change, after the user confirms."""
        changes = dict(rec.action.changes)
        limit = self.manager().gpu_limit(None)
        name = f"{sweep}-advised-{time.strftime('%Y%m%d-%H%M%S')}"

        def job(store: Store) -> tuple[list[LaunchRequest], tuple[str, ...]]:
            return plan_sweep(store, sweep, changes, name, gpu_limit=limit)

        def done(result: tuple[list[LaunchRequest], tuple[str, ...]]) -> None:
            if alive(self.page):
                self.confirm_sweep(sweep, *result)

        def failed(text: str) -> None:
            self.message.emit(f"The sweep {sweep} cannot be launched again: {text}", "error")

        self.ctx.reader.submit("advice-relaunch", job, done, failed)

    def confirm_sweep(
        self, sweep: str, requests: list[LaunchRequest], changes: tuple[str, ...]
    ) -> bool:
        """Ask, then launch; True when launched."""
        n = len(requests)
        answer = QMessageBox.question(
            self.page,
            f"Launch sweep {sweep} again",
            f"Launch the {n} runs of the sweep {sweep} again ({'; '.join(changes)}), each as "
            f"the child run of its original, as the new sweep {requests[0].sweep}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.message.emit(f"Launching the {n} runs of the sweep {sweep} again…", "info")
        for request in requests:
            self._submit(request)
        return True

    def _launch(self, dialog: LaunchDialog) -> None:
        request = dialog.request
        if request is None:
            return
        self.message.emit(f"Launching run {request.parent_id} again…", "info")
        self._submit(request)

    def _submit(self, request: LaunchRequest) -> None:
        self._awaiting += 1
        if request.parent_id is not None:
            self._parents.append(request.parent_id)
        self.manager().launch(request)

    def _launched(self, launched: Launched) -> None:
        if self._awaiting == 0:
            return  # launched from the Runs page
        self._awaiting -= 1
        self._children.extend(launched.ids)
        if self._awaiting:
            return
        ids, parents = tuple(self._children), tuple(self._parents)
        self._children, self._parents = [], []
        if ids:
            noun = "run" if len(ids) == 1 else "runs"
            of = "run" if len(parents) == 1 else "runs"
            self.message.emit(
                f"Launched {noun} {_listed(ids)}, the child {noun} of {of} {_listed(parents)}, "
                "with the change applied: follow them on the Runs page.",
                "info",
            )
            self.relaunched.emit(ids, parents)

    def _manager_message(self, text: str, level: str) -> None:
        if self._awaiting and level == "error":
            self.message.emit(text, "error")

    # -- delete files (superseded checkpoints) ------------------------------------------------
    def delete_files(self, rec: Recommendation) -> None:
        """List the files (checked on the reader's thread), ask, then delete them there."""
        changes = dict(rec.action.changes)

        def job(store: Store) -> DeletionPlan:
            return deletion_from_changes(store.runs(), changes)

        def done(plan: DeletionPlan) -> None:
            if alive(self.page):
                self.confirm_delete(plan)

        def failed(text: str) -> None:
            self.message.emit(f"The files cannot be deleted: {text}", "error")

        self.ctx.reader.submit("advice-delete", job, done, failed)

    def confirm_delete(self, plan: DeletionPlan) -> bool:
        """Show every file with its size; delete them (off the GUI thread) only on Yes."""
        listing = "\n".join(f"{f.path} ({size_text(f.bytes)})" for f in plan.files)
        answer = QMessageBox.question(
            self.page,
            f"Delete {len(plan.files)} files of run {plan.run_id}",
            f"Delete these {len(plan.files)} superseded checkpoint files of run {plan.run_id} "
            f"({size_text(plan.bytes)})? A file changed since it was listed is kept.\n\n{listing}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            self.message.emit("Nothing deleted.", "info")
            return False
        price = self.ctx.pricing().storage_gb_month

        def job(store: Store) -> list[Outcome]:
            return delete_listed(plan, store.runs(), price_gb_month=price)

        def done(outcomes: list[Outcome]) -> None:
            deleted = [o for o in outcomes if o.deleted]
            freed = size_text(sum(o.bytes for o in deleted))
            lines = [o.text() for o in outcomes]
            level = "info" if len(deleted) == len(outcomes) else "warning"
            self.message.emit(
                f"Deleted {len(deleted)} of {len(outcomes)} files ({freed}): " + "; ".join(lines),
                level,
            )
            self.files_deleted.emit(outcomes)

        def failed(text: str) -> None:
            self.message.emit(f"The files could not be deleted: {text}", "error")

        self.ctx.reader.submit("advice-delete", job, done, failed)
        return True

    # -- compress and settings ----------------------------------------------------------------
    def compress(self, rec: Recommendation) -> None:
        try:
            module = importlib.import_module(COMPRESS_MODULE)
        except ImportError:
            module = None
        opener = getattr(module, COMPRESS_FUNCTION, None)
        if opener is None:
            self.message.emit(
                "The compression dialog is not part of this build: measure from a terminal "
                "with `costmeter compress --help`.",
                "warning",
            )
            return
        model_path = rec.action.changes.get("model_path")
        pricing = self.ctx.pricing()  # serving cost at the user's core-hour price (issue 16)
        price = ServingPrice(pricing.cpu_core_hour, pricing.currency, pricing.cpu_core_hour_source)
        self.compress_dialog = opener(self.page, model_path=model_path, price=price)

    def open_settings(self) -> None:
        show = getattr(self.page.window(), "show_page", None)
        if callable(show):
            show("settings")
        else:
            self.message.emit("Open Settings from the navigation list to apply this.", "info")


def _listed(ids: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in ids)
