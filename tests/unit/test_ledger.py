"""Cost of devices and hosts, with numbers worked out by hand."""

from __future__ import annotations

import json

import pytest

from costmeter.core.model import DeviceUsage, HostUsage
from costmeter.cost.ledger import format_money, price_device, price_host, price_usage
from costmeter.cost.pricing import PriceRow, Pricing, load_default_pricing

KWH = 3.6e6


@pytest.fixture
def pricing() -> Pricing:
    return load_default_pricing().replace(
        gpu_rows=(PriceRow("Test GPU", ("Test GPU",), 2.0, "test table"),),
        tariff_per_kwh=0.2,
        carbon_g_per_kwh=400.0,
        cpu_core_hour=0.05,
        unknown_gpu_hourly=0.0,
    )


def gpu(**kw: object) -> DeviceUsage:
    fields: dict[str, object] = dict(
        host="h1",
        index=0,
        uuid="GPU-1",
        name="Test GPU",
        seconds=7200.0,
        idle_seconds=1800.0,
        avg_util=60.0,
        energy_j=1.5 * KWH,
        energy_measured_j=1.5 * KWH,
        idle_energy_j=0.1 * KWH,
    )
    fields.update(kw)
    return DeviceUsage(**fields)  # type: ignore[arg-type]


def cpu(**kw: object) -> HostUsage:
    fields: dict[str, object] = dict(
        host="h1",
        cpu_count=8,
        seconds=3600.0,
        busy_core_seconds=2 * 3600.0,
        cpu_energy_j=0.5 * KWH,
        cpu_energy_measured_j=0.0,
    )
    fields.update(kw)
    return HostUsage(**fields)  # type: ignore[arg-type]


def test_two_hours_at_two_dollars_plus_energy(pricing: Pricing) -> None:
    d = price_device(gpu(), pricing)
    assert d.hours == 2.0
    assert d.asset_cost == pytest.approx(4.0)  # 2 h x $2/h
    assert d.energy_kwh == pytest.approx(1.5)
    assert d.energy_cost == pytest.approx(0.30)  # 1.5 kWh x $0.2
    assert d.cost == pytest.approx(4.30)
    assert d.energy_source == "measured"
    assert d.carbon_kg == pytest.approx(0.6)  # 1.5 kWh x 400 g
    assert d.hourly_price == 2.0 and d.price_source == "test table" and d.price_known


def test_idle_cost_is_idle_hours_plus_idle_energy(pricing: Pricing) -> None:
    d = price_device(gpu(), pricing)
    assert d.idle_hours == 0.5
    # 0.5 h x $2/h + 0.1 kWh x $0.2 = $1.02
    assert d.idle_cost == pytest.approx(1.02)


def test_an_unknown_gpu_costs_only_its_energy(pricing: Pricing) -> None:
    d = price_device(gpu(name="Mystery GPU"), pricing)
    assert not d.price_known and d.hourly_price == 0.0
    assert "unknown" in d.price_source
    assert d.cost == pytest.approx(0.30)


def test_estimated_and_missing_energy_are_labelled(pricing: Pricing) -> None:
    assert price_device(gpu(energy_measured_j=0.0), pricing).energy_source == "estimated"
    none = price_device(gpu(energy_j=0.0, energy_measured_j=0.0, idle_energy_j=0.0), pricing)
    assert none.energy_source == "none" and none.energy_cost == 0.0


def test_host_core_hours_and_idle(pricing: Pricing) -> None:
    h = price_host(cpu(), pricing)
    assert h.core_hours == 8.0 and h.used_core_hours == 2.0
    assert h.core_cost == pytest.approx(0.40)  # 8 core-hours x $0.05
    assert h.energy_cost == pytest.approx(0.10)  # 0.5 kWh x $0.2
    assert h.cost == pytest.approx(0.50)
    assert h.idle_cost == pytest.approx(0.30)  # 6 unused core-hours x $0.05
    assert h.carbon_kg == pytest.approx(0.2)
    assert h.energy_source == "estimated"


