"""`costmeter plugins`: the real `local` entry point in table and JSON; failures are rows."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json

import pytest

from costmeter import __version__
from costmeter.cli import plugins_cmd
from costmeter.cli.main import main
from costmeter.plugin_api import API_VERSION, ENTRY_POINT_GROUP
from costmeter.runs.registry import Registry


def test_table_lists_local(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "name",
        "version",
        "API",
        "version",
        "status",
        "capabilities",
        "error",
    ]
    (row,) = [line for line in lines if line.startswith("local ")]
    caps = "cancel,data-parallel,gpus,logs"
    assert row.split() == ["local", __version__, API_VERSION, "ok", caps]


def test_json_lists_local(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    (local,) = [r for r in rows if r["name"] == "local"]
    assert local == {
        "name": "local",
        "version": __version__,
        "api_version": API_VERSION,
        "status": "ok",
        "capabilities": ["cancel", "data-parallel", "gpus", "logs"],
        "error": "",
    }


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_broken_plugin_is_shown_and_the_command_succeeds(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    local = next(ep for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "local")
    broken = md.EntryPoint("broken", "no_such_plugin_module:Backend", ENTRY_POINT_GROUP)
    code = plugins_cmd.run(argparse.Namespace(format=fmt), Registry([local, broken]))
    out = capsys.readouterr().out
    assert code == 0
    error = "backend 'broken' could not be imported from 'no_such_plugin_module:Backend': "
    error += "ModuleNotFoundError: No module named 'no_such_plugin_module'."
    if fmt == "json":
        rows = {r["name"]: r for r in json.loads(out)}
        assert rows["broken"]["status"] == "failed" and rows["broken"]["error"] == error
        assert rows["local"]["status"] == "ok"
    else:
        (row,) = [line for line in out.splitlines() if line.startswith("broken ")]
        assert row.split()[:5] == ["broken", "-", "-", "failed", "-"] and row.endswith(error)
        assert "1 backend(s) failed to load; the others work as usual." in out
