"""The no-display check runs before Qt is imported (Qt would abort the process)."""

from __future__ import annotations

import os
import subprocess
import sys

from costmeter.gui.display import display_problem


def test_display_problem_decisions() -> None:
    assert display_problem({}, "linux") is not None
    assert "xvfb-run" in (display_problem({}, "linux") or "")
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "xcb"}, "linux") is not None
    assert display_problem({}, "darwin") is None
    assert display_problem({}, "win32") is None


def test_gui_without_a_display_says_so_in_one_line_and_exits_non_zero(tmp_path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    result = subprocess.run(
        [sys.executable, "-m", "costmeter", "gui", "--db", str(tmp_path / "x.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0
    assert "no display" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.db").exists()  # nothing was started
