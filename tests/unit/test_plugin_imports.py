"""Plugins under plugins/ use only the public API: costmeter.plugin_api and costmeter.core
(and, in their tests, costmeter.plugin_testing)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ("costmeter.plugin_api", "costmeter.core")
ALLOWED_IN_TESTS = (*ALLOWED, "costmeter.plugin_testing")


def costmeter_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "costmeter":  # from costmeter import plugin_api
                found += [f"costmeter.{a.name}" for a in node.names]
            else:
                found.append(node.module)
    return [m for m in found if m == "costmeter" or m.startswith("costmeter.")]


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_scanner_sees_every_form_of_import() -> None:
    source = (
        "import costmeter.store\nfrom costmeter import runs, plugin_api\n"
        "from costmeter.core.errors import X\nimport costmeter_example\nfrom . import y\n"
    )
    assert costmeter_imports(source) == [
        "costmeter.store",
        "costmeter.runs",
        "costmeter.plugin_api",
        "costmeter.core.errors",
    ]


def test_plugins_import_only_the_public_api() -> None:
    sources = sorted((ROOT / "plugins").glob("*/**/*.py"))
    assert any("costmeter-example" in str(p) for p in sources)
    bad = []
    for path in sources:
        is_test = "tests" in path.relative_to(ROOT / "plugins").parts
        for module in costmeter_imports(path.read_text(encoding="utf-8")):
            if not allowed(module, ALLOWED_IN_TESTS if is_test else ALLOWED):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert bad == []
