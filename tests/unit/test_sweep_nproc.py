"""``--nproc-per-node {n}`` in a sweep: the grid's values become each run's processes, checked
like the option's own; ``costmeter run`` needs a number and a Python command."""

from __future__ import annotations

import pytest

from costmeter.cli.main import build_parser
from costmeter.cli.run_session import UsageError, spec_from
from costmeter.cli.sweep_points import sweep_specs
from costmeter.runs.commands import GridError

CMD = ["python", "-m", "costmeter.examples.digits_ddp", "--epochs", "{e}"]


def test_a_grid_value_sets_each_runs_processes() -> None:
    args = build_parser().parse_args(
        ["sweep", "--grid", "n=1,2", "--grid", "e=3", "--nproc-per-node", "{n}", "--", *CMD]
    )
    points, specs = sweep_specs(args, CMD, "ddp")
    assert [p.name for p in points] == ["ddp[n=1,e=3]", "ddp[n=2,e=3]"]
    assert [s.nproc_per_node for s in specs] == [1, 2]
    assert all(s.argv[-1] == "3" for s in specs)  # the command's own placeholder too
    assert [dict(p.values) for p in points] == [{"n": "1", "e": "3"}, {"n": "2", "e": "3"}]


def test_a_fixed_n_applies_to_every_run() -> None:
    args = build_parser().parse_args(
        ["sweep", "--grid", "e=3,4", "--nproc-per-node", "2", "--", *CMD]
    )
    _, specs = sweep_specs(args, CMD, "ddp")
    assert [s.nproc_per_node for s in specs] == [2, 2]


@pytest.mark.parametrize(
    ("grid", "nproc", "error", "words"),
    [
        ("n=0,2", "{n}", UsageError, "0 is not a number of processes per node"),
        ("n=1,2", "{m}", GridError, "uses {m} but no --grid m="),
    ],
)
def test_bad_values_are_refused_in_words(
    grid: str, nproc: str, error: type[Exception], words: str
) -> None:
    args = build_parser().parse_args(
        ["sweep", "--grid", grid, "--grid", "e=3", "--nproc-per-node", nproc, "--", *CMD]
    )
    with pytest.raises(error, match=words.replace("{", r"\{").replace("}", r"\}")):
        sweep_specs(args, CMD, "ddp")


def test_run_takes_no_placeholder_and_only_python_commands() -> None:
    args = build_parser().parse_args(["run", "--nproc-per-node", "{n}", "--", "python", "t.py"])
    with pytest.raises(UsageError, match="works in costmeter sweep"):
        spec_from(args, ["python", "t.py"])
    args = build_parser().parse_args(["run", "--nproc-per-node", "2", "--", "bash", "t.sh"])
    with pytest.raises(UsageError, match=r"write the command as 'python train\.py"):
        spec_from(args, ["bash", "t.sh"])
    assert spec_from(args, ["python3", "t.py"]).nproc_per_node == 2
