"""The pages in navigation order, named without importing them.

A page's module (and what it pulls in: the Advice page's plots, the Runs page's services...) is
imported the first time the page is shown, so start-up pays only for the page it opens on.
tests/gui/test_page_registry.py checks that each entry's key and title match its class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from costmeter.gui.pages.base import Page


@dataclass(frozen=True, slots=True)
class PageSpec:
    key: str
    title: str
    #: Module under ``costmeter.gui.pages`` and the class in it.
    module: str
    cls: str

    def load(self) -> type[Page]:
        module = importlib.import_module(f"costmeter.gui.pages.{self.module}")
        page_type: type[Page] = getattr(module, self.cls)
        return page_type


PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview", "Overview", "overview", "OverviewPage"),
    PageSpec("devices", "Devices", "devices", "DevicesPage"),
    PageSpec("processes", "Processes", "processes", "ProcessesPage"),
    PageSpec("runs", "Runs", "runs", "RunsPage"),
    PageSpec("history", "History", "history", "HistoryPage"),
    PageSpec("advice", "Advice", "advice", "AdvicePage"),
    PageSpec("hosts", "Hosts", "hosts", "HostsPage"),
    PageSpec("settings", "Settings", "settings", "SettingsPage"),
    # Last, so that Ctrl+1..8 keep the pages they always opened (Ctrl+9 opens this one).
    PageSpec("who-pays", "Who pays", "who_pays", "WhoPaysPage"),
)
