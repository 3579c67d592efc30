"""Data-parallel runs: one command started as N processes by PyTorch's own launcher.

A run with ``RunSpec.nproc_per_node`` = N > 1 whose command is ``python script.py ARGS`` or
``python -m module ARGS`` is started as ``python -m torch.distributed.run --standalone --nnodes 1
--nproc-per-node N --role rank --tee 3 --log-dir RUN_DIR/ranks [-m] script ARGS`` with the
user's own interpreter (the one that would have run the script, so its torch is the one used).
``--role rank`` with ``--tee 3`` makes torchrun print every line of a worker as ``[rank0]:...``
and keep each rank's stdout and stderr under ``ranks/``. Other command shapes are refused in
words: torchrun can only start a Python script or module once per rank.

When a rank fails, torchrun stops the others and ends with a ``ChildFailedError`` summary
naming the first rank that failed, its exit code and, when the script uses torch's ``@record``,
an error file; :func:`rank_failure` turns that into the run's message.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Folder (in the run directory) where torchrun keeps each rank's stdout and stderr.
RANKS_DIR = "ranks"
#: torchrun's ``--role``: its tee prefixes each line with ``[{role}{local_rank}]:``.
ROLE = "rank"
#: How much of the end of the log is read to find torchrun's failure summary.
TAIL_BYTES = 256 * 1024

_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_ROOT = re.compile(r"Root Cause \(first observed failure\):(?P<block>.*?)(?:={20,}|\Z)", re.S)
_FIELD = re.compile(r"^\s*(?P<key>rank|exitcode|error_file|traceback)\s*:\s*(?P<value>.*)$", re.M)


class DataParallelError(ValueError):
    """The run's command cannot be started once per rank (the message says why)."""


@dataclass(frozen=True)
class Launch:
    """What torchrun is asked to start: a script path or a module, with its arguments."""

    interpreter: str
    target: str
    module: bool
    args: tuple[str, ...]


def parse_command(argv: Sequence[str]) -> Launch:
    """``python script.py ...`` or ``python -m mod ...``; DataParallelError otherwise."""
    if not argv or not _PYTHON.match(Path(argv[0]).name):
        first = argv[0] if argv else ""
        raise DataParallelError(
            f"--nproc-per-node starts the command through PyTorch's launcher, which runs a "
            f"Python script or module once per process: write the command as 'python "
            f"train.py ...' or 'python -m package.module ...', not '{first} ...'."
        )
    if len(argv) >= 3 and argv[1] == "-m":
        return Launch(argv[0], argv[2], True, tuple(argv[3:]))
    if len(argv) >= 2 and not argv[1].startswith("-"):
        return Launch(argv[0], argv[1], False, tuple(argv[2:]))
    what = argv[1] if len(argv) >= 2 else "(nothing)"
    raise DataParallelError(
        f"--nproc-per-node needs the script or '-m module' right after '{argv[0]}', not "
        f"{what}: PyTorch's launcher starts each process with its own interpreter, so "
        "interpreter options go in the environment (PYTHONUNBUFFERED, PYTHONOPTIMIZE, ...)."
    )


def torchrun_argv(argv: Sequence[str], nproc: int, run_dir: Path) -> list[str]:
    """The command that starts ``argv`` as ``nproc`` ranks on this machine."""
    launch = parse_command(argv)
    return [
        launch.interpreter,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--role",
        ROLE,
        "--tee",
        "3",
        "--log-dir",
        str(Path(run_dir) / RANKS_DIR),
        *(["-m"] if launch.module else []),
        launch.target,
        *launch.args,
    ]


def gpus_problem(nproc: int, gpus: int) -> str | None:
    """With GPUs asked for, each rank needs one of them (the script picks cuda:LOCAL_RANK)."""
    if gpus > 0 and nproc > gpus:
        return (
            f"--nproc-per-node {nproc} starts one process per GPU, but the run asks for "
            f"{gpus} GPU{'s' if gpus != 1 else ''}: ask for --gpus {nproc}, or for at most "
            f"{gpus} processes (leave out --gpus for processes on the CPU)."
        )
    return None


def rank_failure(log: Path) -> str | None:
    """The run's message when torchrun ended because a rank failed: which rank, how, and its
    last error line; None when the log holds no torchrun failure summary."""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(size - TAIL_BYTES, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return failure_from_text(text)


def failure_from_text(text: str) -> str | None:
    """See :func:`rank_failure` (on the log's text)."""
    found = _ROOT.search(text)
    if found is None:
        return None
    fields = {m["key"]: m["value"].strip() for m in _FIELD.finditer(found["block"])}
    rank_text = fields.get("rank", "")
    rank = rank_text.split()[0] if rank_text else "?"
    how = _exit_words(fields.get("exitcode", ""))
    error = _error_file_message(fields.get("error_file", ""))
    if error is None and how.startswith("exit code "):  # a killed rank printed no error
        error = _last_error_line(text, rank)
    message = f"Rank {rank} failed ({how})"
    if error:
        message += f": {error}"
    return message + ". PyTorch's launcher then stopped the other ranks."


def _exit_words(exitcode: str) -> str:
    code_text = exitcode.split()[0] if exitcode else ""
    try:
        code = int(code_text)
    except ValueError:
        return "exit code unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by signal {-code} ({name})"
    return f"exit code {code}"


def _error_file_message(path: str) -> str | None:
    """The error torch's ``@record`` wrote for the rank, when the script uses it."""
    if not path or path.startswith("<"):
        return None
    try:
        record = json.loads(Path(path).read_text())
        message = record["message"]
        text = message["message"] if isinstance(message, dict) else message
    except (OSError, ValueError, KeyError, TypeError):
        return None
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def _last_error_line(text: str, rank: str) -> str | None:
    """The rank's last line that starts at the margin (a traceback's exception line)."""
    prefix = f"[{ROLE}{rank}]:"
    last = None
    for line in text.splitlines():
        if line.startswith(prefix):
            body = line[len(prefix) :]
            if body.startswith(prefix + " "):  # torch prefixes a rank's traceback itself too
                body = body[len(prefix) + 1 :]
            if body.strip() and not body[:1].isspace() and not body.startswith("Traceback"):
                last = body.strip()
    return last
