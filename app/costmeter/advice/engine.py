"""The rule registry and ``evaluate``: run every rule, keep one failing rule from sinking the rest,
and drop recommendations another rule's finding makes redundant (see ``SUPPRESSES``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from costmeter.advice.facts import AdviceFacts
from costmeter.advice.model import Recommendation
from costmeter.advice.rules import (
    budget,
    bursts,
    compute,
    hardware,
    idle,
    memory,
    placement,
    scaling,
    storage,
)
from costmeter.advice.thresholds import Thresholds

Rule = Callable[[AdviceFacts, Thresholds], list[Recommendation]]

#: Every rule by its stable id, in the order they run.
RULES: Mapping[str, Rule] = {
    "idle-gpu": idle.idle_gpu,
    "kept-allocation": idle.kept_allocation,
    "bursty-load": bursts.bursty_load,
    "underused-gpu": compute.underused_gpu,
    "overallocated": placement.overallocated,
    "memory-headroom": memory.memory_headroom,
    "memory-pressure": memory.memory_pressure,
    "cheaper-gpu": hardware.cheaper_gpu,
    "input-bound": compute.input_bound,
    "power-cap": compute.power_cap,
    "pack-sweep": placement.pack_sweep,
    "budget-forecast": budget.budget_forecast,
    "checkpoints": storage.checkpoints,
    "scaling": scaling.scaling,
}

#: When a rule fires for a target, these rules' findings for the same GPU (host, device, run)
#: are dropped: their fix is wrong or moot there. An idle GPU, or one kept after its work
#: ended, is not "under-used", worth a smaller model, or about to run out of memory (nothing
#: allocates on it): it should be released. An input-bound run's low utilisation is the CPU's
#: fault: a smaller GPU would not help. Memory pressure and headroom never meet (95% vs 40%).
#: A run that died out of memory keeps that finding whatever else fires (see ``_drop_redundant``).
#: cheaper-gpu replaces memory-headroom on the same GPU: both say "move to another model", and
#: its saving counts the slowdown there, which memory-headroom's price difference ignores. It
#: leaves underused-gpu alone: packing jobs is another lever (the two savings do not add up).
_RELEASE = (
    "underused-gpu",
    "memory-headroom",
    "power-cap",
    "input-bound",
    "memory-pressure",
    "cheaper-gpu",
)
SUPPRESSES: Mapping[str, tuple[str, ...]] = {
    "idle-gpu": _RELEASE,
    "kept-allocation": _RELEASE,
    "input-bound": ("underused-gpu", "power-cap"),
    "cheaper-gpu": ("memory-headroom",),
    # A board that fills up (or a run that died out of memory) hides what the work needs: its
    # peak is no measure of the memory another model must have.
    "memory-pressure": ("cheaper-gpu",),
}


def _same_gpu(r: Recommendation) -> tuple[str, int | None, int | None]:
    return (r.target.host, r.target.device, r.target.run)


def evaluate(
    facts: AdviceFacts,
    thresholds: Thresholds,
    rules: Mapping[str, Rule] | None = None,
) -> tuple[list[Recommendation], list[str]]:
    """Every rule's recommendations (redundant ones dropped) and one message per failed rule."""
    found: list[Recommendation] = []
    messages: list[str] = []
    for rule_id, rule in (RULES if rules is None else rules).items():
        try:
            found.extend(rule(facts, thresholds))
        except Exception as exc:
            messages.append(
                f"The rule '{rule_id}' failed and was skipped ({type(exc).__name__}: {exc})."
            )
    return _drop_redundant(found), messages


def _drop_redundant(found: list[Recommendation]) -> list[Recommendation]:
    drop: set[tuple[str, tuple[str, int | None, int | None]]] = set()
    for r in found:
        for other in SUPPRESSES.get(r.rule, ()):
            drop.add((other, _same_gpu(r)))
    # A sweep packed K per GPU replaces each of its runs' "under-used" and "memory headroom"
    # advice: packing uses the spare compute and memory those would save on.
    packed = {r.target.sweep for r in found if r.rule == "pack-sweep"}

    def keep(r: Recommendation) -> bool:
        if (r.rule, _same_gpu(r)) in drop and not _died_out_of_memory(r):
            return False
        packable = r.rule in ("underused-gpu", "memory-headroom")
        return not (packable and r.target.sweep is not None and r.target.sweep in packed)

    return [r for r in found if keep(r)]


def _died_out_of_memory(r: Recommendation) -> bool:
    return r.rule == "memory-pressure" and r.evidence.values.get("oom", 0.0) > 0