def test_report_totals_and_json_shape(pricing: Pricing) -> None:
    report = price_usage(
        [
            gpu(),
            gpu(
                uuid="GPU-2",
                index=1,
                seconds=3600.0,
                idle_seconds=3600.0,
                avg_util=None,
                energy_j=0.0,
                energy_measured_j=0.0,
                idle_energy_j=0.0,
                lost=True,
            ),
        ],
        [cpu()],
        pricing,
        start=0.0,
        end=7200.0,
    )
    # GPU 1: $4.30; GPU 2: 1 h x $2 = $2.00, all idle; host: $0.50.
    assert report.total.cost == pytest.approx(6.80)
    assert report.total.idle_cost == pytest.approx(1.02 + 2.0 + 0.30)
    assert report.total.energy_kwh == pytest.approx(2.0)
    assert report.total.carbon_kg == pytest.approx(0.8)

    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) == {"devices", "hosts", "total", "currency", "start", "end"}
    assert data["currency"] == "USD"
    assert data["start"] == "1970-01-01T00:00:00Z" and data["end"] == "1970-01-01T02:00:00Z"
    first, second = data["devices"]
    assert set(first) == {
        "host",
        "index",
        "name",
        "uuid",
        "hours",
        "avg_util",
        "energy_kwh",
        "energy_source",
        "energy_cost",
        "energy_in_price",
        "cost",
        "idle_cost",
        "carbon_kg",
        "hourly_price",
        "price_source",
        "lost",
    }
    assert first["cost"] == pytest.approx(4.30) and first["avg_util"] == 60.0
    assert second["lost"] is True and second["energy_source"] == "none"
    assert second["avg_util"] is None
    (h,) = data["hosts"]
    assert set(h) == {
        "host",
        "cpu_count",
        "hours",
        "cpu_energy_kwh",
        "energy_source",
        "cost",
        "idle_cost",
        "carbon_kg",
    }
    assert set(data["total"]) == {"cost", "energy_kwh", "idle_cost", "carbon_kg"}


def test_amounts_are_not_rounded_before_presentation(pricing: Pricing) -> None:
    d = price_device(
        gpu(seconds=1.0, idle_seconds=0.0, energy_j=0.0, energy_measured_j=0.0, idle_energy_j=0.0),
        pricing,
    )
    assert d.cost == pytest.approx(2.0 / 3600.0)
    assert format_money(d.cost, "USD") == "<$0.01"
    # 3600 one-second devices add up to one hour's price: nothing was rounded away.
    report = price_usage(
        [gpu(seconds=1.0, idle_seconds=0.0, energy_j=0.0, energy_measured_j=0.0, idle_energy_j=0.0)]
        * 3600,
        [],
        pricing,
        0.0,
        1.0,
    )
    assert report.total.cost == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [
        (4.3, "USD", "$4.30"),
        (1234.5, "EUR", "€1,234.50"),
        (12.0, "CHF", "12.00 CHF"),
        (-3.456, "usd", "-$3.46"),
        (0.004, "USD", "<$0.01"),
        (0.0, "USD", "$0.00"),
        (-0.0000001, "GBP", "<-£0.01"),
    ],
)
def test_format_money(value: float, currency: str, text: str) -> None:
    assert format_money(value, currency) == text


def test_a_rental_price_that_includes_energy_does_not_charge_it_twice(pricing: Pricing) -> None:
    rental = pricing.replace(
        gpu_rows=(PriceRow("Test GPU", ("Test GPU",), 2.0, "cloud", includes_energy=True),)
    )
    d = price_device(gpu(), rental)
    assert d.energy_in_price and d.energy_cost == pytest.approx(0.30)  # still shown
    assert d.cost == pytest.approx(4.0)  # 2 h x $2/h, nothing on top
    assert d.idle_cost == pytest.approx(1.0)  # 0.5 idle h x $2/h; idle energy is in the price


def test_shipped_prices_are_rentals_that_include_energy() -> None:
    rows = load_default_pricing().gpu_rows
    assert rows and all(r.includes_energy for r in rows)
