"""The architecture's import rules, enforced: a violation fails the test suite."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "app" / "costmeter"
STORE = PACKAGE / "store"


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


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def store_private_names(store: Path = STORE) -> set[str]:
    """Every ``self._x`` / ``cls._x`` attribute and ``_method`` of the classes in ``store``."""
    names: set[str] = set()
    for path in store.rglob("*.py"):
        for cls in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in ("self", "cls")
                    and _private(node.attr)
                ):
                    names.add(node.attr)
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _private(
                    node.name
                ):
                    names.add(node.name)
    return names


def private_store_uses(source: str, filename: str, names: set[str]) -> Iterator[str]:
    """Where ``source`` reaches into the store: ``x._conn`` (x not self/cls), ``getattr(x,
    "_conn")``, or ``from costmeter.store... import _name``."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr in names:
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                yield f"{filename}:{node.lineno}: {ast.unparse(node)}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in names
        ):
            yield f"{filename}:{node.lineno}: {ast.unparse(node)}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("costmeter.store"):
            for alias in node.names:
                if _private(alias.name):
                    yield f"{filename}:{node.lineno}: import {alias.name} from {node.module}"


def test_nothing_outside_the_store_touches_its_private_attributes() -> None:
    names = store_private_names()
    assert {"_conn", "_mutex", "_db"} <= names  # the check sees what Store hides
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORE in path.parents:
            continue
        found += private_store_uses(path.read_text(), str(path.relative_to(ROOT)), names)
    assert not found, "use the store's public API instead:\n" + "\n".join(found)


def test_the_private_attribute_check_catches_each_way_in() -> None:
    names = {"_conn", "_mutex", "_db"}
    bad = (
        "with store._mutex:\n    store._conn.execute('SELECT 1')\n"
        "db = getattr(store, '_db')\n"
        "from costmeter.store.database import _plain_connect\n"
    )
    assert sorted(f.split(":")[1] for f in private_store_uses(bad, "x.py", names)) == list("1234")
    good = "self._conn = 1\nstore.path\nstore.runs()\nfrom costmeter.store import Store\n"
    assert list(private_store_uses(good, "y.py", names)) == []


def test_the_sqlite_contract_covers_every_package_but_the_store() -> None:
    """A new top-level module or package is not exempt from "only the store talks to SQLite"."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if "sqlite3" in c.get("forbidden_modules", ())
    ]
    tops = {
        f"costmeter.{p.stem}"
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert set(contract["source_modules"]) == tops - {"costmeter.store"}
