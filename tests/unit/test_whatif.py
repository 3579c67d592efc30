"""The GPU table and the what-if estimate, on the formula and on measurements others produced."""

from __future__ import annotations

import csv
import re
from importlib import resources
from pathlib import Path

import pytest

from costmeter.core.errors import ConfigError
from costmeter.cost.gpu_specs import GpuSpecs, load_gpu_specs, parse_gpu_specs
from costmeter.cost.pricing import Pricing, load_default_pricing
from costmeter.cost.whatif import GIB, Option, WhatIf, Workload, balance, estimate, margin_bytes

DATA = Path(__file__).resolve().parents[1] / "data"
MIB = 1024**2


@pytest.fixture(scope="module")
def specs() -> GpuSpecs:
    return load_gpu_specs()


@pytest.fixture(scope="module")
def pricing() -> Pricing:
    return load_default_pricing()


def by_model(result: WhatIf) -> dict[str, Option]:
    return {o.model: o for o in result.options}


# -- the table ----------------------------------------------------------------------------------


def test_every_priced_model_has_a_sourced_row(specs: GpuSpecs, pricing: Pricing) -> None:
    assert {r.model for r in pricing.gpu_rows} == {s.model for s in specs.rows}
    for row in specs.rows:
        assert (
            row.source and row.url.startswith("https://") and re.match(r"\d{4}-\d\d-\d\d", row.date)
        )
        assert row.memory_gib is not None
        # Dense figures: a tensor precision is never below FP32's rate on the same board.
        fp32 = row.tflops.get("fp32")
        for p in ("tf32", "fp16", "bf16"):
            if p in row.tflops and fp32 is not None:
                assert row.tflops[p] >= fp32


def test_the_table_is_installed_as_package_data() -> None:
    table = resources.files("costmeter.resources").joinpath("gpu_specs.toml")
    assert table.is_file() and "[[gpu]]" in table.read_text(encoding="utf-8")


def test_sparsity_halved_rows_say_so(specs: GpuSpecs) -> None:
    """Where the sheet prints only sparsity figures, the row holds half and its note says so."""
    for model in ("H100 SXM 80GB", "H100 PCIe 80GB", "H100 NVL 94GB", "H200 141GB", "L4 24GB"):
        row = specs.for_model(model)
        assert row is not None and "halved" in row.note


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[gpu]]\nname = "X"\nsource = "s"\nfp32_tflops = -1\n', "gpu[0].fp32_tflops"),
        ('[[gpu]]\nname = "X"\nsource = "s"\nfp64_tflops = 1\n', "gpu[0]"),
        ('[[gpu]]\nname = "X"\n', "gpu[0].source"),
        ('[[gpu]]\nname = "X"\nsource = "s"\n[[gpu]]\nname = "x"\nsource = "t"\n', "gpu"),
    ],
)
def test_a_malformed_table_is_refused_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_gpu_specs(text, path="t.toml")
    assert err.value.key == key


def test_tf32_on_a_gpu_without_it_counts_as_fp32(specs: GpuSpecs) -> None:
    v100 = specs.for_model("V100")
    assert v100 is not None
    assert v100.compute("tf32") == (v100.tflops["fp32"], "fp32")
    assert v100.compute("bf16") == (None, "bf16")


# -- the formula --------------------------------------------------------------------------------


def test_balance_weights_the_busy_time_by_memory_share() -> None:
    b = balance(80.0, 20.0)
    assert b.busy_share == pytest.approx(0.8) and b.memory_share == pytest.approx(0.25)
    # Idle 20 % stays; busy 80 % = 75 % compute x 0.5 + 25 % memory x 2.
    assert b.factor(0.5, 2.0) == pytest.approx(0.2 + 0.8 * (0.75 * 0.5 + 0.25 * 2.0))
    assert balance(50.0, 90.0).memory_share == 1.0  # clipped: memory busy the whole kernel time
    assert balance(0.0, 0.0).factor(0.1, 0.1) == 1.0  # nothing ran: nothing scales
    assert not balance(50.0, None).memory_known


