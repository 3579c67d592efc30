"""Ending a process the user picked from the Processes page, safely and without Qt.

The GUI asks for confirmation and then calls ``terminate``; everything that can go wrong comes
back as one sentence for the status bar, never as an exception. Refusals protect the user from
a stale table: simulated PIDs and the negative PIDs standing for an exporter's Kubernetes
workloads (they name no real process), this app itself, and a PID that was reused by a new
process since it was sampled (detected by its start time).
"""

from __future__ import annotations

import os

import psutil

from costmeter.sampling.simulated import PID_BASE

#: Two readings of one process's start time agree to well within this (psutil derives it from
#: boot time and clock ticks); a recycled PID started at a different moment.
CREATE_TIME_TOLERANCE_S = 0.5


def is_simulated(pid: int) -> bool:
    """Simulated GPU processes live above Linux's largest ``pid_max``."""
    return pid >= PID_BASE


def refusal(pid: int) -> str | None:
    """Why ``pid`` must not be signalled at all, or None when it may be (after confirmation)."""
    if is_simulated(pid):
        return (
            f"PID {pid} is a simulated process (part of --simulate), so there is nothing to "
            "terminate."
        )
    if pid < 0:  # costmeter.service.remote.pods: a workload named by dcgm-exporter, no PID
        return (
            f"PID {pid} stands for a Kubernetes workload that dcgm-exporter reported, not a "
            "process of this machine; Costmeter will not terminate it (use kubectl)."
        )
    if pid == os.getpid():
        return f"PID {pid} is Costmeter itself; quit the app instead of terminating it."
    if pid <= 1:
        # 0 would signal our own process group through kill(2); 1 is init.
        return f"PID {pid} is a system process; Costmeter will not terminate it."
    return None


def terminate(pid: int, create_time: float | None = None) -> str:
    """Send SIGTERM to ``pid`` and say what happened, in one sentence.

    ``create_time`` is the start time recorded when the process was sampled; when given and the
    running process started at another time, the PID has been reused and nothing is sent. Does
    not wait for the process to exit: the next sample shows whether it did.
    """
    reason = refusal(pid)
    if reason is not None:
        return reason
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > (
            CREATE_TIME_TOLERANCE_S
        ):
            return (
                f"PID {pid} now belongs to a different process (the one shown has exited), "
                "so nothing was sent."
            )
        name = proc.name()
        proc.terminate()
    except psutil.NoSuchProcess:
        return f"PID {pid} has already exited."
    except psutil.AccessDenied:
        return (
            f"Permission denied: PID {pid} belongs to another user. Run `kill {pid}` as that "
            "user or with sudo."
        )
    except OSError as exc:  # anything else the OS says (rare): still a sentence
        return f"Could not terminate PID {pid}: {exc.strerror or exc}."
    return f"Sent SIGTERM to PID {pid} ({name}); it should exit shortly."
