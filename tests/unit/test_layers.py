"""The architecture's import rules, enforced: a violation fails the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_version_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from costmeter.cli.main import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'psutil', 'pynvml', 'sqlite_utils', 'numpy', 'torch', 'PySide6', 'pyqtgraph'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    from costmeter import __version__

    assert result.stdout.splitlines()[0] == f"costmeter {__version__}"
    assert result.stdout.splitlines()[-1] == "[]"
