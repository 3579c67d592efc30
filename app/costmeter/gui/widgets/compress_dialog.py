"""The compression dialog: pick a model and a method, measure before/after on a worker thread.

The measurement is ``costmeter.compress.measure_compression``, the one ``costmeter compress``
runs; it goes through a ``TaskRunner`` so the GUI thread never waits, reports its progress by a
queued signal, and stops at the next timed run when Cancel sets its event. Torch is imported by
the worker on first use: without it the dialog opens and says what to install.

Distillation (issue 16) trains a student on the training data named in the dialog, in the same
worker, with one progress step per epoch; the goal (cost, latency or size) decides the verdict,
priced with the core-hour price the app was given (the price table's by default).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from costmeter.compress import (
    CHOICES,
    DEFAULT_GOAL,
    GOALS,
    CompressionReport,
    ServingPrice,
    measure_compression,
    save_compressed,
)
from costmeter.compress.loading import FORMATS
from costmeter.cost.pricing import Pricing, load_default_pricing
from costmeter.gui.tasks import TaskRunner, alive
from costmeter.gui.widgets.form_field import ERROR_STYLE, HINT_STYLE

PRUNE = "prune"
DISTILL = "distill"
GOAL_TIPS = {
    "cost": "Keep a model that serves cheaper per inference (batch 1 or the larger batch) "
    "and dearer at neither, at this CPU's core-hour price.",
    "latency": "Keep a model that answers one request (batch 1) faster.",
    "size": "Keep a model that is smaller to store and hold in memory, even if it serves slower.",
}
MODEL_FILTER = "Models (*.pt *.pth *.pt2 *.ptl *.bin);;All files (*)"
TRUST_WARNING = (
    "A torch.save(model) file is a pickle, and loading it runs code named in the file:\n"
    "tick this only for files you made or trust. Costmeter checkpoints, TorchScript and\n"
    "torch.export files load without it."
)
VERDICT_STYLE = {
    "keep": "color: #16a34a; font-weight: bold;",
    "reject": "color: #dc2626; font-weight: bold;",
    "unmeasured": "font-weight: bold;",
}
COLUMNS = ("", "Before", "After", "Change")


class _Progress(QObject):
    """Carries progress from the worker thread to the GUI thread (a queued connection)."""

    changed = Signal(int, str, float)


class CompressDialog(QDialog):
    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        model_path: str | None = None,
        price: ServingPrice | None = None,
    ) -> None:
        super().__init__(parent)
        self.price = price if price is not None else serving_price(load_default_pricing())
        self.setWindowTitle("Measure compression")
        self.setObjectName("compress-dialog")
        self.setMinimumWidth(680)
        self.report: CompressionReport | None = None
        self._runner: TaskRunner | None = None
        self._cancel = threading.Event()
        self._seq = 0
        self._running = False
        self._progress = _Progress(self)
        self._progress.changed.connect(self._on_progress)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.model_edit = QLineEdit(model_path or "")
        self.model_edit.setPlaceholderText("torch.save, TorchScript or torch.export (.pt2) file")
        form.addRow("Model", self._with_browse(self.model_edit, self._browse_model))
        self.method = QComboBox()
        self.method.addItems([*CHOICES, PRUNE, DISTILL])
        self.method.setToolTip(
            "int8-dynamic and int8-weight need a torch.save(model) file or a weights-only "
            "checkpoint; fp16, bf16 and prune work on every format; distill trains a smaller "
            "student on your training data."
        )
        self.prune_amount = QDoubleSpinBox()
        self.prune_amount.setRange(0.05, 0.95)
        self.prune_amount.setSingleStep(0.05)
        self.prune_amount.setValue(0.5)
        self.prune_amount.setPrefix("amount ")
        self.prune_amount.setToolTip("Share of each layer's weights set to zero.")
        row = QHBoxLayout()
        row.addWidget(self.method, 1)
        row.addWidget(self.prune_amount)
        form.addRow("Method", row)
        self.hidden = QSpinBox()
        self.hidden.setRange(0, 65536)
        self.hidden.setValue(0)
        self.hidden.setSpecialValueText("auto (a quarter of the teacher's)")
        self.hidden.setPrefix("hidden width ")
        self.hidden.setToolTip(
            "Width of each hidden layer of the student; auto: a quarter of the teacher's "
            "(a two-layer MLP of 32 when the teacher is not a plain MLP)."
        )
        self.train_edit = QLineEdit()
        self.train_edit.setPlaceholderText(".npz with arrays x (and labels y) to train on")
        distill_box = QWidget()
        distill_row = QHBoxLayout(distill_box)
        distill_row.setContentsMargins(0, 0, 0, 0)
        distill_row.addWidget(self.hidden)
        distill_row.addLayout(self._with_browse(self.train_edit, self._browse_train), 1)
        form.addRow("Student, training data", distill_box)
        self.eval_edit = QLineEdit()
        self.eval_edit.setPlaceholderText("optional: .npz with arrays x and y, for accuracy")
        form.addRow("Evaluation data", self._with_browse(self.eval_edit, self._browse_eval))
        self.trust = QCheckBox("Trust this file (allow unpickling a whole model)")
        self.trust.setToolTip(TRUST_WARNING.replace("\n", " "))
        trust_hint = QLabel(TRUST_WARNING)  # lines broken by hand: a wrapped label is squeezed
        trust_hint.setStyleSheet(HINT_STYLE)
        trust_box = QWidget()  # a widget, not a bare layout: the form row then keeps its height
        trust_layout = QVBoxLayout(trust_box)
        trust_layout.setContentsMargins(0, 0, 0, 0)
        trust_layout.addWidget(self.trust)
        trust_layout.addWidget(trust_hint)
        form.addRow("", trust_box)
        self.max_drop = QDoubleSpinBox()
        self.max_drop.setRange(0.0, 100.0)
        self.max_drop.setDecimals(1)
        self.max_drop.setValue(1.0)
        self.max_drop.setSuffix(" points")
        self.max_drop.setToolTip("Reject the compressed model if accuracy drops more than this.")
        form.addRow("Largest accuracy drop", self.max_drop)
        self.goal = QComboBox()
        self.goal.addItems(list(GOALS))
        self.goal.setCurrentText(DEFAULT_GOAL)
        for i, goal in enumerate(GOALS):
            self.goal.setItemData(i, GOAL_TIPS[goal], Qt.ItemDataRole.ToolTipRole)
        self.goal_hint = QLabel()
        self.goal_hint.setStyleSheet(HINT_STYLE)
        goal_row = QHBoxLayout()
        goal_row.addWidget(self.goal)
        goal_row.addWidget(self.goal_hint, 1)
        form.addRow("Goal", goal_row)
        self.batch = QSpinBox()
        self.batch.setRange(2, 4096)
        self.batch.setValue(64)
        self.repeat = QSpinBox()
        self.repeat.setRange(1, 1000)
        self.repeat.setValue(30)
        row = QHBoxLayout()
        row.addWidget(QLabel("batch 1 and batch"))
        row.addWidget(self.batch)
        row.addWidget(QLabel(", median of"))
        row.addWidget(self.repeat)
        row.addWidget(QLabel("timed runs"))
        row.addStretch(1)
        form.addRow("Latency", row)

        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.stage = QLabel("")
        self.stage.setStyleSheet(HINT_STYLE)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setObjectName("verdict")
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet(HINT_STYLE)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()

        self.save_button = QPushButton("Save compressed model…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._ask_save)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addStretch(1)
        buttons.addWidget(close)

        layout = QVBoxLayout(self)
        # The dialog grows when the table or a message appears, rather than squeezing the form.
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        layout.addLayout(form)
        layout.addLayout(run_row)
        layout.addWidget(self.stage)
        layout.addWidget(self.error)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.verdict)
        layout.addWidget(self.notes)
        layout.addLayout(buttons)
        self.method.currentTextChanged.connect(self._method_changed)
        self._method_changed(self.method.currentText())
        self.goal.currentTextChanged.connect(self._goal_changed)
        self._goal_changed(self.goal.currentText())

    # -- the measurement ---------------------------------------------------------------------

    def method_text(self) -> str:
        name = self.method.currentText()
        if name == DISTILL and self.hidden.value():
            return f"distill:hidden={self.hidden.value()}"
        return f"prune:{self.prune_amount.value():g}" if name == PRUNE else name

    def running(self) -> bool:
        return self._running

    @Slot()
    def start(self) -> None:
        model = self.model_edit.text().strip()
        if not model:
            self._show_error("Choose the model file to compress.")
            return
        if self._running:
            return
        train_text = self.train_edit.text().strip()
        distilling = self.method.currentText() == DISTILL
        if distilling and not train_text:
            self._show_error(
                "Choose the training data (.npz with arrays x and y) to distil the student on."
            )
            return
        self._seq += 1
        seq = self._seq
        self._cancel = threading.Event()
        cancel = self._cancel
        eval_text = self.eval_edit.text().strip()
        method, trust = self.method_text(), self.trust.isChecked()
        max_drop, batch, repeat = self.max_drop.value(), self.batch.value(), self.repeat.value()
        goal, price = self.goal.currentText(), self.price
        progress = self._progress

        def report_progress(stage: str, share: float) -> None:
            with contextlib.suppress(RuntimeError):  # the dialog was closed and deleted
                progress.changed.emit(seq, stage, share)

        def work() -> CompressionReport:
            return measure_compression(
                model,
                method,
                eval_path=eval_text or None,
                train_path=train_text if distilling else None,
                goal=goal,  # type: ignore[arg-type]  # one of GOALS, from the combo box
                price=price,
                trust=trust,
                max_drop=max_drop,
                batch=batch,
                repeat=repeat,
                on_progress=report_progress,
                cancelled=cancel.is_set,
            )

        self.report = None
        self._set_running(True)
        self.error.hide()
        self.table.setRowCount(0)
        self.verdict.clear()
        self.notes.clear()
        self.stage.setText("Starting (the first run imports torch: a few seconds)…")
        self._tasks().submit(
            f"measure-{seq}",
            work,
            lambda report: self._finished(seq, report),
            lambda message: self._failed(seq, message),
        )

    @Slot()
    def cancel(self) -> None:
        if self._running:
            self._cancel.set()
            self.stage.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def save_to(self, path: str | Path) -> None:
        """Save the measured compressed model to ``path`` on the worker thread."""
        report = self.report
        if report is None:
            return
        self.save_button.setEnabled(False)
        self.stage.setText(f"Saving to {path}…")
        self._tasks().submit(
            "save",
            lambda: save_compressed(report, Path(path)),
            self._saved,
            self._save_failed,
        )

    # -- answers from the worker (on the GUI thread) -----------------------------------------

    @Slot(int, str, float)
    def _on_progress(self, seq: int, stage: str, share: float) -> None:
        if seq == self._seq and self._running and not self._cancel.is_set():
            self.progress.setValue(round(share * 1000))
            self.stage.setText(stage + "…")

    def _finished(self, seq: int, report: CompressionReport) -> None:
        if seq != self._seq or not alive(self):
            return
        self._set_running(False)
        self.report = report
        self.progress.setValue(1000)
        threads = f"{report.threads} CPU thread{'s' if report.threads != 1 else ''}"
        self.stage.setText(
            f"Measured {Path(report.model).name} ({report.format}): {report.method} with "
            f"{report.engine}, {threads}."
        )
        self.show_report(report)

    def _failed(self, seq: int, message: str) -> None:
        if seq != self._seq or not alive(self):
            return
        self._set_running(False)
        self.progress.setValue(0)
        self.stage.setText("")
        if self._cancel.is_set():
            self.stage.setText("Cancelled: nothing was measured.")
        else:
            self._show_error(message)

    def _saved(self, path: Path) -> None:
        if alive(self):
            self.stage.setText(f"Compressed model saved to {path}.")
            self.save_button.setEnabled(True)

    def _save_failed(self, message: str) -> None:
        if alive(self):
            self.stage.setText("")
            self._show_error(message)
            self.save_button.setEnabled(True)

    def show_report(self, report: CompressionReport) -> None:
        rows = report.rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate((row.label, row.before, row.after, row.change)):
                item = QTableWidgetItem(text)
                if c in (1, 2):
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(r, c, item)
        height = self.table.horizontalHeader().height() + 4
        height += sum(self.table.rowHeight(r) for r in range(len(rows)))
        self.table.setMinimumHeight(height)
        self.verdict.setText(report.verdict_text())
        self.verdict.setStyleSheet(VERDICT_STYLE[report.verdict])
        self.notes.setText("\n".join(f"• {n}" for n in report.notes))
        self._fit_height()
        self.save_button.setEnabled(report.verdict != "reject")
        self.save_button.setToolTip(
            "" if report.verdict != "reject" else "Rejected: nothing worth saving."
        )

    # -- helpers -------------------------------------------------------------------------------

    def _set_running(self, running: bool) -> None:
        self._running = running
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(False)
        if running:
            self.progress.setValue(0)

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        self._fit_height()

    def _fit_height(self) -> None:
        """Grow to the height the wrapped labels need at this width (a layout's minimum size
        ignores height-for-width, so the form would be squeezed instead)."""
        layout = self.layout()
        if layout is None:
            return
        layout.activate()
        needed = layout.totalHeightForWidth(self.width())
        if needed > self.height():
            self.resize(self.width(), needed)

    def _method_changed(self, name: str) -> None:
        self.prune_amount.setEnabled(name == PRUNE)
        self.hidden.setEnabled(name == DISTILL)
        self.train_edit.setEnabled(name == DISTILL)

    def _goal_changed(self, goal: str) -> None:
        self.goal_hint.setText(GOAL_TIPS.get(goal, ""))
        self.goal_hint.setToolTip(f"Priced at the core-hour price: {self.price.source}")

    def _with_browse(self, edit: QLineEdit, browse: Callable[[], None]) -> QHBoxLayout:
        button = QPushButton("Browse…")
        button.clicked.connect(browse)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(button)
        return row

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Model to compress", self.model_edit.text(), MODEL_FILTER
        )
        if path:
            self.model_edit.setText(path)

    def _browse_eval(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Evaluation data", self.eval_edit.text(), "NumPy arrays (*.npz);;All files (*)"
        )
        if path:
            self.eval_edit.setText(path)

    def _browse_train(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Training data", self.train_edit.text(), "NumPy arrays (*.npz);;All files (*)"
        )
        if path:
            self.train_edit.setText(path)

    def _ask_save(self) -> None:
        if self.report is None:
            return
        source = Path(self.report.model)
        # torch.export by default: it loads without --trust, and torchao's int8 models cannot
        # be pickled whole. A TorchScript model is saved as TorchScript whatever the name.
        script = self.report.format == FORMATS["torchscript"]
        distilled = self.report.method.startswith(DISTILL)
        suffix = ".pt" if script or distilled else ".pt2"
        name = f"{source.stem}-{self.report.method.replace(':', '-').replace(',', '-')}{suffix}"
        filters = "TorchScript (*.pt)" if script else "torch.export (*.pt2);;torch.save (*.pt)"
        if distilled:  # a weights-only checkpoint: it loads without trust
            filters = "Costmeter checkpoint (*.pt);;torch.export (*.pt2)"
        path, _ = QFileDialog.getSaveFileName(
            self, "Save compressed model", str(source.with_name(name)), filters + ";;All (*)"
        )
        if path:
            self.save_to(path)

    def _tasks(self) -> TaskRunner:
        if self._runner is None:
            self._runner = TaskRunner(workers=1, parent=self)
        return self._runner

    def _stop(self) -> None:
        """A measurement under way stops at its next timed run; its answer is dropped."""
        self._cancel.set()
        self._seq += 1
        self._set_running(False)
        if self._runner is not None:
            self._runner.shutdown(wait=False)
            self._runner = None

    def done(self, result: int) -> None:  # Esc and the window's close button end here too
        self._stop()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:  # Qt's name
        self._stop()
        super().closeEvent(event)


def serving_price(pricing: Pricing) -> ServingPrice:
    """The core-hour price that prices serving in the verdict."""
    return ServingPrice(pricing.cpu_core_hour, pricing.currency, pricing.cpu_core_hour_source)


def open_compress_dialog(
    parent: QWidget, model_path: str | None = None, *, price: ServingPrice | None = None
) -> CompressDialog:
    """Open the dialog (not modal: the app keeps running while it measures)."""
    dialog = CompressDialog(parent, model_path=model_path, price=price)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog
