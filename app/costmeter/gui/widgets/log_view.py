"""A run's output, followed as it grows: only new text is appended, old lines are dropped.

``LogView.follow(run_id)`` starts at the run's log from the beginning (only its tail when it is
long) and polls for more through a reader function that works off the GUI thread
(``RunManager.read_log``); answers for a run no longer shown are ignored. The view scrolls with
the output unless the user has scrolled up to read something.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from costmeter.gui.run_manager import LogRead
from costmeter.gui.tasks import alive

#: Lines kept in the widget; older ones are dropped as new ones arrive.
MAX_LINES = 5000
POLL_MS = 700

ReadLog = Callable[[int, int, Callable[[LogRead], None], Callable[[str], None]], None]


class LogView(QWidget):
    def __init__(self, read_log: ReadLog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._read_log = read_log
        self.run_id: int | None = None
        self._offset = 0
        self._complete = False
        self._waiting = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.title = QLabel("Select a run to see its output.")
        self.title.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.title)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setObjectName("run-log")
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("No output yet.")
        layout.addWidget(self.text, 1)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    def follow(self, run_id: int | None, title: str = "") -> None:
        """Show the output of ``run_id`` (None: nothing)."""
        if run_id == self.run_id:
            return
        self.run_id = run_id
        self._offset = 0
        self._complete = False
        self._waiting = False
        self.text.clear()
        if run_id is None:
            self.title.setText("Select a run to see its output.")
            self._timer.stop()
            return
        self.title.setText(title or f"Output of run {run_id}")
        self.poll()
        self._timer.start()

    def poll(self) -> None:
        if self.run_id is None or self._complete or self._waiting:
            return
        run_id = self.run_id
        self._waiting = True
        self._read_log(
            run_id,
            self._offset,
            lambda read: self._got(run_id, read),
            lambda text: self._failed(run_id, text),
        )

    def _got(self, run_id: int, read: LogRead) -> None:
        if not alive(self) or run_id != self.run_id:
            return
        self._waiting = False
        if read.skipped and self._offset == 0:
            self.append("[… earlier output not shown …]\n")
        self._offset = read.next_offset
        if read.text:
            self.append(read.text)
        if read.complete:
            self._complete = True
            self._timer.stop()

    def _failed(self, run_id: int, text: str) -> None:
        if not alive(self) or run_id != self.run_id:
            return
        self._waiting = False
        self._complete = True
        self._timer.stop()
        self.append(f"\n[The output cannot be shown: {text}]\n")

    def append(self, text: str) -> None:
        """Add ``text`` at the end; follow it unless the user scrolled up."""
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        if at_end:
            bar.setValue(bar.maximum())

    def plain_text(self) -> str:
        return self.text.toPlainText()

    def resume(self) -> None:
        """Poll again (the page is shown again, or the run changed state)."""
        if self.run_id is not None and not self._complete:
            self._timer.start()
            self.poll()

    def pause(self) -> None:
        self._timer.stop()