def test_a_memory_bound_run_scales_with_bandwidth(specs: GpuSpecs, pricing: Pricing) -> None:
    w = Workload("A100 80GB", "NVIDIA A100-SXM4-80GB", 3600.0, 1, 10 * GIB, 100.0, 100.0)
    h100 = by_model(estimate(w, specs, pricing))["H100 SXM 80GB"]
    a100, there = specs.for_model("A100 80GB"), specs.for_model("H100 SXM 80GB")
    assert a100 is not None and there is not None
    assert a100.bandwidth_gbs and there.bandwidth_gbs
    assert h100.duration_s == pytest.approx(3600.0 * a100.bandwidth_gbs / there.bandwidth_gbs)


def test_idle_time_does_not_scale(specs: GpuSpecs, pricing: Pricing) -> None:
    w = Workload("A100 80GB", "A100", 1000.0, 1, GIB, 40.0, 0.0)
    l4 = by_model(estimate(w, specs, pricing, "fp16"))["L4 24GB"]
    ratio = specs.for_model("A100 80GB").tflops["fp16"] / specs.for_model("L4 24GB").tflops["fp16"]  # type: ignore[union-attr]
    assert l4.duration_s == pytest.approx(600.0 + 400.0 * ratio)


def test_cost_is_gpu_hours_at_each_price_and_rows_are_sorted(
    specs: GpuSpecs, pricing: Pricing
) -> None:
    w = Workload("A100 80GB", "A100", 7200.0, 2, 30 * GIB, 90.0, 30.0)
    result = estimate(w, specs, pricing)
    a100 = pricing.row_for_model("A100 80GB")
    assert a100 is not None and result.actual_cost == pytest.approx(2 * 2 * a100.hourly)
    costs = [o.cost for o in result.options if o.cost is not None]
    assert costs == sorted(costs)
    for o in result.options:
        if o.cost is not None and o.duration_s is not None:
            assert o.cost == pytest.approx(o.duration_s / 3600 * 2 * o.hourly)
            assert o.saving == pytest.approx((result.actual_cost or 0) - o.cost)
    assert next(o for o in result.options if o.current).model == "A100 80GB"


def test_an_unknown_precision_is_refused(specs: GpuSpecs, pricing: Pricing) -> None:
    w = Workload("A100 80GB", "A100", 1.0, 1, GIB, 1.0, 1.0)
    with pytest.raises(ValueError, match="fp64"):
        estimate(w, specs, pricing, "fp64")


# -- on data others produced ---------------------------------------------------------------------


def h100_under_load() -> tuple[str, int, float, float]:
    """Name, memory used, GPU and memory utilisation in the ``nvidia-smi -q`` a real H100 80GB
    HBM3 printed under gpu-burn (tests/data/nvml/PROVENANCE.md)."""
    text = (DATA / "nvml/nvidia_gpu_exporter/h100-80gb-hbm3__590.48.01.txt").read_text()
    load = text.split("# load :: query (-q)")[1]
    name = re.search(r"Product Name\s+: (.+)", load)
    used = re.search(r"FB Memory Usage\n(?:.*\n)*?\s+Used\s+: (\d+) MiB", load)
    util = re.search(r"Utilization\n\s+GPU\s+: (\d+) %\n\s+Memory\s+: (\d+) %", load)
    assert name and used and util
    return name.group(1).strip(), int(used.group(1)) * MIB, float(util[1]), float(util[2])


