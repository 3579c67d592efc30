"""The Advice page: what to change to pay less, with evidence and savings."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout

from costmeter.gui.context import AppContext
from costmeter.gui.pages.base import Page


class AdvicePage(Page):
    title = "Advice"
    key = "advice"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Advice"))
