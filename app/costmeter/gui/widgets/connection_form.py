"""What the host and the source dialogs share: a connection test and a save, each on a worker,
whose answer shows in the dialog (and nowhere once the dialog is gone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QDialogButtonBox, QHBoxLayout, QLabel, QPushButton

from costmeter.gui.tasks import TaskRunner, alive

ERROR_STYLE = "color: #b91c1c;"
WARN_STYLE = "color: #b45309;"
OK_STYLE = "color: #15803d;"


class ConnectionForm:
    """Mixed into a QDialog (listed before it) that builds these widgets and has ``check``."""

    tasks: TaskRunner
    hint: QLabel
    test_button: QPushButton
    test_result: QLabel
    buttons: QDialogButtonBox
    result_value: object

    if TYPE_CHECKING:  # the dialog's own (QDialog.accept, its form check)

        def check(self) -> bool: ...

        def accept(self) -> None: ...

        def reject(self) -> None: ...

        def save(self) -> None: ...

        def test_connection(self) -> None: ...

    def build_actions(self) -> QHBoxLayout:
        """The hint, the test button with its answer (the row returned) and Save/Cancel."""
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.test_result = QLabel("")
        self.test_result.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.test_button)
        row.addWidget(self.test_result, 1)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        return row

    def _alive(self) -> bool:
        return isinstance(self, QObject) and alive(self)

    def start_test(self, name: str, work: Callable[[], str]) -> None:
        self.test_button.setEnabled(False)
        self.test_result.setStyleSheet("")
        self.test_result.setText("Testing…")
        self.tasks.submit(name, work, self._tested_ok, self._tested_failed)

    def start_save(self, name: str, work: Callable[[], object]) -> None:
        """Save on a worker (the caller has checked the form): accept on success, else say why."""
        self.buttons.setEnabled(False)
        self.hint.setStyleSheet("")
        self.hint.setText("Saving…")
        self.tasks.submit(name, work, self._saved, self._refused)

    def _tested_ok(self, text: str) -> None:
        if self._alive():
            self._show_test(text[:1].upper() + text[1:], OK_STYLE)

    def _tested_failed(self, text: str) -> None:
        if self._alive():
            self._show_test(text, ERROR_STYLE)

    def _show_test(self, text: str, style: str) -> None:
        self.test_result.setText(text)
        self.test_result.setStyleSheet(style)
        self.check()

    def _saved(self, value: object) -> None:
        if not self._alive():
            return
        self.result_value = value
        self.buttons.setEnabled(True)
        self.accept()

    def _refused(self, text: str) -> None:
        if not self._alive():
            return
        self.buttons.setEnabled(True)
        self.check()
        self.hint.setText(text)
        self.hint.setStyleSheet(ERROR_STYLE)
