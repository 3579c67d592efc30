"""Exit codes and backend failures in words, for a run's message."""

from __future__ import annotations

import signal

from costmeter.core.errors import CostmeterError
from costmeter.plugin_api import BackendError


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(exit_code: int | None) -> str:
    """Why a run failed, from its exit code (negative: killed by that signal, as Popen says)."""
    if exit_code is None:
        return "The run failed without an exit code."
    if exit_code < 0:
        return (
            f"The run was killed by {signal_name(-exit_code)} (signal {-exit_code}), "
            "which Costmeter did not send."
        )
    return f"The run exited with code {exit_code}."


def shell_exit_code(exit_code: int | None) -> int:
    """The code a shell would report: 128 + N for a process killed by signal N."""
    if exit_code is None:
        return 1
    if exit_code < 0:
        return 128 - exit_code
    return exit_code


def describe_failure(exc: BaseException, backend: str, doing: str) -> str:
    """A sentence for an exception from a backend call: its own message when it is one meant
    for users (``BackendError``, or Costmeter's guard already worded it), else a bug report."""
    if isinstance(exc, BackendError | CostmeterError):
        return str(exc)
    return (
        f"The backend '{backend}' failed to {doing}: {type(exc).__name__}: {exc}. "
        "This is a bug in the backend."
    )


def format_seconds(s: float) -> str:
    if s < 120:
        return f"{s:g} s"
    if s < 7200:
        return f"{s / 60:g} min"
    return f"{s / 3600:g} h"