def test_real_h100_under_gpu_burn(specs: GpuSpecs, pricing: Pricing) -> None:
    name, used, gpu_util, mem_util = h100_under_load()
    assert (name, used // MIB, gpu_util, mem_util) == ("NVIDIA H100 80GB HBM3", 19818, 100.0, 11.0)
    model = pricing.gpu_price(name).row
    assert model is not None
    w = Workload(model.model, name, 3600.0, 1, used, gpu_util, mem_util)
    result = estimate(w, specs, pricing)
    rows = by_model(result)
    need = used + margin_bytes(used)
    # Too little memory: refused, with the figures.
    for small in ("T4 16GB", "V100"):
        assert rows[small].fits is False and f"{need / GIB:.1f} GiB" in rows[small].reason
    assert rows["RTX 4090 24GB"].fits is True  # 21.3 GiB fits 24
    # H100 -> A100: 100 % busy, 11/100 of it memory-bound; the table's ratios, nothing else.
    here, a100 = specs.for_model(model.model), specs.for_model("A100 80GB")
    assert here is not None and a100 is not None
    c = here.tflops["bf16"] / a100.tflops["bf16"]
    bw = (here.bandwidth_gbs or 0) / (a100.bandwidth_gbs or 1)
    assert rows["A100 80GB"].duration_s == pytest.approx(3600.0 * (0.89 * c + 0.11 * bw))
    assert rows["A100 80GB"].compute_ratio == pytest.approx(c)
    # A compute-bound burn is slower and dearer on the A100 despite its lower hourly price.
    assert (rows["A100 80GB"].saving or 0) < 0
    best = result.cheapest_fit()
    assert best is not None and best.fits and (best.cost or 0) < (result.actual_cost or 0)
    assert "11% of it memory-bound" in result.stands_on()


def test_real_exporter_page_of_an_unlisted_model_gets_memory_fit_only(
    specs: GpuSpecs, pricing: Pricing
) -> None:
    """aiperf's dcgm-exporter page: an RTX 6000 Ada (no price row, no table row)."""
    page = (DATA / "exporters/aiperf-dcgm-single-gpu.txt").read_text()

    def value(metric: str) -> float:
        found = re.search(rf"^{metric}{{.*}} (\S+)$", page, re.M)
        assert found
        return float(found.group(1))

    used = int(value("DCGM_FI_DEV_FB_USED")) * MIB
    w = Workload(
        "", "NVIDIA RTX 6000 Ada Generation", 600.0, 1, used,
        value("DCGM_FI_DEV_GPU_UTIL"), value("DCGM_FI_DEV_MEM_COPY_UTIL"),
    )  # fmt: skip
    result = estimate(w, specs, pricing)
    assert result.actual_cost is None and "no row in the GPU table" in result.notes[0]
    assert all(o.duration_s is None for o in result.options)
    rows = by_model(result)
    assert rows["L40S 48GB"].fits is False  # 45.5 GiB + 4.6 margin > 48
    assert rows["A100 80GB"].fits is True
    assert result.cheapest_fit() is None


def test_real_log_without_memory_utilisation_scales_by_compute_alone(
    specs: GpuSpecs, pricing: Pricing
) -> None:
    """An nvidia-smi log of a 24 GiB card training (tests/data/nvidia_smi): util and memory,
    no memory-controller column."""
    with (DATA / "nvidia_smi/rpf_gpu_usage_epoch_b.csv").open() as f:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
    util = [float(r["utilization.gpu"]) for r in rows]
    peak = max(int(r["memory.used"]) for r in rows) * MIB
    seconds = float(rows[-1]["timestamp"]) - float(rows[0]["timestamp"])
    w = Workload("RTX 4090 24GB", "24 GiB card", seconds, 1, peak, sum(util) / len(util), None)
    result = estimate(w, specs, pricing, "fp16")
    assert any("not measured" in n for n in result.notes)
    assert result.balance is not None and result.balance.memory_share == 0.0
    t4 = by_model(result)["T4 16GB"]
    assert t4.fits is (peak + margin_bytes(peak) <= 16 * GIB)
    here, there = specs.for_model("RTX 4090 24GB"), specs.for_model("T4 16GB")
    assert here is not None and there is not None
    u = result.balance.busy_share
    ratio = here.tflops["fp16"] / there.tflops["fp16"]
    assert t4.duration_s == pytest.approx(seconds * ((1 - u) + u * ratio))
