"""The default price table and GPU name matching."""

from __future__ import annotations

import re

import pytest

from costmeter.core.errors import ConfigError
from costmeter.cost.pricing import PriceRow, Pricing, load_default_pricing, make_row, parse_pricing


@pytest.fixture(scope="module")
def pricing() -> Pricing:
    return load_default_pricing()


@pytest.mark.parametrize(
    ("nvml_name", "model"),
    [
        ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 40GB"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM 80GB"),
        ("NVIDIA H100 PCIe", "H100 PCIe 80GB"),
        ("NVIDIA H100 NVL", "H100 NVL 94GB"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090 24GB"),
        ("Tesla T4", "T4 16GB"),
        ("NVIDIA L4", "L4 24GB"),
        ("NVIDIA L40S", "L40S 48GB"),
        ("NVIDIA A10G", "A10G 24GB"),
        ("NVIDIA A10", "A10 24GB"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla V100-PCIE-32GB", "V100"),
    ],
)
def test_nvml_names_find_their_row(pricing: Pricing, nvml_name: str, model: str) -> None:
    match = pricing.gpu_price(nvml_name)
    assert match.known
    assert match.row is not None and match.row.model == model
    assert match.hourly == match.row.hourly > 0


def test_every_row_names_a_source_date_and_url(pricing: Pricing) -> None:
    assert pricing.currency == "USD"
    required = ("A100 80GB", "A100 40GB", "H100 SXM 80GB", "H100 PCIe 80GB", "RTX 4090 24GB")
    for model in (*required, "T4 16GB", "L4 24GB", "A10G 24GB", "V100"):
        assert pricing.row_for_model(model) is not None, model
    for row in pricing.gpu_rows:
        assert row.source and row.url and re.fullmatch(r"\d{4}-\d{2}-\d{2}", row.date), row
    for source, date in (
        (pricing.tariff_source, pricing.tariff_date),
        (pricing.carbon_source, pricing.carbon_date),
        (pricing.cpu_core_hour_source, pricing.cpu_core_hour_date),
    ):
        assert source and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
    assert pricing.tariff_per_kwh > 0 and pricing.carbon_g_per_kwh > 0
    assert pricing.cpu_core_hour > 0 and pricing.cpu_tdp_w > 0
    assert pricing.cpu_tdp_source.startswith("default")


def test_no_two_rows_tie_on_a_known_name(pricing: Pricing) -> None:
    """Every row's own example name must pick that row, not a sibling."""
    for row in pricing.gpu_rows:
        picked = [r for r in pricing.gpu_rows if r.specificity(row.model) is not None]
        if picked:
            assert pricing.gpu_price(row.model).row == row, row.model


def test_unknown_gpu_is_flagged_with_the_fallback_price(pricing: Pricing) -> None:
    match = pricing.gpu_price("NVIDIA GeForce GTX 1080")
    assert not match.known
    assert match.row is None
    assert match.hourly == pricing.unknown_gpu_hourly == 0.0
    assert "unknown" in match.source


def test_the_longest_match_wins_regardless_of_order() -> None:
    broad = PriceRow("any A100", ("A100",), 1.0, "s")
    narrow = PriceRow("A100 80GB", ("A100.*80GB",), 2.0, "s")
    for rows in ((broad, narrow), (narrow, broad)):
        p = load_default_pricing().replace(gpu_rows=rows)
        assert p.gpu_price("NVIDIA A100-SXM4-80GB").hourly == 2.0
        assert p.gpu_price("NVIDIA A100-SXM4-40GB").hourly == 1.0


def test_matching_ignores_case() -> None:
    row = PriceRow("x", ("rtx 4090",), 1.0, "s")
    assert row.specificity("NVIDIA GeForce RTX 4090") == len("RTX 4090")
    assert row.specificity("NVIDIA GeForce RTX 3090") is None


def test_merged_overrides_by_name_and_adds_new_rows(pricing: Pricing) -> None:
    cheaper = PriceRow("a100 80gb", ("A100.*80GB",), 1.25, "my contract")
    mine = PriceRow("RTX 3090", ("RTX 3090",), 0.2, "my estimate")
    merged = pricing.merged([cheaper, mine])
    assert len(merged.gpu_rows) == len(pricing.gpu_rows) + 1
    assert merged.gpu_price("NVIDIA A100-SXM4-80GB").hourly == 1.25
    assert merged.gpu_price("NVIDIA A100-SXM4-80GB").source == "my contract"
    assert merged.gpu_price("NVIDIA GeForce RTX 3090").hourly == 0.2
    assert pricing.gpu_price("NVIDIA A100-SXM4-80GB").hourly != 1.25  # the original is unchanged


def test_a_user_row_beats_a_more_specific_default(pricing: Pricing) -> None:
    merged = pricing.merged([PriceRow("all A100s", ("A100",), 0.5, "mine")])
    assert merged.gpu_price("NVIDIA A100-SXM4-80GB").hourly == 0.5


def test_a_malformed_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"not a valid regular expression"):
        make_row(model="x", match=["(oops"], hourly=1.0, source="s", path="p.toml", key="match")


def test_a_broken_price_file_names_the_key() -> None:
    text = 'currency = "USD"\n[[gpu]]\nname = "x"\nmatch = ["x"]\nhourly = "cheap"\nsource = "s"\n'
    with pytest.raises(ConfigError, match=r"gpu\[0\]\.hourly"):
        parse_pricing(text, path="pricing.toml")


def test_a_mig_instance_is_not_charged_its_whole_gpus_price(pricing: Pricing) -> None:
    gpu = pricing.gpu_price("NVIDIA A100-SXM4-40GB")
    instance = pricing.gpu_price("NVIDIA A100-SXM4-40GB MIG 1g.5gb")
    assert gpu.hourly > 0 and gpu.known
    assert instance.hourly == 0.0 and instance.known and instance.row is None
    assert "charged once, on its physical GPU" in instance.source
    # A row of the user's that matches MIG instances prices them as the user says.
    row = make_row(model="A100 MIG slice", match=["A100.*MIG"], hourly=0.5, source="ours")
    mine = pricing.merged([row]).gpu_price("NVIDIA A100-SXM4-40GB MIG 1g.5gb")
    assert mine.hourly == 0.5 and mine.row is not None and mine.row.user
