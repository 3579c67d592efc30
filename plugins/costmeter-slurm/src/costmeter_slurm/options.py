"""``[backends.slurm]`` options, checked once, with a sentence for each mistake.

Values may come from the config file (TOML types) or from ``--backend-option key=value``
(strings), so numbers and lists are also read from text.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from costmeter.plugin_api import BackendError

COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo")
KNOWN = frozenset(
    {
        "partition",
        "account",
        "time_limit",
        "extra_args",
        "poll_interval_s",
        "command_timeout_s",
        "gpu_type",
        "slurm_conf",
        *COMMANDS,
    }
)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    #: Slurm's time text for ``--time`` when a run has no time limit of its own.
    time_limit: str | None = None
    extra_args: tuple[str, ...] = ()
    #: How long one squeue answer serves every run's status (seconds).
    poll_interval_s: float = 1.0
    command_timeout_s: float = 30.0
    #: ``--gres=gpu:TYPE:N`` when set (``a100``), else ``--gres=gpu:N``.
    gpu_type: str | None = None
    #: ``SLURM_CONF`` for Slurm's commands, when not the system's.
    slurm_conf: str | None = None
    sbatch: str = "sbatch"
    squeue: str = "squeue"
    sacct: str = "sacct"
    scontrol: str = "scontrol"
    scancel: str = "scancel"
    sinfo: str = "sinfo"

    def command(self, name: str) -> str:
        return str(getattr(self, name))


def read_options(raw: Mapping[str, object]) -> SlurmOptions:
    unknown = sorted(set(raw) - KNOWN)
    if unknown:
        raise BackendError(
            f"[backends.slurm] has no option {', '.join(unknown)}; "
            f"the options are {', '.join(sorted(KNOWN))}."
        )
    paths = {name: _text(raw, name) or name for name in COMMANDS}
    time_limit = raw.get("time_limit")
    if isinstance(time_limit, int | float) and not isinstance(time_limit, bool):
        if time_limit <= 0:
            raise BackendError("[backends.slurm] time_limit must be more than 0 minutes.")
        time_limit = str(int(time_limit))
    return SlurmOptions(
        partition=_text(raw, "partition"),
        account=_text(raw, "account"),
        time_limit=_text({"time_limit": time_limit}, "time_limit") if time_limit else None,
        extra_args=_args(raw.get("extra_args")),
        poll_interval_s=_number(raw, "poll_interval_s", 1.0, least=0.0),
        command_timeout_s=_number(raw, "command_timeout_s", 30.0, least=1.0),
        gpu_type=_text(raw, "gpu_type"),
        slurm_conf=_text(raw, "slurm_conf"),
        **paths,
    )


def _text(raw: Mapping[str, object], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BackendError(f"[backends.slurm] {name} must be text, not {value!r}.")
    return value.strip() or None


def _number(raw: Mapping[str, object], name: str, default: float, least: float) -> float:
    value = raw.get(name)
    if value is None:
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BackendError(f"[backends.slurm] {name} must be a number, not {value!r}.") from None
    if isinstance(value, bool) or number < least:
        raise BackendError(f"[backends.slurm] {name} must be a number of at least {least}.")
    return number


def _args(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise BackendError(f"[backends.slurm] extra_args cannot be read: {exc}.") from None
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BackendError(
        '[backends.slurm] extra_args must be a list of strings, like ["--qos=high"].'
    )
