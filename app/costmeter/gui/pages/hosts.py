"""The Hosts page: remote agents and Prometheus exporters, their state and lag."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout

from costmeter.gui.context import AppContext
from costmeter.gui.pages.base import Page


class HostsPage(Page):
    title = "Hosts"
    key = "hosts"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Hosts"))
