"""The what-if estimate in words: the table's cells and the closing sentence (CLI and app)."""

from __future__ import annotations

from costmeter.core.units import format_duration
from costmeter.cost.run_cost import format_cost
from costmeter.cost.whatif import GIB, Option, WhatIf, margin_bytes

HEADERS = ("model", "fits", "memory", "est. duration", "est. cost", "saving", "basis")
#: Columns of numbers (right-aligned).
NUMERIC = frozenset({2, 3, 4, 5})


def duration_text(seconds: float) -> str:
    """Tenths of a second under a minute (a short run's estimate is seconds)."""
    return f"{seconds:.1f} s" if seconds < 60 else format_duration(seconds)


def fits_text(o: Option) -> str:
    if o.current:
        return "ran here"
    return {True: "yes", False: "no", None: "?"}[o.fits]


def cells(o: Option, currency: str) -> list[str]:
    """One row of the table, as text."""
    return [
        o.model,
        fits_text(o),
        f"{o.memory_gib:g} GiB" if o.memory_gib is not None else "-",
        duration_text(o.duration_s) if o.duration_s is not None else "-",
        format_cost(o.cost, currency) if o.cost is not None else "-",
        f"{o.saving_share:+.0%}" if o.saving_share is not None and not o.current else "",
        # Why it does not fit (or has no estimate) first, then the figures it stands on.
        "; ".join(text for text in (o.reason, o.basis) if text),
    ]


def closing(result: WhatIf) -> str:
    """One sentence naming the cheapest model that fits, and what the estimate stands on."""
    w = result.workload
    here = w.model or w.device_name
    cur = result.currency
    peak = (
        f"peak {w.peak_mem_bytes / GIB:.1f} GiB ({w.peak_basis}) + "
        f"{margin_bytes(w.peak_mem_bytes) / GIB:.1f} GiB margin"
        if w.peak_mem_bytes is not None
        else "peak memory unknown"
    )
    best = result.cheapest_fit()
    if result.actual_cost is None:
        head = f"The {here} it ran on has no price or no table row: nothing to compare with."
    elif best is None or best.cost is None:
        head = f"No other priced model that fits has an estimate for this work on the {here}."
    elif best.cost >= result.actual_cost:
        head = (
            f"The {here} it ran on is already the cheapest that fits "
            f"({format_cost(result.actual_cost, cur)})."
        )
    else:
        head = (
            f"Cheapest that fits: {best.model}, about {format_cost(best.cost, cur)} instead of "
            f"{format_cost(result.actual_cost, cur)} on the {here} "
            f"({best.saving_share or 0:.0%} less)."
        )
    return f"{head} This is {result.stands_on()}; {peak}."
