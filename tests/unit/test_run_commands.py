"""Sweep grids, the "same command" key for estimates, and default run names."""

from __future__ import annotations

import pytest

from costmeter.runs.commands import (
    GridError,
    command_key,
    default_name,
    expand_grid,
    parse_grid,
    placeholders,
)


def test_parse_grid() -> None:
    assert parse_grid("lr=0.1,0.01") == ("lr", ("0.1", "0.01"))
    assert parse_grid(" bs = 32 , 64 ") == ("bs", ("32", "64"))
    for bad in ("lr", "=1,2", "lr=", "lr=1,,2", "lr=1,1", "1x=2"):
        with pytest.raises(GridError):
            parse_grid(bad)


def test_expand_grid_substitutes_every_combination() -> None:
    argv = ["python", "train.py", "--lr", "{lr}", "--tag=bs{bs}"]
    points = expand_grid(argv, [("lr", ("0.1", "0.01")), ("bs", ("32", "64"))], prefix="train")
    assert [p.argv for p in points] == [
        ("python", "train.py", "--lr", "0.1", "--tag=bs32"),
        ("python", "train.py", "--lr", "0.1", "--tag=bs64"),
        ("python", "train.py", "--lr", "0.01", "--tag=bs32"),
        ("python", "train.py", "--lr", "0.01", "--tag=bs64"),
    ]
    assert points[1].name == "train[lr=0.1,bs=64]"
    assert points[1].values == (("lr", "0.1"), ("bs", "64"))
    assert placeholders(argv) == ["lr", "bs"]


def test_grid_errors() -> None:
    with pytest.raises(GridError, match=r"uses \{bs\} but no --grid bs"):
        expand_grid(["x", "{lr}", "{bs}"], [("lr", ("1",))])
    with pytest.raises(GridError, match="'seed' is not used"):
        expand_grid(["x", "{lr}"], [("lr", ("1",)), ("seed", ("1", "2"))])
    with pytest.raises(GridError, match="more than once"):
        expand_grid(["x", "{lr}"], [("lr", ("1",)), ("lr", ("2",))])


def test_command_key_normalises_spelling() -> None:
    a = command_key(["/usr/bin/python3.11", "./train.py", "--epochs=20"], 1)
    b = command_key(["python", "train.py", "--epochs", "20"], 1)
    assert a == b
    assert command_key(["python", "train.py", "--epochs", "20"], 2) != b
    assert command_key(["python", "train.py", "--epochs", "30"], 1) != b


def test_default_name() -> None:
    assert default_name(["python", "-m", "costmeter.examples.digits"]) == "digits"
    assert default_name(["python3", "scripts/train.py", "--x"]) == "train"
    assert default_name(["/bin/true"]) == "true"
    assert default_name(["python", "-c", "pass"]) == "python"
