"""``costmeter.runs.tracking`` on /proc files someone else captured (prometheus/procfs
fixtures, see tests/data/runs/PROVENANCE.md), laid out as a /proc tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from costmeter.runs.tracking import MARK_ENV, ProcStat, RunProcesses, read_mark, read_stat

DATA = Path(__file__).resolve().parents[1] / "data" / "runs" / "procfs"


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A /proc with the fixtures' processes, each under the pid the fixture was stored as."""
    root = tmp_path / "proc"
    for stat in DATA.glob("*.stat"):
        (root / stat.stem).mkdir(parents=True)
        shutil.copy(stat, root / stat.stem / "stat")
    shutil.copy(DATA / "26231.environ", root / "26231" / "environ")
    return root


def test_stat_fields_of_real_processes(proc: Path) -> None:
    assert read_stat(26231, proc) == ProcStat(26231, "R", 5392, 7446, 82375)
    assert read_stat(26232, proc) == ProcStat(26232, "S", 2, 0, 5)  # a kernel thread
    assert read_stat(27079, proc) == ProcStat(27079, "S", 1, 27079, 4289574)
    assert read_stat(404, proc) is None  # gone


def test_a_command_name_with_spaces_and_parentheses(proc: Path) -> None:
    """``(a b ) ( c d) ``: the fields start after the *last* ')' of the first line."""
    assert read_stat(584, proc) == ProcStat(584, "R", 28378, 1020, 10839175)


def test_the_marker_in_a_real_environment_block(proc: Path) -> None:
    environ = proc / "26231" / "environ"
    assert read_mark(26231, proc) is None  # vim's environment has no marker
    real = environ.read_bytes()
    environ.write_bytes(real + f"{MARK_ENV}=abc123\0".encode())
    assert read_mark(26231, proc) == "abc123"
    environ.write_bytes(f"{MARK_ENV}=first\0".encode() + real)
    assert read_mark(26231, proc) == "first"
    environ.write_bytes(real + f"X{MARK_ENV}=not-this\0".encode())  # another variable's name
    assert read_mark(26231, proc) is None
    environ.write_bytes(real + f"{MARK_ENV}=no-final-nul".encode())
    assert read_mark(26231, proc) == "no-final-nul"


def test_a_scan_of_the_tree_finds_the_group_the_marker_and_descendants(proc: Path) -> None:
    # 27079 leads its own group; 26231's parent (5392) and 584's do not exist here.
    environ = proc / "26231" / "environ"
    environ.write_bytes(environ.read_bytes() + f"{MARK_ENV}=k\0".encode())
    assert RunProcesses(27079, "other", proc=proc).scan() == [27079]
    assert RunProcesses(27079, "k", proc=proc).scan() == [27079, 26231]
    assert RunProcesses(27079, "k", by_group=False, proc=proc).scan() == [26231]
    # A child of a marked process is the run's whatever its environment says.
    (proc / "999").mkdir()
    (proc / "999" / "stat").write_bytes(b"999 (child) S 26231 999 999 0 -1 0" + b" 0" * 12 + b" 7")
    assert read_stat(999, proc) == ProcStat(999, "S", 26231, 999, 7)
    assert RunProcesses(27079, "k", proc=proc).scan() == [27079, 999, 26231]
    # Zombies run nothing: they are not counted.
    stat = proc / "26231" / "stat"
    stat.write_bytes(stat.read_bytes().replace(b") R ", b") Z ", 1))
    assert RunProcesses(27079, "k", proc=proc).scan() == [27079]
