"""What the main window expects of a page."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from costmeter.gui.context import AppContext


class Page(QWidget):
    #: Shown in the navigation list and the window title.
    title = ""
    #: Object name used in settings keys, screenshots and ``--page``.
    key = ""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setObjectName(f"page-{self.key}")

    def on_live(self) -> None:
        """New live data (called at most a few times per second while the page is shown)."""

    def on_shown(self) -> None:
        """The page became the visible one: refresh what is stale."""

    def save_state(self, settings: QSettings) -> None:
        """Persist the user's choices on this page (under ``self.key + "/"``)."""

    def restore_state(self, settings: QSettings) -> None:
        """Restore what ``save_state`` wrote."""

    def has_data(self) -> bool:
        """True once the page shows real data (used before a screenshot is taken)."""
        return True
