"""What the launch dialog's fields mean: the command split, the sweep grid expanded, limits parsed.

Qt-free, so the rules are tested without a dialog (``gui/widgets/launch_dialog.py`` shows them):
``build_request(form, gpu_limit)`` returns the runs to queue or raises ``LaunchError`` whose
message is the sentence the dialog shows, with the field it is about.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from costmeter.core import CostmeterError, units
from costmeter.core.tags import TagError, parse_tag_list
from costmeter.core.units import parse_duration
from costmeter.plugin_api import RunSpec
from costmeter.runs.commands import GridError, default_name, expand_grid, parse_grid, placeholders

#: A sweep larger than this is refused (a typo in a grid should not queue ten thousand runs).
MAX_SWEEP_RUNS = 500


class LaunchError(CostmeterError):
    """The form asks for something that cannot run; ``field`` names the widget to point at."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LaunchForm:
    """The dialog's fields as typed."""

    command: str
    cwd: str = ""
    backend: str = "local"
    gpus: int = 0
    name: str = ""
    budget: str = ""
    time_limit: str = ""
    #: One ``NAME=V1,V2,...`` per line (blank lines ignored).
    grid: str = ""
    max_parallel: int = 1
    per_gpu: int = 1
    #: A simulated workload profile for the runs' PIDs; None: each GPU's own.
    profile: str | None = None
    #: ``team=vision, owner=alice``: tags on every run (commas or new lines between tags).
    tags: str = ""


@dataclass(frozen=True)
class LaunchRequest:
    """Runs to queue on one backend (one run, or every point of a sweep)."""

    specs: tuple[RunSpec, ...]
    backend: str
    #: The sweep's name, shared by its runs; None for a single run.
    sweep: str | None
    max_parallel: int
    per_gpu: int
    profile: str | None = None
    #: The run these are launched again from (an applied recommendation); None otherwise.
    parent_id: int | None = None


def split_command(text: str) -> list[str]:
    """The command line split as a POSIX shell would (no expansion); LaunchError if it cannot."""
    if not text.strip():
        raise LaunchError(
            "Enter the command to run, for example: python train.py --epochs 3", "command"
        )
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise LaunchError(
            f"The command cannot be split into arguments ({str(exc).lower()}): close the quote "
            "or escape it with a backslash.",
            "command",
        ) from None
    if not argv:
        raise LaunchError("Enter the command to run.", "command")
    return argv


def parse_grid_text(text: str) -> list[tuple[str, tuple[str, ...]]]:
    grids = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            grids.append(parse_grid(line.strip()))
        except GridError as exc:
            if "is not a grid" in str(exc):
                message = (
                    f"Line {n} of the sweep grid, '{line.strip()}', is not NAME=V1,V2,… "
                    "(for example lr=0.1,0.01)."
                )
            else:
                message = f"Line {n} of the sweep grid: {exc}"
            raise LaunchError(message, "grid") from None
    names = [name for name, _ in grids]
    for name in names:
        if names.count(name) > 1:
            raise LaunchError(f"The sweep grid gives '{name}' on more than one line.", "grid")
    return grids


def parse_money(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return units.parse_money(text)
    except ValueError as exc:
        raise LaunchError(str(exc), "budget") from None


def parse_tags(text: str) -> dict[str, str]:
    """The tags field: ``team=vision, owner=alice``, the rules of ``--tag`` (keys of letters,
    digits, ``_ . -``; printable values; at most 32; a key given twice keeps its last value)."""
    try:
        return parse_tag_list(text)
    except TagError as exc:
        raise LaunchError(str(exc), "tags") from None


def parse_limit(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise LaunchError(str(exc), "time_limit") from None


def plan(form: LaunchForm) -> list[tuple[str, tuple[str, ...]]]:
    """The (name, argv) of every run the form asks for; LaunchError when it cannot tell."""
    return _points(form, split_command(form.command))


def _points(form: LaunchForm, argv: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(name, argv) of every run the form asks for."""
    grids = parse_grid_text(form.grid)
    used = placeholders(argv)
    names = [name for name, _ in grids]
    missing = [p for p in used if p not in names]
    if missing:
        raise LaunchError(
            f"The command uses {{{missing[0]}}}, but the sweep grid gives it no values: add a "
            f"line {missing[0]}=V1,V2,… to the grid, or take {{{missing[0]}}} out of the command.",
            "grid" if grids else "command",
        )
    unused = [n for n in names if n not in used]
    if unused:
        raise LaunchError(
            f"The grid line '{unused[0]}' is not used: put {{{unused[0]}}} in the command where "
            "its value goes, or remove the line.",
            "grid",
        )
    total = 1
    for _, values in grids:
        total *= len(values)
    if total > MAX_SWEEP_RUNS:
        raise LaunchError(
            f"The sweep grid makes {total} runs; the app launches at most {MAX_SWEEP_RUNS} at a "
            "time. Use fewer values.",
            "grid",
        )
    base = form.name.strip() or default_name(argv)
    if not grids:
        return [(base, tuple(argv))]
    try:
        return [(p.name, p.argv) for p in expand_grid(argv, grids, prefix=base)]
    except GridError as exc:  # pragma: no cover - the checks above catch what it refuses
        raise LaunchError(str(exc), "grid") from None


def build_request(form: LaunchForm, *, gpu_limit: int | None) -> LaunchRequest:
    """The runs the form asks for, or LaunchError saying what to change.

    ``gpu_limit``: the GPUs the backend can place runs on (None when the backend places GPUs
    itself and Costmeter cannot tell).
    """
    argv = split_command(form.command)
    cwd = form.cwd.strip()
    if cwd:
        path = Path(cwd).expanduser()
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise LaunchError(f"The working directory {cwd} {what}.", "cwd")
        cwd = str(path)
    if form.gpus < 0:
        raise LaunchError(f"A run cannot ask for {form.gpus} GPUs.", "gpus")
    if gpu_limit is not None and form.gpus > gpu_limit:
        if gpu_limit == 0:
            message = (
                f"The run asks for {form.gpus} GPU{'s' if form.gpus != 1 else ''}, but Costmeter "
                "sees no GPU here. Ask for 0 to run it on the CPU."
            )
        else:
            message = (
                f"The run asks for {form.gpus} GPUs, but Costmeter sees only {gpu_limit} here. "
                f"Ask for at most {gpu_limit}, or 0 to run it on the CPU."
            )
        raise LaunchError(message, "gpus")
    if form.max_parallel < 1:
        raise LaunchError("At least one run must be allowed at once.", "max_parallel")
    if form.per_gpu < 1:
        raise LaunchError("Each GPU must take at least one run.", "per_gpu")
    budget = parse_money(form.budget)
    limit = parse_limit(form.time_limit)
    tags = parse_tags(form.tags)
    points = _points(form, argv)
    try:
        specs = tuple(
            RunSpec(
                argv=run_argv,
                cwd=cwd or None,
                gpus=form.gpus,
                name=name,
                budget=budget,
                time_limit_s=limit,
                tags=dict(tags),
            )
            for name, run_argv in points
        )
    except ValueError as exc:
        raise LaunchError(str(exc), "command") from None
    sweep = None
    if form.grid.strip():
        base = form.name.strip() or default_name(argv)
        sweep = f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    return LaunchRequest(
        specs=specs,
        backend=form.backend,
        sweep=sweep,
        max_parallel=form.max_parallel,
        per_gpu=form.per_gpu,
        profile=form.profile,
    )
