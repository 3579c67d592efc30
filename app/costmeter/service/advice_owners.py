"""Who each recommendation is about: the owner of its run, or who held its GPU in the window.

One attribution pass over the advice window (``Store.attribution``) gives every process's share of
every GPU with its owner; a GPU is named after the owners who held it most ("alice (82 %)"), a
run after its user (with its project and job when known). Only reads.

The pass reads free GPU time (when no process was on a GPU) only for the GPUs a recommendation
names together with one that some process held (``free_needed``), and for GPUs runs were placed
on: free time only changes the percentages of a GPU someone held, and reading every GPU-minute
of a long window was most of the cost of ``advise`` (189k minutes on 137 GPUs x 23 h).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from costmeter.advice.facts import AdviceFacts
from costmeter.advice.model import Recommendation, Target
from costmeter.core.owner import Owner
from costmeter.cost.chargeback import AttributionData, AttributionRule, project_of

UNATTRIBUTED = "unattributed"
#: A GPU names at most this many owners, each holding at least ``MIN_SHARE`` of its window.
MAX_NAMED = 3
MIN_SHARE = 0.05


def who(owner: Owner) -> str | None:
    """The name an owner goes by: its user, else its Slurm job's user, pod or container."""
    if owner.user or owner.job_user:
        return owner.user or owner.job_user
    if owner.pod or owner.pod_uid:
        return f"pod {owner.pod or owner.pod_uid}"
    if owner.container or owner.container_id:
        return f"container {owner.container or (owner.container_id or '')[:12]}"
    if owner.job_id:
        return f"job {owner.job_id}"
    return None


@dataclass(frozen=True, slots=True)
class Owners:
    """Owners by GPU UUID and by run id, as sentences for ``Target.owner``."""

    #: A GPU's held time (seconds) per owner name, and its whole recorded time in the window.
    held: Mapping[str, Mapping[str, float]]
    recorded: Mapping[str, float]
    runs: Mapping[int, str]

    def of_devices(self, uuids: Iterable[str]) -> str | None:
        """``"alice (82 %)"``, ``"alice (60 %), bob (30 %)"``; None when nobody held them."""
        held: dict[str, float] = defaultdict(float)
        total = 0.0
        for uuid in uuids:
            total += self.recorded.get(uuid, 0.0)
            for name, seconds in self.held.get(uuid, {}).items():
                held[name] += seconds
        if total <= 0 or not held:
            return None
        ranked = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
        named = [(n, s) for n, s in ranked[:MAX_NAMED] if s / total >= MIN_SHARE] or ranked[:1]
        return ", ".join(f"{n} ({100.0 * s / total:.0f} %)" for n, s in named)

    def of_runs(self, ids: Iterable[int]) -> str | None:
        names = list(dict.fromkeys(self.runs[i] for i in ids if i in self.runs))
        return ", ".join(names) if names else None


def owners_from(attribution: AttributionData, rules: Sequence[AttributionRule] = ()) -> Owners:
    """Per-GPU held time by owner and each run's owner, from one ``Store.attribution``."""
    procs = attribution.processes
    held: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    recorded: dict[str, float] = defaultdict(float)
    run_owner: dict[int, Owner] = {}
    for proc_id in sorted(procs):
        record = procs[proc_id]
        if record.run_id is not None and record.owner.known:
            run_owner.setdefault(record.run_id, record.owner)
    for s in attribution.shares:
        seconds = s.busy_s + s.held_idle_s
        recorded[s.uuid] += seconds
        proc = procs.get(s.proc_id)
        name = who(proc.owner) if proc is not None else None
        if name is None and proc is not None and proc.run_id is not None:
            name = f"run {proc.run_id}"
        held[s.uuid][name or UNATTRIBUTED] += seconds
    for f in attribution.free:
        recorded[f.uuid] += f.seconds
        if f.run_id is not None:  # a Costmeter run placed on it, running nothing
            owner = run_owner.get(f.run_id)
            name = (who(owner) if owner is not None else None) or f"run {f.run_id}"
            held[f.uuid][name] += f.seconds
    runs = {}
    for run_id in {*run_owner, *attribution.run_tags}:
        text = run_text(run_owner.get(run_id), attribution.run_tags.get(run_id), rules)
        if text:
            runs[run_id] = text
    return Owners(held=held, recorded=recorded, runs=runs)


def run_text(
    owner: Owner | None, tags: Mapping[str, str] | None, rules: Sequence[AttributionRule]
) -> str | None:
    """``"alice (project vision, job 4242)"``; the project alone when no process was seen."""
    project = project_of(owner or Owner(), tags, rules)
    extra = [f"project {project}"] if project else []
    if owner is not None and owner.job_id:
        extra.append(f"job {owner.job_id}")
    name = who(owner) if owner is not None else None
    if name is None:
        return ", ".join(extra) or None
    return f"{name} ({', '.join(extra)})" if extra else name


def device_sets(recs: Sequence[Recommendation], facts: AdviceFacts) -> list[frozenset[str]]:
    """The GPUs (UUIDs) each recommendation about GPUs is named after, as ``of_devices`` reads
    them; runs and sweeps are left out (their owners come from their processes)."""
    out = []
    for r in recs:
        t = r.target
        if t.owner is None and t.run is None and not t.sweep and (t.uuid or t.group):
            out.append(frozenset(_uuids(t, facts)))
    return out


def free_needed(sets: Sequence[frozenset[str]], held: frozenset[str]) -> set[str]:
    """The GPUs whose free time counts: every GPU of a set of which someone held one."""
    return {uuid for s in sets if s & held for uuid in s}


def name_owners(
    recs: Sequence[Recommendation], facts: AdviceFacts, owners: Owners
) -> list[Recommendation]:
    """``recs`` with ``target.owner`` filled in (a target that names one already keeps it)."""
    return [replace(r, target=_named(r.target, facts, owners)) for r in recs]


def _named(t: Target, facts: AdviceFacts, owners: Owners) -> Target:
    if t.owner is not None:
        return t
    owner: str | None = None
    if t.run is not None:
        owner = owners.of_runs([t.run])
    elif t.sweep:
        owner = owners.of_runs(r.id for r in facts.runs if r.sweep == t.sweep)
    elif t.uuid or t.group:
        owner = owners.of_devices(_uuids(t, facts))
    return t if owner is None else replace(t, owner=owner)


def _uuids(t: Target, facts: AdviceFacts) -> list[str]:
    """A GPU target's UUID, or its group's GPUs (on its host, or on all for "3 hosts")."""
    if t.uuid:
        return [t.uuid]
    hosts = set() if re.fullmatch(r"\d+ hosts", t.host) else {t.host}
    return [d.uuid for d in facts.devices if d.name == t.group and (not hosts or d.host in hosts)]
