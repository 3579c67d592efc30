"""Recommendations over stored history: gather facts, run the rules, apply dismiss/snooze.

The GUI calls these on its StoreReader thread and ``costmeter advise`` on its own Store.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from costmeter.advice.engine import evaluate
from costmeter.advice.model import Recommendation
from costmeter.advice.thresholds import Thresholds
from costmeter.config import Config
from costmeter.core.errors import ConfigError
from costmeter.service import advice_sql
from costmeter.service.advice_facts import gather_facts
from costmeter.service.run_reconcile import reconcile_stale_runs
from costmeter.store import Store

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
    messages.extend(_reconcile(store, end))
    facts, notes = gather_facts(store, config, start, end)
    messages.extend(notes)
    found, failed = evaluate(facts, thresholds)
    messages.extend(failed)
    states = _states(store, end)
    active = sorted((r for r in found if r.key not in states), key=_order)
    hidden = sorted((r for r in found if r.key in states), key=_order)
    # The window as examined: cut to the recorded history.
    return AdviceResult(
        tuple(active), tuple(hidden), tuple(messages), facts.start, facts.end, facts.currency
    )


def _reconcile(store: Store, now: float) -> list[str]:
    """Mark abandoned local runs lost first, so no rule judges a run that ended long ago as
    still going (a budget forecast charged up to now, for one)."""
    try:
        lost = reconcile_stale_runs(store.runs(), now=now)
    except (sqlite3.Error, OSError) as exc:
        return [f"Runs left running by a Costmeter that stopped could not be checked: {exc}."]
    if not lost:
        return []
    ids = ", ".join(str(i) for i in lost)
    return [f"Run(s) {ids} had no process left since Costmeter stopped: now marked lost."]


def _states(store: Store, now: float) -> set[str]:
    """Keys hidden now: dismissed, or snoozed until a later time."""
    rows = advice_sql.read_rows(store, "SELECT key, state, until FROM advice_state")
    return {
        str(key)
        for key, state, until in rows
        if state == DISMISSED or (state == SNOOZED and until is not None and until > now)
    }


def dismiss(store: Store, rec_key: str, rule: str) -> None:
    """Hide the recommendation until it is restored."""
    _set_state(store, rec_key, rule, DISMISSED, None)


def snooze(store: Store, rec_key: str, rule: str, until: float) -> None:
    """Hide the recommendation until ``until`` (a time): it comes back then if still true."""
    _set_state(store, rec_key, rule, SNOOZED, until)


def restore(store: Store, rec_key: str) -> None:
    """Show a dismissed or snoozed recommendation again."""
    advice_sql.write(store, "DELETE FROM advice_state WHERE key = ?", (rec_key,))


def _set_state(store: Store, key: str, rule: str, state: str, until: float | None) -> None:
    advice_sql.write(
        store,
        "INSERT INTO advice_state (key, rule, state, until, created) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET rule = excluded.rule, state = excluded.state,"
        " until = excluded.until, created = excluded.created",
        (key, rule, state, until, time.time()),
    )
