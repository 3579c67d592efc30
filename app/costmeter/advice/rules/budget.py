"""budget-forecast: a run, or today, on course to cost more than its budget."""

from __future__ import annotations

from costmeter.advice.facts import AdviceFacts
from costmeter.advice.model import Action, Evidence, Recommendation, Savings, Target
from costmeter.advice.thresholds import Thresholds

#: Days in an average month (365.25 / 12).
DAYS_PER_MONTH = 30.44


def budget_forecast(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """Unfinished runs whose cost, or forecast from progress reports, passes their budget; and
    the day's forecast (spent + the last hour's pace until midnight) past ``daily_budget``."""
    out = []
    cur = facts.currency
    for run in facts.runs:
        if run.budget is None or run.ended is not None:
            continue
        figure = max(v for v in (run.cost, run.forecast, 0.0) if v is not None)
        if figure <= run.budget * (1 + t.budget_margin):
            continue
        over = figure - run.budget
        kind = "its forecast" if run.forecast is not None and figure == run.forecast else "its cost"
        out.append(
            Recommendation(
                rule="budget-forecast",
                title=f"Run {run.id} ({run.name}) is on course to pass its budget",
                target=Target(host=run.host, run=run.id, run_name=run.name, sweep=run.sweep),
                evidence=Evidence(
                    start=run.started,
                    end=facts.end,
                    facts=(
                        ("Budget", f"{run.budget:.2f} {cur}"),
                        ("Cost so far", f"{run.cost or 0.0:.2f} {cur}"),
                        (
                            "Forecast",
                            f"{run.forecast:.2f} {cur}" if run.forecast is not None else "none",
                        ),
                        (
                            "Done",
                            f"{run.fraction:.0%}" if run.fraction is not None else "unknown",
                        ),
                    ),
                    values={
                        "budget": run.budget,
                        "cost": run.cost or 0.0,
                        "forecast": run.forecast if run.forecast is not None else -1.0,
                    },
                ),
                savings=Savings(
                    over,
                    cur,
                    0.0,
                    f"{kind} {figure:.2f} - budget {run.budget:.2f} = {over:.2f} {cur} "
                    "over (once, for this run)",
                    once=True,
                ),
                confidence=0.9 if run.fraction is not None and run.fraction >= 0.2 else 0.6,
                action=Action(
                    "Stop it, or let it finish knowing the overrun; next time set a smaller "
                    "configuration or a time limit."
                ),
                detail=f"{kind.capitalize()} is {figure:.2f} {cur}, over its {run.budget:.2f}.",
            )
        )
    day = facts.day_budget
    if day is not None and day.forecast > day.budget * (1 + t.budget_margin):
        over = day.forecast - day.budget
        out.append(
            Recommendation(
                rule="budget-forecast",
                title=f"Today is on course to cost {day.forecast:.2f} {cur}, over the daily "
                f"budget of {day.budget:.2f}",
                target=Target(host="all hosts"),
                evidence=Evidence(
                    start=day.day_start,
                    end=day.now,
                    facts=(
                        ("Daily budget", f"{day.budget:.2f} {cur}"),
                        ("Spent today", f"{day.spent:.2f} {cur}"),
                        ("Pace (last hour)", f"{day.per_hour:.2f} {cur}/h"),
                        ("Forecast for today", f"{day.forecast:.2f} {cur}"),
                    ),
                    values={
                        "budget": day.budget,
                        "spent": day.spent,
                        "per_hour": day.per_hour,
                        "forecast": day.forecast,
                    },
                ),
                savings=Savings(
                    over * DAYS_PER_MONTH,
                    cur,
                    0.0,
                    f"(forecast {day.forecast:.2f} - budget {day.budget:.2f}) x "
                    f"{DAYS_PER_MONTH} days/month = {over * DAYS_PER_MONTH:.2f} {cur}/month "
                    "if every day runs at this pace",
                ),
                confidence=min(1.0, 0.4 + (day.now - day.day_start) / 86400.0),
                action=Action(
                    "Act on the other recommendations here, stop idle work, or raise the "
                    "budget in Settings if the spending is planned.",
                    kind="settings",
                ),
                detail=(
                    f"Spent so far {day.spent:.2f} {cur}; at {day.per_hour:.2f} {cur}/h until "
                    "midnight the day ends over budget."
                ),
            )
        )
    return out
