"""Data-parallel runs without processes: torchrun's command line, the argv shapes refused, the
failure summary read from torchrun's real output, and the queue's refusals before submit."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_run_queue import ALL, FakeBackend, make, spec

from costmeter.plugin_api import Capability, RunState
from costmeter.runs.data_parallel import (
    DataParallelError,
    failure_from_text,
    gpus_problem,
    parse_command,
    rank_failure,
    torchrun_argv,
)

DATA = Path(__file__).parents[1] / "data"


def test_a_script_and_a_module_become_torchrun_commands(tmp_path: Path) -> None:
    script = torchrun_argv(["python3", "train.py", "--epochs", "2"], 2, tmp_path)
    assert script[:3] == ["python3", "-m", "torch.distributed.run"]
    assert script[script.index("--nproc-per-node") + 1] == "2"
    assert script[script.index("--role") + 1] == "rank"  # lines read [rank0]:...
    assert script[script.index("--log-dir") + 1] == str(tmp_path / "ranks")
    assert script[-3:] == ["train.py", "--epochs", "2"]
    module = torchrun_argv(["/usr/bin/python3.11", "-m", "pkg.train", "-x"], 4, tmp_path)
    assert module[0] == "/usr/bin/python3.11"
    assert module[-3:] == ["-m", "pkg.train", "-x"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["bash", "-c", "python train.py"], "not 'bash ...'"),
        (["./train.sh"], "not './train.sh ...'"),
        (["python"], "not (nothing)"),
        (["python", "-u", "train.py"], "not -u"),
        (["python", "-m"], "not -m"),
    ],
)
def test_other_command_shapes_are_refused_in_words(argv: list[str], words: str) -> None:
    with pytest.raises(DataParallelError, match="--nproc-per-node") as err:
        parse_command(argv)
    assert words in str(err.value)


def test_more_processes_than_gpus_is_a_problem() -> None:
    assert gpus_problem(2, 0) is None  # processes on the CPU
    assert gpus_problem(2, 2) is None
    problem = gpus_problem(4, 2)
    assert problem is not None and "asks for 2 GPUs" in problem and "--gpus 4" in problem


def test_torchruns_own_failure_summary_names_the_rank_and_its_error() -> None:
    # tests/data/torchrun_rank_failure.log: torch 2.13's torchrun, rank 1 raised (PROVENANCE.md).
    message = rank_failure(DATA / "torchrun_rank_failure.log")
    assert message == (
        "Rank 1 failed (exit code 1): RuntimeError: rank one ran out of data. PyTorch's "
        "launcher then stopped the other ranks."
    )


def test_a_killed_rank_is_named_without_guessing_an_error() -> None:
    text = (
        "[rank0]:epoch 1\n"
        "Root Cause (first observed failure):\n[0]:\n  time      : 2026-12-06_00:23:15\n"
        "  rank      : 0 (local_rank: 0)\n  exitcode  : -9 (pid: 30220)\n"
        "  error_file: <N/A>\n  traceback : Signal 9 (SIGKILL) received by PID 30220\n"
        "============================================================\n"
    )
    assert failure_from_text(text) == (
        "Rank 0 failed (killed by signal 9 (SIGKILL)). PyTorch's launcher then stopped the "
        "other ranks."
    )
    assert failure_from_text("Traceback: an ordinary failure\n") is None


def test_the_error_file_of_a_recorded_rank_is_preferred(tmp_path: Path) -> None:
    error_file = tmp_path / "error.json"
    error_file.write_text('{"message": {"message": "ValueError: bad shard 3", "extraInfo": {}}}')
    text = (
        "Root Cause (first observed failure):\n[0]:\n  rank      : 3 (local_rank: 3)\n"
        f"  exitcode  : 1 (pid: 1)\n  error_file: {error_file}\n"
    )
    message = failure_from_text(text)
    assert message is not None and message.startswith("Rank 3 failed (exit code 1): ValueError")


@pytest.mark.parametrize(
    ("caps", "gpus", "nproc", "words"),
    [
        (ALL, 0, 2, "cannot start data-parallel runs"),
        (ALL | {Capability.DATA_PARALLEL}, 1, 2, "asks for 1 GPU"),
    ],
)
def test_the_queue_refuses_before_submitting(
    tmp_path: Path, caps: frozenset[Capability], gpus: int, nproc: int, words: str
) -> None:
    backend = FakeBackend(caps)
    q, _ = make(backend, tmp_path, gpu_count=2)
    info = q.submit(spec("ok", "0.01", gpus=gpus, nproc_per_node=nproc), run_dir=tmp_path / "r")
    assert info.state == RunState.FAILED
    assert words in info.message
    assert not backend.runs  # never submitted


def test_the_queue_submits_a_data_parallel_run_to_a_backend_that_can(tmp_path: Path) -> None:
    backend = FakeBackend(ALL | {Capability.DATA_PARALLEL})
    q, _ = make(backend, tmp_path, gpu_count=2)
    q.submit(spec("ok", "0.01", gpus=2, nproc_per_node=2), run_dir=tmp_path / "r")
    assert q.wait(5)
    assert len(backend.runs) == 1
