"""The "New run" dialog: command, backend, GPUs, limits, sweep grid, the cost estimate and the
prediction (duration, cost, range and what it stands on: ``service.run_prediction``).

Everything slow happens elsewhere: backends are probed by the run manager on a worker thread
(failed ones are listed, disabled, with their error as tooltip) and the estimate from past runs
is read on the store reader's thread, a moment after the command stops changing. What the
fields mean is decided by ``costmeter.service.run_launch``; a refusal is shown in the dialog.
"""

from __future__ import annotations

import dataclasses
import os

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QFontDatabase, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from costmeter.cost.run_cost import Estimate, format_cost
from costmeter.gui.context import AppContext
from costmeter.gui.run_manager import BackendChoice, RunManager
from costmeter.gui.tasks import alive
from costmeter.gui.widgets.form_field import ERROR_STYLE, HINT_STYLE, FormField
from costmeter.runs.commands import default_name
from costmeter.sampling.simulated.profiles import PROFILES
from costmeter.service.reading import Store
from costmeter.service.run_costs import launch_estimates
from costmeter.service.run_launch import (
    LaunchError,
    LaunchForm,
    LaunchRequest,
    build_request,
    parse_tags,
    plan,
    split_command,
)
from costmeter.service.run_prediction import PlanPrediction, describe_plan, launch_predictions

#: The estimate is read this long after the last change to the command.
ESTIMATE_DEBOUNCE_MS = 350
OWN_PROFILE = "each GPU's own"


def describe_estimates(estimates: list[Estimate], currency: str) -> str:
    """The estimate label: one run, or the runs of a sweep."""
    if len(estimates) == 1:
        est = estimates[0]
        if est.amount is None or est.runs == 0:
            return "Estimated cost: no past runs of this command yet."
        return f"Estimated cost: {est.describe()}."
    known = [e for e in estimates if e.amount is not None and e.runs > 0]
    if not known:
        return "Estimated cost: no past runs of these commands yet."
    total = format_cost(sum(e.amount or 0.0 for e in known), currency)
    past = sum(e.runs for e in known)
    runs = f"{past} past run{'s' if past != 1 else ''}"
    if len(known) == len(estimates):
        return f"Estimated cost: about {total} for the {len(estimates)} runs (from {runs})."
    return (
        f"Estimated cost: about {total} for the {len(known)} of {len(estimates)} runs that "
        f"ran before (from {runs}); the others have no past runs."
    )


def _int_setting(settings: QSettings, key: str, default: int) -> int:
    try:
        return int(str(settings.value(key, default)))
    except ValueError:
        return default


