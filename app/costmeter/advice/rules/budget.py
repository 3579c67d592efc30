"""budget-forecast: a run, or today, on course to cost more than its budget."""

from __future__ import annotations

from costmeter.advice.facts import AdviceFacts, OwnerBudget
from costmeter.advice.model import Action, Evidence, Recommendation, Savings, Target
from costmeter.advice.thresholds import Thresholds

#: Days in an average month (365.25 / 12).
DAYS_PER_MONTH = 30.44


def budget_forecast(facts: AdviceFacts, t: Thresholds) -> list[Recommendation]:
    """Unfinished runs whose cost, or forecast from progress reports, passes their budget; the
    day's forecast (spent + the last hour's pace until midnight) past ``daily_budget``; and each
    owner's day forecast or month-end projection past its ``[[budgets]]`` entry."""
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
    out.extend(r for b in facts.owner_budgets if (r := _owner_budget(b, cur, t)) is not None)
    return out


def _owner_budget(b: OwnerBudget, cur: str, t: Thresholds) -> Recommendation | None:
    """One card per owner: its day forecast past ``daily``, its month end past ``monthly``."""
    margin = 1 + t.budget_margin
    day_over = b.daily is not None and b.day_forecast > b.daily * margin
    month_over = b.monthly is not None and b.month_end > b.monthly * margin
    if not (day_over or month_over):
        return None
    name = b.label[:1].upper() + b.label[1:]
    facts: list[tuple[str, str]] = []
    values: dict[str, float] = {}
    per_month: list[tuple[float, str]] = []
    titles = []
    if b.daily is not None:
        facts += [
            ("Daily budget", f"{b.daily:.2f} {cur}"),
            ("Spent today", f"{b.spent_today:.2f} {cur}"),
            ("Pace (last hour)", f"{b.per_hour:.2f} {cur}/h"),
            ("Forecast for today", f"{b.day_forecast:.2f} {cur}"),
        ]
        values |= {
            "daily_budget": b.daily,
            "spent_today": b.spent_today,
            "per_hour": b.per_hour,
            "day_forecast": b.day_forecast,
        }
        if day_over:
            over = b.day_forecast - b.daily
            titles.append(f"{b.day_forecast:.2f} {cur} today (daily budget {b.daily:.2f})")
            per_month.append(
                (
                    over * DAYS_PER_MONTH,
                    f"(forecast {b.day_forecast:.2f} - budget {b.daily:.2f}) x {DAYS_PER_MONTH} "
                    f"days/month = {over * DAYS_PER_MONTH:.2f} {cur}/month if every day runs "
                    "at this pace",
                )
            )
    if b.monthly is not None:
        facts += [
            ("Monthly budget", f"{b.monthly:.2f} {cur}"),
            ("Spent this month", f"{b.month_to_date:.2f} {cur}"),
            ("Month end (projected)", f"{b.month_end:.2f} {cur}"),
        ]
        values |= {
            "monthly_budget": b.monthly,
            "month_to_date": b.month_to_date,
            "month_end": b.month_end,
        }
        if month_over:
            over = b.month_end - b.monthly
            titles.append(f"{b.month_end:.2f} {cur} this month (monthly budget {b.monthly:.2f})")
            per_month.append(
                (
                    over,
                    f"projected month end {b.month_end:.2f} - budget {b.monthly:.2f} = "
                    f"{over:.2f} {cur} over this month",
                )
            )
    money, formula = max(per_month)
    # Sure by how much of the day (or of a week of history) the figures stand on.
    day_part = (b.now - b.day_start) / 86400.0
    confidence = min(1.0, 0.4 + max(day_part if day_over else 0.0, b.days_observed / 7 * 0.5))
    return Recommendation(
        rule="budget-forecast",
        title=f"{name} is on course to cost " + " and ".join(titles),
        target=Target(host="all hosts", owner=b.label),
        evidence=Evidence(
            start=b.day_start if not month_over else b.now - b.days_observed * 86400.0,
            end=b.now,
            facts=tuple(facts),
            values=values,
        ),
        savings=Savings(money, cur, 0.0, formula),
        confidence=confidence,
        action=Action(
            f"Look at what {b.label} runs (costmeter report --by {b.by}), stop idle work that "
            "it holds, or raise its [[budgets]] entry in the config file if the spending is "
            "planned."
        ),
        detail=(
            f"Spent {b.spent_today:.2f} {cur} today and {b.month_to_date:.2f} {cur} this month; "
            f"at the current pace {b.label} ends over budget."
        ),
    )
