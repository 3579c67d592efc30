"""Savings formulas. What a rule finds in the observed window is scaled to a month, assuming the
pattern goes on: per month = per window x (730.5 h / window hours). Money comes from GPU-hours
at the GPU's hourly price, plus the energy at the tariff when the price does not include it."""

from __future__ import annotations

from costmeter.advice.facts import AdviceFacts, DeviceFacts
from costmeter.advice.model import HOURS_PER_MONTH, Savings


def month_factor(window_s: float) -> float:
    """How many observed windows make a month."""
    return HOURS_PER_MONTH / max(window_s / 3600.0, 1e-9)


def gpu_hours_saved(
    *,
    gpu_hours: float,
    hourly: float,
    kwh: float,
    window_s: float,
    tariff: float,
    energy_in_price: bool,
    currency: str,
    why: str,
    gpus: float = 1.0,
) -> Savings:
    """``gpu_hours`` of GPU time and ``kwh`` of energy saved in the window, per month.

    ``why`` says where the GPU-hours come from ("1 GPU x 2.4 h idle"), for the formula.
    A month's saving never exceeds what ``gpus`` GPUs cost in a month: a short window scaled
    up cannot save more GPU-hours than the GPUs have.
    """
    f = month_factor(window_s)
    hours_m = gpu_hours * f
    kwh_m = kwh * f
    formula = (
        f"{why} = {gpu_hours:.2f} GPU-h in {window_s / 3600:.1f} h observed; "
        f"x {f:.1f} ({HOURS_PER_MONTH} h/month) = {hours_m:.1f} GPU-h/month"
    )
    cap = max(0.0, gpus) * HOURS_PER_MONTH
    if hours_m > cap:
        kwh_m *= cap / hours_m
        hours_m = cap
        formula += f", capped at {gpus:g} GPU x {HOURS_PER_MONTH} h = {cap:.1f} GPU-h/month"
    money = hours_m * hourly
    formula += f" x {hourly:.2f} {currency}/h"
    if energy_in_price:
        formula += f" (energy included in the price; {kwh_m:.1f} kWh/month)"
    else:
        money += kwh_m * tariff
        formula += f" + {kwh_m:.1f} kWh/month x {tariff:.3f} {currency}/kWh"
    return Savings(money, currency, kwh_m, formula + f" = {money:.2f} {currency}/month")


def price_difference(
    *,
    hours: float,
    hourly: float,
    cheaper_hourly: float,
    cheaper_model: str,
    window_s: float,
    currency: str,
) -> Savings:
    """Running ``hours`` (in the window) on ``cheaper_model`` instead, per month."""
    f = month_factor(window_s)
    diff = max(0.0, hourly - cheaper_hourly)
    money = hours * f * diff
    formula = (
        f"{hours:.2f} GPU-h in {window_s / 3600:.1f} h observed x {f:.1f} = "
        f"{hours * f:.1f} GPU-h/month x ({hourly:.2f} - {cheaper_hourly:.2f} {currency}/h on "
        f"{cheaper_model}) = {money:.2f} {currency}/month (energy not counted)"
    )
    return Savings(money, currency, 0.0, formula)


def device_savings(
    dev: DeviceFacts,
    facts: AdviceFacts,
    window_s: float,
    *,
    gpu_hours: float,
    kwh: float,
    why: str,
    gpus: float = 1.0,
) -> Savings:
    """``gpu_hours_saved`` at ``dev``'s price and the facts' tariff and currency; ``gpus`` is
    how many GPUs the saving is about (its monthly cap)."""
    return gpu_hours_saved(
        gpu_hours=gpu_hours,
        hourly=dev.hourly_price,
        kwh=kwh,
        window_s=window_s,
        tariff=facts.tariff_per_kwh,
        energy_in_price=dev.energy_in_price,
        currency=facts.currency,
        why=why,
        gpus=gpus,
    )


def one_off(
    dev: DeviceFacts, facts: AdviceFacts, *, gpu_hours: float, kwh: float, why: str
) -> Savings:
    """Money a waste that already happened cost, once (not scaled to a month): a finished job
    that kept its GPU wastes its stretch, not a month of them."""
    money = gpu_hours * dev.hourly_price
    formula = f"{why} = {gpu_hours:.2f} GPU-h x {dev.hourly_price:.2f} {facts.currency}/h"
    if dev.energy_in_price:
        formula += f" (energy included in the price; {kwh:.2f} kWh)"
    else:
        money += kwh * facts.tariff_per_kwh
        formula += f" + {kwh:.2f} kWh x {facts.tariff_per_kwh:.3f} {facts.currency}/kWh"
    formula += (
        f" = {money:.2f} {facts.currency} once (not scaled to a month); every further hour "
        f"it stays held costs {dev.hourly_price:.2f} {facts.currency}"
    )
    return Savings(money, facts.currency, kwh, formula, once=True)
