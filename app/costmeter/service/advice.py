"""Recommendations over stored history: gather facts, run the rules, apply dismiss/snooze.

The GUI calls these on its StoreReader thread and ``costmeter advise`` on its own Store.
``advise`` only reads: runs left "running" by a Costmeter that stopped are marked lost where
runs are managed (the run service at start-up, ``costmeter runs``), not here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from costmeter.advice.engine import evaluate
from costmeter.advice.model import Recommendation
from costmeter.advice.thresholds import Thresholds
from costmeter.config import Config
from costmeter.core.errors import ConfigError
from costmeter.service.advice_facts import gather_facts
from costmeter.service.advice_owners import device_sets, free_needed, name_owners, owners_from
from costmeter.store import Store, advice_states, clear_advice_state, set_advice_state

#: advice_state.state values.
DISMISSED = "dismissed"
SNOOZED = "snoozed"


@dataclass(frozen=True, slots=True)
class AdviceResult:
    #: Active recommendations, by savings (money) descending.
    recommendations: tuple[Recommendation, ...]
    #: Dismissed or snoozed ones (shown with ``--all``), in the same order.
    hidden: tuple[Recommendation, ...]
    #: Sentences for the user: a rule that failed, no price known...
    messages: tuple[str, ...]
    #: The window examined: the one asked for, cut to the recorded history.
    start: float
    end: float
    currency: str

    @property
    def total_savings_per_month(self) -> float:
        return sum(r.savings.money_per_month for r in self.recommendations if r.savings)


def _order(r: Recommendation) -> tuple[float, float, str]:
    money = r.savings.money_per_month if r.savings else 0.0
    return (-money, -r.confidence, r.key)


def advise(
    store: Store, config: Config, *, since_s: float, now: float | None = None
) -> AdviceResult:
    """Recommendations over the last ``since_s`` seconds up to ``now``."""
    end = time.time() if now is None else now
    start = end - since_s
    messages: list[str] = []
    try:
        thresholds = Thresholds.from_mapping(config.advice)
    except ConfigError as exc:
        messages.append(f"{exc} The default thresholds were used.")
        thresholds = Thresholds()
    with gc_paused():
        facts, notes = gather_facts(store, config, start, end)
        messages.extend(notes)
        found, failed = evaluate(facts, thresholds)
        messages.extend(failed)
        if found:  # who each one is about: one attribution pass over the window
            sets = device_sets(found, facts)
            attribution = store.attribution(
                facts.start, facts.end, free_of=partial(free_needed, sets)
            )
            found = name_owners(found, facts, owners_from(attribution, config.attribution.rules))
    states = _states(store, end)
    active = sorted((r for r in found if r.key not in states), key=_order)
    hidden = sorted((r for r in found if r.key in states), key=_order)
    # The window as examined: cut to the recorded history.
    return AdviceResult(
        tuple(active), tuple(hidden), tuple(messages), facts.start, facts.end, facts.currency
    )


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: ``advise`` builds a few hundred thousand
    short-lived row tuples and series, and the collector's passes over them were a sixth of
    its time (0.08 of 0.47 s on 137 GPUs x 23 h). Reference counting still frees them; cycles
    wait for the next collection. Collection is switched back on only if it was on, so two
    threads pausing at once leave it on."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _states(store: Store, now: float) -> set[str]:
    """Keys hidden now: dismissed, or snoozed until a later time."""
    return {
        s.key
        for s in advice_states(store)
        if s.state == DISMISSED or (s.state == SNOOZED and s.until is not None and s.until > now)
    }


def dismiss(store: Store, rec_key: str, rule: str) -> None:
    """Hide the recommendation until it is restored."""
    _set_state(store, rec_key, rule, DISMISSED, None)


def snooze(store: Store, rec_key: str, rule: str, until: float) -> None:
    """Hide the recommendation until ``until`` (a time): it comes back then if still true."""
    _set_state(store, rec_key, rule, SNOOZED, until)


def restore(store: Store, rec_key: str) -> None:
    """Show a dismissed or snoozed recommendation again."""
    clear_advice_state(store, rec_key)


def _set_state(store: Store, key: str, rule: str, state: str, until: float | None) -> None:
    set_advice_state(store, key, rule, state, until, created=time.time())
