"""Every command-line option that takes a number, a duration or money, through the real parser:
bad values end in argparse's usage message, exit status 2 and a sentence that names the value and
the bound, before the command starts."""

from __future__ import annotations

import argparse

import pytest

from costmeter.cli import arg_types
from costmeter.cli.main import build_parser

BAD = ("nan", "inf", "-1", "0", "1e-300", "1e308", "abc")

#: (command line before the option, option, a valid value, after the option, values that are
#: legitimately allowed among BAD).
OPTIONS: list[tuple[tuple[str, ...], str, str, tuple[str, ...], frozenset[str]]] = [
    (("record",), "--interval", "0.5", (), frozenset()),
    (("record",), "--duration", "90", (), frozenset()),
    (("record",), "--seed", "7", (), frozenset({"0"})),
    # --backfill 0 follows a Prometheus source without reading history.
    (
        ("record", "--prometheus", "http://127.0.0.1:9090"),
        "--backfill",
        "604800",
        (),
        frozenset({"0"}),
    ),
    (("record", "--prometheus", "http://127.0.0.1:9090"), "--step", "30", (), frozenset()),
    (("simulate", "--hours", "1"), "--interval", "10", (), frozenset()),
    (("simulate",), "--hours", "0.05", (), frozenset()),
    (("simulate", "--hours", "1"), "--seed", "3", (), frozenset({"0"})),
    (("report",), "--since", "7d", (), frozenset()),
    (("report",), "--by", "project,user", (), frozenset()),
    (("advise",), "--since", "1h", (), frozenset()),
    # 0 points: no accuracy loss allowed; 1e-300 points is as strict, and meaningful.
    (("compress", "m.pt", "--method", "fp16"), "--max-drop", "0.5", (), frozenset({"0", "1e-300"})),
    (("compress", "m.pt", "--method", "fp16"), "--batch", "256", (), frozenset()),
    (("compress", "m.pt", "--method", "fp16"), "--repeat", "10", (), frozenset()),
    (("example", "digits"), "--epochs", "5", (), frozenset()),
    (("example", "digits"), "--seed", "1", (), frozenset({"0"})),
    (("agent",), "--interval", "0.2", (), frozenset()),
    (("agent",), "--buffer-hours", "48", (), frozenset()),
    (("agent",), "--seed", "1", (), frozenset({"0"})),
    (("agent",), "--max-connections", "512", (), frozenset()),
    (("agent",), "--max-per-client", "32", (), frozenset()),
    (("agent",), "--request-timeout", "5", (), frozenset()),
    (("gui",), "--interval", "2", (), frozenset()),
    (("gui",), "--quit-after", "5", (), frozenset()),
    (("gui",), "--seed", "1", (), frozenset({"0"})),
    (("doctor",), "--seed", "1", (), frozenset({"0"})),
    (("runs",), "--limit", "10", (), frozenset()),
    (("checkpoints",), "--run", "12", (), frozenset()),
    # --keep 0: keep no numbered checkpoint (a best one and unnumbered ones are still kept).
    (("checkpoints", "--run", "1"), "--keep", "3", (), frozenset({"0"})),
    (("whatif",), "--run", "3", (), frozenset()),
    (("whatif", "--device", "gpu-01:0"), "--since", "1h", (), frozenset()),
]
for _cmd in ("run", "sweep"):
    _tail = ("--", "python", "train.py")
    OPTIONS += [
        ((_cmd,), "--interval", "0.1", _tail, frozenset()),
        ((_cmd,), "--budget", "$2.50", _tail, frozenset()),
        ((_cmd,), "--time-limit", "30m", _tail, frozenset()),
        ((_cmd,), "--seed", "1", _tail, frozenset({"0"})),
        # --gpus 0 and -1 reach the command, which explains them and records the refused run.
        ((_cmd,), "--gpus", "2", _tail, frozenset({"0", "-1"})),
    ]
OPTIONS += [
    (("sweep",), "--max-parallel", "2", ("--", "x"), frozenset()),
    (("sweep",), "--per-gpu", "2", ("--", "x"), frozenset()),
    # Processes per node; a sweep may also give a grid's {NAME} (tests/unit/test_sweep_nproc.py).
    (("run",), "--nproc-per-node", "2", ("--", "x"), frozenset()),
    (("sweep",), "--nproc-per-node", "2", ("--", "x"), frozenset()),
]

#: Typed options that take text, not a number: their rules are tested where they are defined
#: (``--tag``: tests/unit/test_run_tags.py).
NOT_NUMBERS = frozenset({"run --tag", "sweep --tag"})

CASES = [
    pytest.param(before, option, bad, after, id=f"{before[0]} {option} {bad}")
    for before, option, _good, after, allowed in OPTIONS
    for bad in BAD
    if bad not in allowed
]


@pytest.mark.parametrize(("before", "option", "bad", "after"), CASES)
def test_a_bad_value_exits_2_with_a_message_naming_it(
    before: tuple[str, ...],
    option: str,
    bad: str,
    after: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*before, option, bad, *after])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    message = err.strip().splitlines()[-1]
    assert f"argument {option}: " in message
    assert f"{bad} is not " in message or f"'{bad}' is not " in message, message
    assert any(w in message for w in ("; give ", "; use ", "; write ")), message


@pytest.mark.parametrize(
    ("before", "option", "good", "after"),
    [pytest.param(a, o, g, t, id=f"{a[0]} {o} {g}") for a, o, g, t, _ in OPTIONS],
)
def test_a_sane_value_is_taken(
    before: tuple[str, ...], option: str, good: str, after: tuple[str, ...]
) -> None:
    args = build_parser().parse_args([*before, option, good, *after])
    value = getattr(args, option.lstrip("-").replace("-", "_"))
    assert str(value) == good or float(value) == float(good)


def _actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{name} {a.option_strings[-1]}", a) for _n, a in _actions(sub)]
        elif action.option_strings:
            found.append(("", action))
    return found


def test_every_option_with_a_type_goes_through_a_bound() -> None:
    """A new ``type=float`` or ``type=int`` would take nan, inf and 1e308: refuse it here."""
    typed = {where: a.type for where, a in _actions(build_parser()) if a.type is not None}
    assert typed, "the parser has no typed options?"
    for where, convert in typed.items():
        assert convert not in (float, int), f"{where} uses type={convert.__name__}"
        assert getattr(convert, "__module__", "") == arg_types.__name__, where
    covered = {f"{before[0]} {option}" for before, option, *_ in OPTIONS}
    covered |= NOT_NUMBERS
    assert set(typed) <= covered, f"not tested here: {sorted(set(typed) - covered)}"