class LaunchDialog(QDialog):
    def __init__(self, ctx: AppContext, manager: RunManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.manager = manager
        self.request: LaunchRequest | None = None
        #: Set by ``prefill`` (an applied recommendation): the run this one is launched from,
        #: the variables added to its environment, and the backend to keep once probed.
        self.parent_id: int | None = None
        self.extra_env: dict[str, str] = {}
        self._wanted_backend: str | None = None
        self._estimate_seq = 0
        self.setWindowTitle("New run")
        self.setObjectName("launch-dialog")
        self.setMinimumWidth(620)
        settings = ctx.settings
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.command = QLineEdit(str(settings.value("runs/command", "")))
        self.command.setFont(mono)
        self.command.setPlaceholderText("python train.py --lr {lr} --epochs 3")
        self.command.setToolTip(
            "Run directly, not through a shell; quote arguments as in a shell. {NAME} is "
            "replaced by each value of the sweep grid."
        )
        form.addRow("Command", self.command)
        self.cwd = QLineEdit(str(settings.value("runs/cwd", "")) or os.getcwd())
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.cwd, 1)
        row.addWidget(browse)
        form.addRow("Working directory", row)
        self.backend = QComboBox()
        self.backend.setModel(QStandardItemModel(self.backend))
        form.addRow("Backend", self.backend)
        self.gpus = QSpinBox()
        self.gpus.setRange(0, 0)
        self.gpu_hint = QLabel()
        self.gpu_hint.setStyleSheet(HINT_STYLE)
        row = QHBoxLayout()
        row.addWidget(self.gpus)
        row.addWidget(self.gpu_hint, 1)
        form.addRow("GPUs per run", row)
        self.name = QLineEdit()
        form.addRow("Name", self.name)
        self.tags = QLineEdit(str(settings.value("runs/tags", "")))
        self.tags.setPlaceholderText("none; for example team=vision, owner=alice")
        self.tags.setToolTip(
            "KEY=VALUE pairs put on every run, to report cost by (costmeter report --by "
            "tag:team). Keys: letters, digits, _ . -; a key given twice keeps its last value."
        )
        self.tags_field = FormField(self.tags)
        self.tags_field.setObjectName("tags-field")
        form.addRow("Tags", self.tags_field)
        self.budget = QLineEdit()
        self.budget.setPlaceholderText(f"none; for example 2.50 ({ctx.currency})")
        self.budget.setToolTip("The run is stopped once its cost, or its forecast, passes this.")
        form.addRow("Budget", self.budget)
        self.time_limit = QLineEdit()
        self.time_limit.setPlaceholderText("none; for example 30m or 2h")
        form.addRow("Time limit", self.time_limit)
        self.grid = QPlainTextEdit()
        self.grid.setFont(mono)
        self.grid.setPlaceholderText("lr=0.1,0.01\nbs=32,64")
        self.grid.setFixedHeight(self.fontMetrics().lineSpacing() * 4 + 12)
        self.grid.setToolTip("One NAME=V1,V2,… per line; every combination is one run.")
        form.addRow("Sweep grid", self.grid)
        self.max_parallel = QSpinBox()
        self.max_parallel.setRange(1, 256)
        self.max_parallel.setValue(_int_setting(settings, "runs/max_parallel", 1))
        self.per_gpu = QSpinBox()
        self.per_gpu.setRange(1, 16)
        self.per_gpu.setValue(_int_setting(settings, "runs/per_gpu", 1))
        row = QHBoxLayout()
        row.addWidget(QLabel("at most"))
        row.addWidget(self.max_parallel)
        row.addWidget(QLabel("runs at once,"))
        row.addWidget(self.per_gpu)
        row.addWidget(QLabel("per GPU"))
        row.addStretch(1)
        queue_tip = "Limits of this backend's queue, for these runs and those already waiting."
        for i in range(row.count()):
            item = row.itemAt(i)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.setToolTip(queue_tip)
        form.addRow("Queue", row)
        self.profile: QComboBox | None = None
        if ctx.simulate is not None:
            self.profile = QComboBox()
            self.profile.addItems([OWN_PROFILE, *PROFILES])
            self.profile.setToolTip("What a run's process does on the simulated GPUs it gets.")
            form.addRow("Simulated workload", self.profile)

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet(HINT_STYLE)
        self.estimate = QLabel("Estimated cost: …")
        self.estimate.setWordWrap(True)
        self.estimate.setObjectName("estimate")
        self.prediction = QLabel("Predicted: …")
        self.prediction.setWordWrap(True)
        self.prediction.setObjectName("prediction")
        self.prediction.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.launch_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.launch_button.setText("Launch")
        self.buttons.accepted.connect(self.try_accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        # The dialog grows when a message appears, rather than squeezing the fields.
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.estimate)
        layout.addWidget(self.prediction)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(ESTIMATE_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.refresh_estimate)
        for edit in (self.command, self.name, self.tags):
            edit.textChanged.connect(self._changed)
        self.grid.textChanged.connect(self._changed)
        self.gpus.valueChanged.connect(self._changed)
        self.max_parallel.valueChanged.connect(self._changed)
        self.backend.currentIndexChanged.connect(self._backend_changed)
        manager.backends_ready.connect(self._fill_backends)
        self._fill_backends(manager.choices or [BackendChoice("local", True)])
        if manager.choices is None:
            manager.probe_backends()
        self.gpus.setValue(min(_int_setting(settings, "runs/gpus", 0), self.gpus.maximum()))
        self._changed()

    # -- backends and GPUs ---------------------------------------------------------------------
    def _fill_backends(self, choices: list[BackendChoice]) -> None:
        current = (
            self._wanted_backend
            or self.backend.currentText()
            or str(self.ctx.settings.value("runs/backend", ""))
        )
        model = self.backend.model()
        assert isinstance(model, QStandardItemModel)
        self.backend.blockSignals(True)
        model.clear()
        for choice in choices:
            item = QStandardItem(choice.name if choice.ok else f"{choice.name} (failed)")
            item.setData(choice, Qt.ItemDataRole.UserRole)
            item.setEnabled(choice.ok)
            item.setToolTip(choice.description if choice.ok else choice.error)
            model.appendRow(item)
        usable = [c.name for c in choices if c.ok]
        names = [c.name for c in choices]
        for wanted in (current, "local", *usable):
            if wanted in usable:
                index = names.index(wanted)
                break
        else:
            index = 0
        self.backend.setCurrentIndex(index)
        if self._wanted_backend in usable:
            self._wanted_backend = None  # found: from now on the user's choice counts
        self.backend.blockSignals(False)
        self._backend_changed()

    def choice(self) -> BackendChoice | None:
        data = self.backend.currentData(Qt.ItemDataRole.UserRole)
        return data if isinstance(data, BackendChoice) else None

    def _backend_changed(self) -> None:
        choice = self.choice()
        limit = self.manager.gpu_limit(choice)
        name = choice.name if choice is not None else "this backend"
        self.gpus.setMaximum(64 if limit is None else limit)
        self.gpus.setEnabled(limit is None or limit > 0)
        if limit is None:
            hint = f"'{name}' places runs on GPUs itself."
        elif choice is not None and not choice.gpus:
            hint = f"'{name}' cannot give runs GPUs: they run on the CPU."
        elif limit == 0:
            hint = "Costmeter sees no GPU here: runs use the CPU only."
        else:
            plural = "s" if limit != 1 else ""
            hint = f"of {limit} GPU{plural} here; 0 runs it on the CPU, not placed on a GPU."
        self.gpu_hint.setText(hint)
        self._changed()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Working directory", self.cwd.text())
        if path:
            self.cwd.setText(path)

    # -- the form ------------------------------------------------------------------------------
    def form(self) -> LaunchForm:
        choice = self.choice()
        profile = None
        if self.profile is not None and self.profile.currentText() != OWN_PROFILE:
            profile = self.profile.currentText()
        return LaunchForm(
            command=self.command.text(),
            cwd=self.cwd.text(),
            backend=choice.name if choice is not None else self.backend.currentText(),
            gpus=self.gpus.value(),
            name=self.name.text(),
            budget=self.budget.text(),
            time_limit=self.time_limit.text(),
            grid=self.grid.toPlainText(),
            max_parallel=self.max_parallel.value(),
            per_gpu=self.per_gpu.value(),
            profile=profile,
            tags=self.tags.text(),
        )

    def _changed(self) -> None:
        self.error.hide()  # a refusal is about what was there before this change
        self.summary.show()
        form = self.form()
        self._check_tags(form.tags)
        try:
            self.name.setPlaceholderText(default_name(split_command(form.command)))
        except LaunchError:
            self.name.setPlaceholderText("from the command")
        try:
            points = plan(form)
        except LaunchError as exc:
            self.summary.setText("" if not form.command.strip() else str(exc))
            self.estimate.setText("Estimated cost: —")
            self.prediction.setText("Predicted: —")
            return
        if len(points) == 1:
            self.summary.setText("One run.")
        else:
            names = ", ".join(name for name, _ in points[:3])
            more = ", …" if len(points) > 3 else ""
            self.summary.setText(f"The grid makes {len(points)} runs: {names}{more}")
        self._debounce.start()

    def _check_tags(self, text: str) -> bool:
        """Say under the tags field what is wrong with them, as they are typed."""
        try:
            tags = parse_tags(text)
        except LaunchError as exc:
            self.tags_field.set_hint("")
            self.tags_field.set_error(str(exc))
            return False
        self.tags_field.set_error(None)
        # How the field was read: a comma not followed by KEY= stays in the value.
        self.tags_field.set_hint("; ".join(f"{k} = {v}" for k, v in tags.items()))
        return True

    def refresh_estimate(self) -> None:
        """Read the estimate from past runs of the same command(s), on the reader thread."""
        try:
            points = plan(self.form())
        except LaunchError:
            return
        form = self.form()
        argvs = [argv for _, argv in points]
        gpus = form.gpus
        pricing = self.ctx.pricing()
        self._estimate_seq += 1
        seq = self._estimate_seq

        parallel = form.max_parallel

        def job(store: Store) -> tuple[list[Estimate], PlanPrediction]:
            estimates = launch_estimates(store, argvs, gpus, pricing)
            plan = launch_predictions(store, points, gpus, pricing, max_parallel=parallel)
            return estimates, plan

        def done(found: tuple[list[Estimate], PlanPrediction]) -> None:
            if alive(self) and seq == self._estimate_seq:
                estimates, plan = found
                self.estimate.setText(describe_estimates(estimates, pricing.currency))
                self.prediction.setText(describe_plan(plan))

        def failed(text: str) -> None:
            if alive(self) and seq == self._estimate_seq:
                self.estimate.setText(f"Estimated cost: unknown ({text})")
                self.prediction.setText(f"Predicted: unknown ({text})")

        self.ctx.reader.submit("launch-estimate", job, done, failed)

    def try_accept(self) -> bool:
        """Launch when the form is valid; else say why in the dialog and stay open."""
        choice = self.choice()
        if choice is not None and not choice.ok:
            return self._refuse(f"The backend '{choice.name}' cannot be used: {choice.error}")
        form = self.form()
        if choice is not None and not choice.gpus and form.gpus > 0:
            return self._refuse(
                f"The backend '{choice.name}' cannot give runs GPUs: ask for 0 GPUs or choose "
                "another backend."
            )
        try:
            self.request = build_request(form, gpu_limit=self.manager.gpu_limit(choice))
        except LaunchError as exc:
            widget = getattr(self, exc.field, None)
            if isinstance(widget, QWidget):
                widget.setFocus()
            if exc.field == "tags":  # said under the field as well
                self._check_tags(form.tags)
            return self._refuse(str(exc))
        if self.parent_id is not None or self.extra_env:
            specs = tuple(
                dataclasses.replace(s, env={**s.env, **self.extra_env}) for s in self.request.specs
            )
            self.request = dataclasses.replace(self.request, specs=specs, parent_id=self.parent_id)
        self._save(form)
        self.accept()
        return True

    def prefill(
        self,
        form: LaunchForm,
        *,
        parent_id: int | None = None,
        env: dict[str, str] | None = None,
        note: str = "",
    ) -> None:
        """Fill the fields from ``form`` (launching a run again with a recommendation applied);
        the runs it launches record ``parent_id`` and get ``env`` added to their environment.
        ``note`` is shown above the fields (what was changed, and why)."""
        if note:
            self.note = QLabel(note)
            self.note.setObjectName("prefill-note")
            self.note.setWordWrap(True)
            layout = self.layout()
            if isinstance(layout, QVBoxLayout):
                layout.insertWidget(0, self.note)
        self.parent_id = parent_id
        self.extra_env = dict(env or {})
        self._wanted_backend = form.backend
        self._fill_backends(self.manager.choices or [BackendChoice("local", True)])
        self.command.setText(form.command)
        self.cwd.setText(form.cwd)
        self.gpus.setValue(form.gpus)
        self.name.setText(form.name)
        self.tags.setText(form.tags)
        self.budget.setText(form.budget)
        self.time_limit.setText(form.time_limit)
        self.grid.setPlainText(form.grid)
        self.max_parallel.setValue(form.max_parallel)
        self.per_gpu.setValue(form.per_gpu)

    def _refuse(self, text: str) -> bool:
        self.error.setText(text)
        self.error.show()
        self.summary.setVisible(self.summary.text() != text)
        return False

    def _save(self, form: LaunchForm) -> None:
        s = self.ctx.settings
        s.setValue("runs/command", form.command)
        s.setValue("runs/cwd", form.cwd)
        s.setValue("runs/backend", form.backend)
        s.setValue("runs/tags", form.tags)
        s.setValue("runs/gpus", form.gpus)
        s.setValue("runs/max_parallel", form.max_parallel)
        s.setValue("runs/per_gpu", form.per_gpu)
