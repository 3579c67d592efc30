"""Slurm's job states and pending reasons as Costmeter run states, with a sentence for the user.

| Slurm state | run state | message |
|---|---|---|
| PENDING (reason) | queued | "Waiting in the queue: Resources — the GPUs it asks for are in use." |
| CONFIGURING | starting | its nodes are being set up |
| RUNNING, COMPLETING | running | |
| SUSPENDED, STOPPED | running | suspended by Slurm |
| COMPLETED | succeeded | |
| FAILED | failed | exit code or signal |
| TIMEOUT | failed | "Hit its time limit (10 min)." |
| OUT_OF_MEMORY | failed | ran out of memory |
| PREEMPTED | failed | preempted for a higher-priority job |
| NODE_FAIL, BOOT_FAIL | failed | its node failed |
| DEADLINE | failed | could not finish before its deadline |
| CANCELLED | cancelled | by whom, when sacct says |
| REVOKED | lost | it runs on another cluster of the federation |
"""

from __future__ import annotations

import pwd
import signal

from costmeter.plugin_api import RunState
from costmeter_slurm.parse import JobInfo, format_time_limit

#: Pending reasons in words (Slurm's job_reason names, as squeue %r prints them).
PENDING_REASONS: dict[str, str] = {
    "None": "",
    "Priority": "jobs with a higher priority are ahead of it",
    "Dependency": "it waits for the jobs it depends on",
    "DependencyNeverSatisfied": "its dependency can never be satisfied; cancel it",
    "BeginTime": "its start time has not come yet",
    "JobHeldUser": "held by its user (scontrol release lets it go)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "NodeDown": "a node it needs is down",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit is longer than its partition allows",
    "PartitionNodeLimit": "it asks for more nodes than its partition allows",
    "PartitionConfig": "it asks for more than its partition has",
    "Licenses": "the licenses it needs are in use",
    "Reservation": "it waits for its reservation",
    "Cleaning": "Slurm is still cleaning up after an earlier run of it",
    "Prolog": "its prolog is running",
    "BadConstraints": "no node matches its constraints; cancel it and ask for less",
    "InvalidAccount": "its account is not valid; cancel it and fix the account",
    "InvalidQOS": "its QOS is not valid; cancel it and fix the QOS",
    "launch failed requeued held": "its launch failed; Slurm requeued and held it",
    "JobArrayTaskLimit": "its job array already runs as many tasks as its %K limit allows",
    "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority "
    "partitions": "the nodes it needs are down, drained or kept for higher-priority partitions",
}

_ACTIVE = {
    "RUNNING": RunState.RUNNING,
    "COMPLETING": RunState.RUNNING,
    "SIGNALING": RunState.RUNNING,
    "STAGE_OUT": RunState.RUNNING,
    "RESIZING": RunState.RUNNING,
    "SUSPENDED": RunState.RUNNING,
    "STOPPED": RunState.RUNNING,
    "CONFIGURING": RunState.STARTING,
    "PENDING": RunState.QUEUED,
    "REQUEUED": RunState.QUEUED,
    "REQUEUE_HOLD": RunState.QUEUED,
    "REQUEUE_FED": RunState.QUEUED,
    "RESV_DEL_HOLD": RunState.QUEUED,
}
FINISHED_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "CANCELLED",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)


def is_finished(state: str) -> bool:
    return state in FINISHED_STATES


def pending_words(reason: str, gpus: int | None) -> str:
    """A pending reason in words; ``Resources`` says what is busy."""
    if reason == "Resources":
        if gpus:
            return "Resources — the GPUs it asks for are all in use"
        return "Resources — the CPUs or memory it asks for are in use"
    if reason in PENDING_REASONS:
        words = PENDING_REASONS[reason]
        return f"{reason} — {words}" if words else ""
    if reason.startswith(("QOS", "Assoc")):
        return f"{reason} — a limit of its account or QOS holds it"
    return reason


def run_state(info: JobInfo, gpus_asked: int | None = None) -> tuple[RunState, str]:
    """The run state and a sentence for one job's state (``gpus_asked`` words Resources)."""
    state = info.state
    if state in _ACTIVE:
        return _ACTIVE[state], _active_message(info, gpus_asked)
    limit = format_time_limit(info.time_limit)
    where = info.batch_host or info.nodes
    code = info.exit_code
    if state == "COMPLETED":
        return RunState.SUCCEEDED, ""
    if state == "FAILED":
        return RunState.FAILED, _exit_words(code)
    if state == "TIMEOUT":
        return RunState.FAILED, f"Hit its time limit ({limit})." if limit else (
            "Hit its time limit."
        )
    if state == "OUT_OF_MEMORY":
        return RunState.FAILED, "Ran out of memory: Slurm stopped it at its memory limit."
    if state == "PREEMPTED":
        return RunState.FAILED, "Preempted: Slurm stopped it for a higher-priority job."
    if state == "NODE_FAIL":
        return RunState.FAILED, f"Its node {where} failed." if where else "Its node failed."
    if state == "BOOT_FAIL":
        return RunState.FAILED, "Its node failed to boot."
    if state == "DEADLINE":
        return RunState.FAILED, "It could not finish before its deadline."
    if state == "SPECIAL_EXIT":
        return RunState.FAILED, "It ended with a special exit; Slurm held it."
    if state == "CANCELLED":
        who = _user(info.cancelled_by)
        return RunState.CANCELLED, f"Cancelled in Slurm by {who}." if who else (
            "Cancelled in Slurm."
        )
    if state == "REVOKED":
        return RunState.LOST, "Revoked: it runs on another cluster of the federation."
    return RunState.RUNNING, f"Slurm says {state}." if state else ""


def _active_message(info: JobInfo, gpus_asked: int | None) -> str:
    state = info.state
    if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"):
        words = pending_words(info.reason, gpus_asked if gpus_asked is not None else info.gpus)
        prefix = "Requeued; waiting in the queue" if state != "PENDING" else "Waiting in the queue"
        return f"{prefix}: {words}." if words else f"{prefix}."
    if state == "CONFIGURING":
        return "Its nodes are being set up."
    if state in ("SUSPENDED", "STOPPED"):
        return "Suspended by Slurm."
    return ""


def _exit_words(code: int | None) -> str:
    if code is None:
        return "Failed."
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"Killed by signal {-code} ({name})."
    return f"Exited with code {code}."


def _user(uid: str | None) -> str:
    if not uid:
        return ""
    if uid.isdigit():
        try:
            return pwd.getpwuid(int(uid)).pw_name
        except KeyError:
            return f"user {uid}"
    return uid
