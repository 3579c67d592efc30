"""Sentences for users: run statuses from node records, and connection problems."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Mapping
from typing import Any

from costmeter.plugin_api import BackendError, RunState, RunStatus


def status_from(rec: Mapping[str, Any]) -> RunStatus:
    node = rec.get("node") or None
    gpus = tuple(int(g) for g in rec.get("gpus", ()))
    started = rec.get("started")
    ended = rec.get("ended")
    common: dict[str, Any] = {"started": started, "node": node, "gpu_indices": gpus}
    if ended is None:
        pids = tuple(int(p) for p in rec.get("pids") or ([rec["pid"]] if rec.get("pid") else []))
        state = RunState.RUNNING if started is not None else RunState.STARTING
        message = ""
        if rec.get("command_code") is not None:
            message = (
                f"Its command exited with code {rec['command_code']}; waiting for the processes "
                "it left running."
            )
        return RunStatus(state, pids=pids, message=message, **common)
    common["ended"] = ended
    if started is None:  # it never started: the command or directory was wrong
        return RunStatus(RunState.FAILED, message=str(rec.get("message", "")), **common)
    code = rec.get("exit_code")
    if rec.get("cancel_requested"):
        message = "Cancelled by Costmeter."
        if rec.get("forced"):
            message = (
                "Cancelled by Costmeter; it did not stop within the grace period after "
                "SIGTERM and was killed with SIGKILL."
            )
        return RunStatus(RunState.CANCELLED, exit_code=code, message=message, **common)
    if code is None:
        return RunStatus(
            RunState.LOST,
            message=f"The Ray actor running it on {node} died (killed, or its worker crashed), "
            f"which stopped the command, so its exit code is unknown; its output is in "
            f"{rec.get('log')} on {node}.",
            **common,
        )
    code = int(code)
    if code == 0:
        return RunStatus(RunState.SUCCEEDED, exit_code=0, **common)
    if code < 0:
        message = f"Killed by signal {-code} ({signal_name(-code)}) from outside Costmeter."
    elif code == 127 and rec.get("message"):
        message = str(rec["message"])
    elif code > 128 and code - 128 < 65:
        message = (
            f"Exited with code {code}, which usually means signal {code - 128} "
            f"({signal_name(code - 128)})."
        )
    else:
        message = f"Exited with code {code}."
    return RunStatus(RunState.FAILED, exit_code=code, message=message, **common)


def first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    tail = [ln for ln in lines if "Error" in ln and not ln.startswith(("File", "Traceback"))]
    return (tail[-1] if tail else (lines[0] if lines else type(exc).__name__))[:500]


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def count(value: float, unit: str) -> str:
    return f"{num(value)} {unit}{'' if value == 1 else 's'}"


def num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast, with a sentence, when nothing answers at ``host:port``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise BackendError(
            f"[backends.ray] address {address!r} is not host:port (for example "
            f"'10.0.0.5:6379', the address `ray start --head` prints)."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise BackendError(
            f"Cannot reach the Ray cluster at {address} ({why}). Check that the cluster is "
            f"running and reachable from here: `ray status --address {address}`."
        ) from None


def connect_error(address: str | None, exc: Exception) -> BackendError:
    name = type(exc).__name__
    text = str(exc).split("\n", 1)[0]
    chain: list[str] = []
    seen: BaseException | None = exc  # Ray wraps the real reason (AuthenticationError) twice
    while seen is not None and len(chain) < 5:
        chain.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    everything = "\n".join(chain)
    if "AuthenticationError" in everything or "InvalidAuthToken" in everything:
        mode = os.environ.get("RAY_AUTH_MODE")
        now = (
            "RAY_AUTH_MODE is not set here, so no token was sent"
            if mode is None
            else f"RAY_AUTH_MODE is {mode!r} here"
        )
        return BackendError(
            f"The Ray cluster at {address} refused Costmeter's credentials ({now}). It uses "
            "token authentication: run Costmeter with RAY_AUTH_MODE=token and the cluster's "
            "token in RAY_AUTH_TOKEN (or in the file RAY_AUTH_TOKEN_PATH names, by default "
            "~/.ray/auth_token)."
        )
    if address is None:
        return BackendError(f"Ray could not start on this machine: {name}: {text}")
    return BackendError(
        f"Cannot connect to the Ray cluster at {address}: {text}. Check it with "
        f"`ray status --address {address}`."
    )
