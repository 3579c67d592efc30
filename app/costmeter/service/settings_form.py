"""From the Settings form's text to a ``Config``, with every refusal put in words (Qt-free).

The form only turns text into numbers here (and checks the order of the retention periods, whose
sentence reads better than the loader's); every other rule is the loader's own, applied when the
writer reads its text back, and ``in_words`` rephrases the loader's message for the field.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from costmeter.config import (
    AlertsConfig,
    Config,
    CostConfig,
    RetentionConfig,
    SamplingConfig,
    StorageConfig,
    number_problem,
)
from costmeter.cost.pricing import PriceRow, Pricing
from costmeter.service.form_text import FieldError, number_text, parse_number

#: Fields in money: their unit follows the currency in force.
MONEY_UNITS = {
    "cost.tariff_per_kwh": "per kWh",
    "cost.cpu_core_hour": "per core-hour",
    "cost.storage_gb_month": "per GB-month",
    "alerts.daily_budget": "per day",
}

#: key -> (the message beside the field, the line in the summary at the top)
Problems = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class FieldSpec:
    #: How the field is named in the summary at the top of the page.
    label: str
    #: A number to show in "enter a number such as …".
    example: str
    #: The value in force, from a configuration (None: empty, or "forever").
    read: Callable[[Config], float | str | None]
    #: Empty is refused (else empty means the default, or none).
    required: bool = False
    #: Put in a retention field when "forever" is unticked and it is empty.
    fallback: float = 0.0


FIELDS: dict[str, FieldSpec] = {
    "sampling.interval_s": FieldSpec(
        "Sampling interval", "1", lambda c: c.sampling.interval_s, True
    ),
    "sampling.process_scan_interval_s": FieldSpec(
        "Process list interval", "10", lambda c: c.sampling.process_scan_interval_s, True
    ),
    "retention.raw_days": FieldSpec(
        "Retention of raw samples", "7", lambda c: c.retention.raw_days, True, 7.0
    ),
    "retention.minute_days": FieldSpec(
        "Retention of 1-minute data", "90", lambda c: c.retention.minute_days, True, 90.0
    ),
    "retention.hour_days": FieldSpec(
        "Retention of 1-hour data", "730", lambda c: c.retention.hour_days, True, 730.0
    ),
    "alerts.idle_allocated_minutes": FieldSpec(
        "Idle-but-allocated alert", "30", lambda c: c.alerts.idle_allocated_minutes, True
    ),
    "alerts.daily_budget": FieldSpec("Daily budget", "50", lambda c: c.alerts.daily_budget),
    "cost.currency": FieldSpec("Currency", "", lambda c: c.cost.currency),
    "cost.tariff_per_kwh": FieldSpec("Electricity tariff", "0.25", lambda c: c.cost.tariff_per_kwh),
    "cost.carbon_g_per_kwh": FieldSpec(
        "Carbon intensity", "400", lambda c: c.cost.carbon_g_per_kwh
    ),
    "cost.cpu_core_hour": FieldSpec("CPU price", "0.04", lambda c: c.cost.cpu_core_hour),
    "cost.cpu_tdp_w": FieldSpec("CPU power (TDP)", "65", lambda c: c.cost.cpu_tdp_w),
    "cost.storage_gb_month": FieldSpec("Storage price", "0.08", lambda c: c.cost.storage_gb_month),
    "storage.database": FieldSpec(
        "Database file", "", lambda c: str(c.storage.database) if c.storage.database else None
    ),
}

#: Finer, then coarser, with the words for each.
_RESOLUTIONS = (
    ("retention.raw_days", "raw samples"),
    ("retention.minute_days", "1-minute data"),
    ("retention.hour_days", "1-hour data"),
)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def in_words(message: str, key: str) -> tuple[str, str]:
    """The loader's ``message`` about ``key``, as (beside the field, in the summary).

    "interval_s must be greater than 0, got 0.0." becomes "Must be greater than 0, got 0.0." beside
    the field and "Sampling interval: must be greater than 0, got 0.0." at the top.
    """
    leaf = key.rsplit(".", 1)[-1]
    text = message.removeprefix(f"{leaf} ")
    label = FIELDS[key].label if key in FIELDS else key
    return _sentence(text), f"{label}: {text}"


def build_config(
    texts: Mapping[str, str],
    forever: Mapping[str, bool],
    gpu_rows: tuple[PriceRow, ...],
    path: Path,
) -> tuple[Config | None, Problems]:
    """The ``Config`` the form describes, or None and what is wrong, field by field."""
    problems: Problems = {}
    values: dict[str, float | None] = {}
    for key, spec in FIELDS.items():
        if key in ("cost.currency", "storage.database"):
            continue
        if forever.get(key, False):
            values[key] = None
            continue
        try:
            value = parse_number(texts.get(key, ""), spec.example)
            if value is None and spec.required:
                raise FieldError(f"enter a number such as {spec.example}.")
        except FieldError as err:
            problems[key] = (_sentence(str(err)), f"{spec.label}: {err}")
            continue
        out_of_bounds = number_problem(key, value) if value is not None else None
        if out_of_bounds is not None:  # the loader's bound and words, beside the field
            problems[key] = in_words(out_of_bounds, key)
            continue
        values[key] = value
    _check_retention_order(values, problems)
    if problems:
        return None, problems
    currency = texts.get("cost.currency", "").strip() or None
    database = texts.get("storage.database", "").strip()
    config = Config(
        sampling=SamplingConfig(
            interval_s=_given(values, "sampling.interval_s"),
            process_scan_interval_s=_given(values, "sampling.process_scan_interval_s"),
        ),
        retention=RetentionConfig(
            raw_days=values["retention.raw_days"],
            minute_days=values["retention.minute_days"],
            hour_days=values["retention.hour_days"],
        ),
        cost=CostConfig(
            currency=currency,
            tariff_per_kwh=values["cost.tariff_per_kwh"],
            carbon_g_per_kwh=values["cost.carbon_g_per_kwh"],
            cpu_core_hour=values["cost.cpu_core_hour"],
            cpu_tdp_w=values["cost.cpu_tdp_w"],
            storage_gb_month=values["cost.storage_gb_month"],
            gpu=gpu_rows,
        ),
        alerts=AlertsConfig(
            idle_allocated_minutes=_given(values, "alerts.idle_allocated_minutes"),
            daily_budget=values["alerts.daily_budget"],
        ),
        storage=StorageConfig(database=Path(database).expanduser() if database else None),
        path=path,
    )
    return config, problems


def _given(values: Mapping[str, float | None], key: str) -> float:
    value = values[key]
    assert value is not None  # a required field: an empty one was refused
    return value


def _check_retention_order(values: Mapping[str, float | None], problems: Problems) -> None:
    """Coarser data must be kept at least as long as finer data (said as the loader checks it)."""
    for (finer, finer_words), (coarser, coarser_words) in itertools.pairwise(_RESOLUTIONS):
        if finer not in values or coarser not in values:
            continue  # a number that could not be read is refused already
        a, b = values[finer], values[coarser]
        if b is not None and (a is None or b < a):
            kept = "forever" if a is None else f"{number_text(a)} days"
            text = f"{coarser_words} must be kept at least as long as {finer_words} ({kept})."
            problems[coarser] = (_sentence(text), f"Retention: {text}")


def what_applies(before: Config, after: Config) -> str:
    """Which of the saved changes wait for the next start (the recorder reads them once)."""
    later = [
        words
        for changed, words in (
            (before.sampling != after.sampling, "the sampling intervals"),
            (before.retention != after.retention, "retention"),
            (before.storage != after.storage, "the database location"),
        )
        if changed
    ]
    now = "Prices and alerts apply now."
    if not later:
        return now
    listed = later[0] if len(later) == 1 else ", ".join(later[:-1]) + " and " + later[-1]
    return f"{now} Changes to {listed} apply the next time Costmeter starts."


def cost_defaults(d: Pricing) -> tuple[tuple[str, str, str, float, str, str], ...]:
    """(key, label, unit, default, its source, its date) of the [cost] figures of the form."""
    return (
        ("cost.tariff_per_kwh", "Electricity tariff", "per kWh", d.tariff_per_kwh,
         d.tariff_source, d.tariff_date),
        ("cost.carbon_g_per_kwh", "Carbon intensity", "g CO2e per kWh", d.carbon_g_per_kwh,
         d.carbon_source, d.carbon_date),
        ("cost.cpu_core_hour", "CPU price", "per core-hour", d.cpu_core_hour,
         d.cpu_core_hour_source, d.cpu_core_hour_date),
        ("cost.cpu_tdp_w", "CPU power (TDP)", "W", d.cpu_tdp_w, d.cpu_tdp_source, ""),
        ("cost.storage_gb_month", "Storage price", "per GB-month", d.storage_gb_month,
         d.storage_source, d.storage_date),
    )  # fmt: skip
