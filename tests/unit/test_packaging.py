"""The wheel carries every package and the default price table."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_app_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT / "app").parts)
        for p in (ROOT / "app").rglob("__init__.py")
    }
    assert found | {"costmeter.resources"} == listed


def test_price_table_is_installed_as_package_data() -> None:
    table = resources.files("costmeter.resources").joinpath("pricing.toml")
    assert table.is_file() and "[[gpu]]" in table.read_text(encoding="utf-8")
