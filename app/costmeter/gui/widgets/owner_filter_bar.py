"""A line above a page's content while it shows one owner only (from the Who pays page)."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget


def owner_words(key: Mapping[str, str | None]) -> str:
    """``user alice``, ``project vision, user bob``."""
    return ", ".join(f"{dim} {value or '(none)'}" for dim, value in key.items())


class OwnerFilterBar(QWidget):
    #: "Show all" was clicked.
    cleared = Signal()

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("owner-filter-bar")
        self._what = what
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.button = QPushButton(f"Show every {what}")
        self.button.setToolTip("Drop the owner chosen on the Who pays page")
        self.button.clicked.connect(self.cleared)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.hide()

    def show_owner(self, key: Mapping[str, str | None] | None, detail: str = "") -> None:
        """Say which owner is shown (``detail`` adds how), or hide for None."""
        if not key:
            self.hide()
            return
        self.label.setText(f"Only {owner_words(key)}" + (f": {detail}" if detail else "."))
        self.show()
