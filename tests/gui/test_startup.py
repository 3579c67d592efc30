"""What start-up leaves for later: pages are imported when first shown, the reader waits for the
first paint when asked to, and the page list names every page as its class does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from costmeter.cli.main import build_parser
from costmeter.gui.pages.registry import PAGES
from costmeter.gui.reader import StoreReader
from costmeter.store import Store

pytestmark = pytest.mark.gui


def test_each_page_entry_matches_its_class() -> None:
    assert len({p.key for p in PAGES}) == len(PAGES)
    for spec in PAGES:
        page_type = spec.load()
        assert (page_type.key, page_type.title) == (spec.key, spec.title)
        build_parser().parse_args(["gui", "--page", spec.key])  # the CLI offers it


def test_importing_the_window_imports_no_page_but_the_base() -> None:
    code = (
        "import sys, costmeter.gui.main_window\n"
        "print(sorted(m for m in sys.modules if m.startswith('costmeter.gui.pages.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "['costmeter.gui.pages.base', 'costmeter.gui.pages.registry']"


def test_a_held_reader_runs_nothing_until_released(qtbot, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    Store.open(db).close()
    reader = StoreReader(db, held=True)
    got: list[int] = []
    try:
        reader.submit("x", lambda store: 42, got.append)
        deadline = time.monotonic() + 0.4
        while time.monotonic() < deadline:
            qtbot.wait(20)
        assert got == [] and reader.pending() == 1
        reader.release()
        qtbot.waitUntil(lambda: got == [42], timeout=5000)
        reader.release()  # harmless twice
    finally:
        reader.stop()
