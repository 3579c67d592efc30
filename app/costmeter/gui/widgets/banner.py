"""A strip at the top of the window for what the user must know now (no GPU, database trouble)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

_STYLES = {
    "info": "background:#dbeafe; color:#1e3a8a;",
    "warning": "background:#fef3c7; color:#78350f;",
    "error": "background:#fee2e2; color:#7f1d1d;",
}


class Banner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        self.label = QLabel()
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.action = QPushButton()
        self.action.hide()
        layout.addWidget(self.action)
        self.close_button = QPushButton("Dismiss")
        self.close_button.clicked.connect(self.hide)
        layout.addWidget(self.close_button)
        self._callback: Callable[[], None] | None = None
        self.action.clicked.connect(self._act)
        self.hide()

    def show_message(
        self,
        text: str,
        level: str = "info",
        action: str | None = None,
        callback: Callable[[], None] | None = None,
    ) -> None:
        self.setStyleSheet(
            f"QFrame#banner {{ {_STYLES.get(level, _STYLES['info'])} }}"
            " QFrame#banner QLabel { color: inherit; }"
        )
        self.label.setText(text)
        self._callback = callback
        self.action.setVisible(action is not None)
        if action is not None:
            self.action.setText(action)
        self.show()

    def _act(self) -> None:
        if self._callback is not None:
            self._callback()
