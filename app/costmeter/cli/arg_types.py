"""argparse ``type=`` functions for every option that takes a number, a duration or money.

Each checks the text against a named bound of ``costmeter.core.bounds``, so ``--interval nan``
ends in argparse's usage message and exit status 2 before anything starts:
``costmeter record: error: argument --interval: nan is not a number of seconds between samples;
give a value from 0.05 to 3600.`` Standard library and ``costmeter.core`` only (``main`` imports
this for ``--help``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from costmeter.core.bounds import GPUS, Bound, BoundError
from costmeter.core.tags import TagError, parse_tag
from costmeter.core.units import parse_duration, parse_money


def number(bound: Bound) -> Callable[[str], float]:
    """A float inside ``bound``."""

    def convert(text: str) -> float:
        try:
            return bound.parse(text, "")
        except BoundError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = bound.what  # argparse names the type in some messages
    return convert


def number_or_placeholder(bound: Bound) -> Callable[[str], float | str]:
    """A float inside ``bound``, or a sweep's ``{NAME}`` placeholder kept as text (the sweep
    puts each grid value in its place and checks it against ``bound`` then)."""
    check = number(bound)

    def convert(text: str) -> float | str:
        stripped = text.strip()
        if stripped.startswith("{") and stripped.endswith("}") and stripped[1:-1].isidentifier():
            return stripped
        return check(text)

    convert.__name__ = bound.what
    return convert


def whole(bound: Bound) -> Callable[[str], int]:
    """A whole number inside ``bound`` (``"3"``, also ``"3.0"``)."""

    def convert(text: str) -> int:
        try:
            return int(bound.parse(text, ""))
        except BoundError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = bound.what
    return convert


def duration(bound: Bound) -> Callable[[str], float]:
    """Seconds from ``90``, ``15m``, ``2h``, ``7d``, inside ``bound``."""

    def convert(text: str) -> float:
        try:
            return parse_duration(text, bound)
        except BoundError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = bound.what
    return convert


def money(bound: Bound) -> Callable[[str], float]:
    """An amount from ``2.50``, ``$2.50`` or ``2.50 EUR``, inside ``bound``."""

    def convert(text: str) -> float:
        try:
            return parse_money(text, bound)
        except BoundError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = bound.what
    return convert


#: What ``--gpus`` lets through to the run command: whole numbers up to ``GPUS.high``.
_GPUS_GIVEN = Bound(GPUS.what, -(2**31), GPUS.high, integer=True)


def gpus(text: str) -> int:
    """``--gpus N``: a whole number at most ``GPUS.high``. Below 1 passes: the run command
    explains it and records the refused run (``run_session.gpus_problem``)."""
    try:
        return int(_GPUS_GIVEN.parse(text, ""))
    except BoundError:
        raise argparse.ArgumentTypeError(GPUS.message("", text.strip() or repr(text))) from None


def duration_text(bound: Bound) -> Callable[[str], str]:
    """Like ``duration``, but keeps the text as given (``"24h"``) for commands that print it
    back; they parse it again with ``parse_duration``."""
    check = duration(bound)

    def convert(text: str) -> str:
        check(text)
        return text.strip()

    convert.__name__ = bound.what
    return convert


def money_text(bound: Bound) -> Callable[[str], str]:
    """Like ``money``, but keeps the text as given (``"$2.50"``)."""
    check = money(bound)

    def convert(text: str) -> str:
        check(text)
        return text.strip()

    convert.__name__ = bound.what
    return convert


def tag(text: str) -> tuple[str, str]:
    """``--tag KEY=VALUE``: one run tag (``costmeter.core.tags`` has the rules)."""
    try:
        return parse_tag(text)
    except TagError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def dimensions(text: str) -> str:
    """``report --by DIM[,DIM2]``: checked here, kept as given (the command parses it again)."""
    from costmeter.cost.chargeback import parse_by

    try:
        parse_by(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text.strip()
