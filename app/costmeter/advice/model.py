"""What a recommendation is: the contract between the rules, the ``advise`` command and the GUI.

Everything here is plain data (standard library only) so that a recommendation can be printed,
turned into JSON, drawn, dismissed by its ``key`` and compared in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Hours in an average month (365.25 x 24 / 12): savings per month = savings per hour x this.
HOURS_PER_MONTH = 730.5


@dataclass(frozen=True, slots=True)
class Target:
    """What a recommendation is about: a host, one of its GPUs, and/or a run (or a sweep)."""

    host: str
    #: The GPU's index on its host (NVML index); None for a host- or run-wide recommendation.
    device: int | None = None
    #: The GPU's UUID (stable across reboots, unlike the index).
    uuid: str | None = None
    #: The GPU's model name, for titles ("NVIDIA A100-SXM4-80GB").
    device_name: str | None = None
    run: int | None = None
    run_name: str | None = None
    sweep: str | None = None
    #: A group of GPUs judged together: the GPU model whose replicas it is ("NVIDIA L40S").
    group: str | None = None
    #: Who pays for it: a run's user (with its project and job when known), the owner(s) who
    #: held a GPU most in the window ("alice (82 %)", "unattributed"), a budget's owner
    #: ("project vision"); None when nobody held it (idle, free) or for all hosts.
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "device": self.device,
            "uuid": self.uuid,
            "device_name": self.device_name,
            "run": self.run,
            "run_name": self.run_name,
            "sweep": self.sweep,
            "group": self.group,
            "owner": self.owner,
        }


@dataclass(frozen=True, slots=True)
class EvidenceSeries:
    """A series to draw beside the recommendation (a GPU's utilisation, its memory used...)."""

    #: What it is, for the legend ("GPU utilisation").
    label: str
    #: The unit of ``values`` ("%", "GiB", "W", "cores").
    unit: str
    ts: tuple[float, ...]
    values: tuple[float, ...]
    #: A horizontal line to draw with it: the rule's threshold in the same unit; None for none.
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """The numbers behind a recommendation, over a stated window."""

    start: float
    end: float
    #: The figures a person reads, in order: ("p95 GPU utilisation", "12 %"), ...
    facts: tuple[tuple[str, str], ...]
    #: The same figures as numbers, by a stable key, for JSON ("p95_util_pct": 12.0).
    values: dict[str, float] = field(default_factory=dict)
    series: tuple[EvidenceSeries, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "facts": [{"label": k, "value": v} for k, v in self.facts],
            "values": dict(self.values),
            "series": [
                {
                    "label": s.label,
                    "unit": s.unit,
                    "points": len(s.ts),
                    "threshold": s.threshold,
                }
                for s in self.series
            ],
        }


@dataclass(frozen=True, slots=True)
class Savings:
    """Money and energy a month if the action is taken, and how they were worked out."""

    money_per_month: float
    currency: str
    kwh_per_month: float
    #: The formula with its figures, in words a user can check:
    #: "1 GPU x 3.67 USD/h x 82% idle x 730.5 h/month".
    formula: str
    #: The figure is a one-off (a waste or an overrun that happened), not per month.
    once: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "money": round(self.money_per_month, 2),
            "currency": self.currency,
            "kwh": round(self.kwh_per_month, 2),
            "formula": self.formula,
            "once": self.once,
        }


#: What applying a recommendation can do, in the GUI and in ``advise`` JSON.
ACTION_KINDS = ("none", "relaunch", "compress", "settings", "delete_files")


@dataclass(frozen=True, slots=True)
class Action:
    """What to do: ``text`` says it; ``kind`` says what the app can do about it.

    ``relaunch``: run ``target.run`` again as a child run with ``changes`` applied to its spec
    (keys of the run's spec: "gpus", "per_gpu", "argv_append", "env"). ``compress``: open the
    compression dialog. ``settings``: open the settings page. ``delete_files``: delete the
    files listed in ``changes["files"]`` (path, bytes, mtime_ns) of run ``changes["run"]``, each
    one only after the user confirmed the list (service/checkpoint_apply.py). ``none``: only
    the text.
    """

    text: str
    kind: str = "none"
    changes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "changes": dict(self.changes)}


@dataclass(frozen=True, slots=True)
class Recommendation:
    rule: str
    title: str
    target: Target
    evidence: Evidence
    #: None when no money can be stated (no price known); the text then says why.
    savings: Savings | None
    #: 0..1: how sure the rule is (how long and how steady the evidence is).
    confidence: float
    action: Action
    #: One or two sentences: why this matters and what the numbers mean.
    detail: str = ""

    @property
    def key(self) -> str:
        """Stable across runs of the rules: the rule and what it is about (for dismiss/snooze).

        The owner is part of it only for a target that is nothing but an owner (a budget per
        owner): the owner of a GPU or a run changes with time, the GPU or the run does not."""
        t = self.target
        parts = [self.rule, t.host, t.uuid or (str(t.device) if t.device is not None else "")]
        parts.append(str(t.run) if t.run is not None else (t.sweep or t.group or ""))
        if t.owner and not parts[2] and not parts[3]:
            parts.append(t.owner)
        return "|".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rule": self.rule,
            "title": self.title,
            "detail": self.detail,
            "target": self.target.to_json(),
            "savings_per_month": self.savings.to_json() if self.savings else None,
            "confidence": round(self.confidence, 2),
            "action": self.action.to_json(),
            "evidence": self.evidence.to_json(),
        }
