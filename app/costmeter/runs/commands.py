"""Commands as data: sweep grids over ``{NAME}`` placeholders, and a key for "the same command".

``expand_grid`` turns ``train.py --lr {lr} --bs {bs}`` and the grids ``lr=0.1,0.01`` ``bs=32,64``
into four argvs. ``command_key`` normalises an argv so that past runs of the same command can be
found for a cost estimate, however the command was spelled.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from costmeter.core.errors import CostmeterError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
#: python3, python3.11, python3.11d: the interpreter's name without its version.
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*[a-z]?$")


class GridError(CostmeterError):
    """A sweep's grid and its command do not fit together."""


@dataclass(frozen=True, slots=True)
class GridPoint:
    """One run of a sweep: its name, its argv and the values it got."""

    name: str
    argv: tuple[str, ...]
    values: tuple[tuple[str, str], ...]


def parse_grid(text: str) -> tuple[str, tuple[str, ...]]:
    """``"lr=0.1,0.01"`` -> ``("lr", ("0.1", "0.01"))``; GridError for a malformed one."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.fullmatch(name):
        raise GridError(
            f"'{text}' is not a grid. Write NAME=V1,V2,... (for example --grid lr=0.1,0.01)."
        )
    values = tuple(v.strip() for v in raw.split(","))
    if not raw.strip() or any(v == "" for v in values):
        raise GridError(f"The grid '{name}' has an empty value: '{text}'.")
    if len(set(values)) != len(values):
        raise GridError(f"The grid '{name}' lists a value twice: '{text}'.")
    return name, values


def placeholders(argv: Sequence[str]) -> list[str]:
    """The ``{NAME}`` placeholders in ``argv``, in order of first appearance."""
    seen: dict[str, None] = {}
    for arg in argv:
        for m in _PLACEHOLDER.finditer(arg):
            seen.setdefault(m.group(1), None)
    return list(seen)


def expand_grid(
    argv: Sequence[str], grids: Sequence[tuple[str, Sequence[str]]], *, prefix: str = "run"
) -> list[GridPoint]:
    """Every combination of the grids' values substituted into ``argv`` (the first grid varies
    slowest). Raises GridError when a placeholder has no grid, a grid is unused, or a grid is
    given twice."""
    names = [n for n, _ in grids]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GridError(f"The grid '{dupes[0]}' is given more than once.")
    used = placeholders(argv)
    missing = [n for n in used if n not in names]
    if missing:
        raise GridError(
            f"The command uses {{{missing[0]}}} but no --grid {missing[0]}=... gives its values."
        )
    unused = [n for n in names if n not in used]
    if unused:
        raise GridError(
            f"The grid '{unused[0]}' is not used: put {{{unused[0]}}} in the command where its "
            "value goes, or drop the grid."
        )
    values = dict(grids)
    points = []
    for combo in itertools.product(*(values[n] for n in names)):
        chosen = dict(zip(names, combo, strict=True))
        new_argv = tuple(_substitute(a, chosen) for a in argv)
        label = ",".join(f"{n}={v}" for n, v in chosen.items())
        name = f"{prefix}[{label}]" if label else prefix
        points.append(GridPoint(name, new_argv, tuple(chosen.items())))
    return points


def _substitute(arg: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], arg)


def command_key(argv: Sequence[str], gpus: int = 0) -> str:
    """A stable key for "the same command": the program's base name (``/usr/bin/python3.11`` and
    ``python`` agree), ``--opt=value`` split like ``--opt value``, paths normalised, and the GPU
    count (twice the GPUs is not the same cost)."""
    if not argv:
        return ""
    prog = os.path.basename(argv[0])
    if _PYTHON.match(prog):
        prog = _PYTHON.sub(r"\1", prog)
    out = [prog]
    for arg in argv[1:]:
        if arg.startswith("--") and "=" in arg:
            opt, _, value = arg.partition("=")
            out.extend((opt, _norm_path(value)))
        else:
            out.append(_norm_path(arg))
    key = shlex.join(out)
    return f"gpus={gpus} {key}"


def _norm_path(arg: str) -> str:
    if "/" in arg and not arg.startswith(("-", "{")) and "://" not in arg:
        return os.path.normpath(arg)
    return arg


def default_name(argv: Sequence[str]) -> str:
    """A short name for a run: the module of ``python -m pkg.mod``, a script's stem, or the
    program's base name."""
    if not argv:
        return "run"
    prog = os.path.basename(argv[0])
    if _PYTHON.match(prog) and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2:
            return argv[2].rsplit(".", 1)[-1]
        if not argv[1].startswith("-"):
            return os.path.splitext(os.path.basename(argv[1]))[0] or prog
    return prog
