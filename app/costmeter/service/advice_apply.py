"""What "Apply" means for a recommendation whose action is ``relaunch``: the run's spec from its
row with the action's ``changes`` applied, as a launch form the user confirms.

Qt-free, so the rules are tested without a dialog; ``plan_relaunch`` and ``plan_sweep`` read the
rows on the store reader's thread. The changes a rule may ask for (see
``costmeter.advice.model.Action``): ``gpus`` (int), ``per_gpu`` (int: runs sharing one GPU),
``argv_append`` (arguments added to the command), ``env`` (variables set for the run).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from costmeter.core import CostmeterError
from costmeter.core.tags import clean_tags, format_tags
from costmeter.service.run_launch import LaunchError, LaunchForm, LaunchRequest, build_request
from costmeter.store import Store
from costmeter.store.runs import RunRow

KNOWN_CHANGES = frozenset({"gpus", "per_gpu", "argv_append", "env"})


class ApplyError(CostmeterError):
    """The recommendation cannot be applied here; the message says what to do instead."""


@dataclass(frozen=True)
class RelaunchPlan:
    """The child run to offer: the launch dialog's fields, the environment to add (the dialog has
    no field for it) and the run it comes from."""

    form: LaunchForm
    parent_id: int
    env: dict[str, str] = field(default_factory=dict)
    #: What changed, in words ("GPUs 4 → 1; adds --num-workers 8").
    changes: tuple[str, ...] = ()


def _int_change(changes: Mapping[str, Any], key: str, current: int) -> int:
    value = changes.get(key, current)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApplyError(f"The recommendation asks for {key}={value!r}, which is not a count.")
    return value


def _duration(seconds: object) -> str:
    if isinstance(seconds, int | float) and seconds > 0:
        return f"{float(seconds):g}s"
    return ""


def relaunch_plan(row: RunRow, changes: Mapping[str, Any]) -> RelaunchPlan:
    """The child run of ``row`` with ``changes`` applied; ApplyError when it cannot be made."""
    unknown = sorted(set(changes) - KNOWN_CHANGES)
    if unknown:
        raise ApplyError(
            f"The recommendation asks for a change the app cannot make ({', '.join(unknown)}); "
            "apply it by hand and launch the run from the Runs page."
        )
    spec = row.spec or {}
    argv = spec.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ApplyError(
            f"Run {row.id} has no command stored, so it cannot be launched again from here."
        )
    append = changes.get("argv_append", [])
    if not isinstance(append, list | tuple) or not all(isinstance(a, str) for a in append):
        raise ApplyError("The recommendation's added arguments are not a list of strings.")
    env_change = changes.get("env", {})
    if not isinstance(env_change, Mapping):
        raise ApplyError("The recommendation's environment change is not a table of variables.")
    old_gpus = spec.get("gpus", 0)
    old_gpus = old_gpus if isinstance(old_gpus, int) else 0
    gpus = _int_change(changes, "gpus", old_gpus)
    per_gpu = _int_change(changes, "per_gpu", 1)
    if per_gpu < 1:
        raise ApplyError("The recommendation asks for fewer than one run per GPU.")
    words = []
    if gpus != old_gpus:
        words.append(f"GPUs {old_gpus} → {gpus}")
    if "per_gpu" in changes:
        words.append(f"{per_gpu} runs per GPU")
    if append:
        words.append(f"adds {shlex.join(append)}")
    old_env = spec.get("env") or {}
    env = {str(k): str(v) for k, v in dict(old_env).items()}
    for key, value in env_change.items():
        words.append(f"sets {key}={value}")
        env[str(key)] = str(value)
    budget = spec.get("budget")
    form = LaunchForm(
        command=shlex.join([*argv, *append]),
        cwd=str(spec.get("cwd") or ""),
        backend=row.backend,
        gpus=gpus,
        name=f"{row.name}-advised",
        budget=f"{budget:g}" if isinstance(budget, int | float) and budget > 0 else "",
        time_limit=_duration(spec.get("time_limit_s")),
        per_gpu=per_gpu,
        # A child run is paid for by whoever paid for its parent.
        tags=format_tags(row.tags or clean_tags(spec.get("tags"))),
    )
    return RelaunchPlan(form=form, parent_id=row.id, env=env, changes=tuple(words))


def sweep_request(
    rows: list[RunRow], changes: Mapping[str, Any], sweep: str, *, gpu_limit: int | None
) -> tuple[list[LaunchRequest], tuple[str, ...]]:
    """Every run of a sweep again, each the child of its original, as one new sweep
    (``sweep`` names it): a request per run, since each has its own parent. ApplyError when
    one cannot be made."""
    if not rows:
        raise ApplyError("The sweep has no runs left in the database.")
    requests = []
    words: tuple[str, ...] = ()
    for row in sorted(rows, key=lambda r: r.id):
        plan = relaunch_plan(row, changes)
        words = plan.changes
        form = dataclasses.replace(
            plan.form, name=row.name, max_parallel=max(1, len(rows)), grid=""
        )
        try:
            request = build_request(form, gpu_limit=gpu_limit)
        except LaunchError as exc:
            raise ApplyError(f"Run {row.id} of the sweep cannot be launched again: {exc}") from None
        specs = tuple(dataclasses.replace(s, env=plan.env) for s in request.specs)
        requests.append(dataclasses.replace(request, specs=specs, sweep=sweep, parent_id=row.id))
    return requests, words


def plan_relaunch(store: Store, run_id: int, changes: Mapping[str, Any]) -> RelaunchPlan:
    """``relaunch_plan`` for the run stored as ``run_id``; ApplyError when it is gone."""
    row = store.runs().get(run_id)
    if row is None:
        raise ApplyError(f"Run {run_id} is no longer in the database.")
    return relaunch_plan(row, changes)


def plan_sweep(
    store: Store, sweep: str, changes: Mapping[str, Any], name: str, *, gpu_limit: int | None
) -> tuple[list[LaunchRequest], tuple[str, ...]]:
    """``sweep_request`` for every stored run of ``sweep``, as the new sweep ``name``."""
    return sweep_request(store.runs().list_runs(sweep=sweep), changes, name, gpu_limit=gpu_limit)
