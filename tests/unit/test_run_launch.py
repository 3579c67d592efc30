"""The launch form's rules without Qt: what each field may hold and the sentence a refusal gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmeter.service.run_launch import (
    MAX_SWEEP_RUNS,
    LaunchError,
    LaunchForm,
    build_request,
    plan,
    split_command,
)


def refused(form: LaunchForm, gpu_limit: int | None = 2) -> LaunchError:
    with pytest.raises(LaunchError) as caught:
        build_request(form, gpu_limit=gpu_limit)
    return caught.value


def test_a_command_is_split_as_a_shell_would_and_an_open_quote_is_named() -> None:
    assert split_command("python t.py --name 'a b'") == ["python", "t.py", "--name", "a b"]
    error = refused(LaunchForm(command="python 't.py"))
    assert error.field == "command" and "close the quote" in str(error)
    assert refused(LaunchForm(command="   ")).field == "command"


def test_gpus_beyond_what_the_machine_has_are_refused_unless_the_backend_places_them() -> None:
    error = refused(LaunchForm(command="python t.py", gpus=3))
    assert error.field == "gpus" and "only 2" in str(error)
    assert "sees no GPU" in str(refused(LaunchForm(command="python t.py", gpus=1), 0))
    request = build_request(LaunchForm(command="python t.py", gpus=3), gpu_limit=None)
    assert request.specs[0].gpus == 3 and request.sweep is None


def test_a_sweep_expands_its_grid_and_names_its_runs() -> None:
    form = LaunchForm(command="python t.py --lr {lr} --bs {bs}", grid="lr=0.1,0.01\n\nbs=8,16")
    request = build_request(form, gpu_limit=0)
    assert len(request.specs) == 4 and request.sweep is not None
    assert {s.argv[-3] for s in request.specs} == {"0.1", "0.01"}
    assert len({s.name for s in request.specs}) == 4
    assert [name for name, _ in plan(form)] == [s.name for s in request.specs]


def test_grid_mistakes_name_the_line_and_what_to_do() -> None:
    assert "gives it no values" in str(refused(LaunchForm(command="t {lr}")))
    assert "is not used" in str(refused(LaunchForm(command="t", grid="lr=1,2")))
    assert "Line 1" in str(refused(LaunchForm(command="t {lr}", grid="lr")))
    big = ",".join(str(i) for i in range(MAX_SWEEP_RUNS + 1))
    assert str(MAX_SWEEP_RUNS) in str(refused(LaunchForm(command="t {n}", grid=f"n={big}")))


def test_limits_budget_and_directory_are_checked(tmp_path: Path) -> None:
    assert refused(LaunchForm(command="t", budget="lots")).field == "budget"
    assert refused(LaunchForm(command="t", time_limit="soon")).field == "time_limit"
    assert refused(LaunchForm(command="t", cwd=str(tmp_path / "nope"))).field == "cwd"
    assert refused(LaunchForm(command="t", max_parallel=0)).field == "max_parallel"
    assert refused(LaunchForm(command="t", per_gpu=0)).field == "per_gpu"
    request = build_request(
        LaunchForm(command="t", cwd=str(tmp_path), budget="2.5", time_limit="1h"), gpu_limit=0
    )
    (spec,) = request.specs
    assert spec.cwd == str(tmp_path) and spec.budget == 2.5 and spec.time_limit_s == 3600
