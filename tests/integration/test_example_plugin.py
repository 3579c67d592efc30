"""The example plugin's own test suite passes, run as its author runs it, without installing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "costmeter-example"


@pytest.mark.integration
def test_the_example_plugins_tests_pass() -> None:
    env = {**os.environ, "PYTHONPATH": str(PLUGIN / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"],
        cwd=PLUGIN,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("success", "failure_exit_code", "logs_stream", "cancel", "rebuilt_handle"):
        assert f"TestExampleConformance::test_{check} PASSED" in result.stdout, result.stdout
