"""The Overview page (being built)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout

from costmeter.gui.context import AppContext
from costmeter.gui.pages.base import Page


class OverviewPage(Page):
    title = "Overview"
    key = "overview"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        QVBoxLayout(self).addWidget(QLabel("Overview"))
