"""``--goal`` decides the verdict on the same measured figures, and the verdict always says what
the compressed model is better for (issue 16: "the verdict weighs money, not only size")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from costmeter.compress import CompressionReport, ServingPrice, measure_compression
from costmeter.compress.measure import Latency
from costmeter.compress.report import GOALS, Figures, better_for, decide
from costmeter.compress.serving_cost import cost_per_million, format_money

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PRICE = ServingPrice(0.0408, "USD", "test price")


def _with_goal(report: CompressionReport, goal: str) -> tuple[str, str]:
    return decide(dataclasses.replace(report, goal=goal))


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CompressionReport]:
    torch = pytest.importorskip("torch")
    from costmeter.examples import digits

    d = tmp_path_factory.mktemp("goal")
    torch.set_num_threads(1)
    data = digits.load_data(0)
    digits.save_model(digits.train(20, 0, data=data), d / "m.pt", hidden=128, test_accuracy=0)
    np.savez(d / "train.npz", x=data.x_train, y=data.y_train)
    np.savez(d / "test.npz", x=data.x_test, y=data.y_test)
    common = {"eval_path": d / "test.npz", "repeat": 15, "price": PRICE, "max_drop": 3.0}
    return {
        "int8": measure_compression(d / "m.pt", "int8-dynamic:torch.ao", **common),
        "distill": measure_compression(d / "m.pt", "distill", train_path=d / "train.npz", **common),
    }


def test_the_goal_decides_on_the_same_measured_figures(measured) -> None:
    for report in measured.values():
        good, bad = better_for(report)
        b, a = report.before, report.after
        # What each phrase stands on, from the measured figures themselves.
        assert ("storage and memory" in good) == (a.size_bytes < 0.95 * b.size_bytes)
        slower = [
            x.median_s > 1.1 * y.median_s
            for x, y in ((a.latency_1, b.latency_1), (a.latency_n, b.latency_n))
        ]
        assert ("serving cost" in bad) == any(slower)
        verdicts = {goal: _with_goal(report, goal) for goal in GOALS}
        for goal, (verdict, reason) in verdicts.items():
            wanted = {"cost": "serving cost", "latency": "response time (batch 1)",
                      "size": "storage and memory"}[goal]  # fmt: skip
            assert verdict == ("keep" if wanted in good else "reject"), reason
            assert f"Goal {goal}: {'met' if verdict == 'keep' else 'not met'}" in reason
            assert "better for" in reason


def test_int8_on_a_cpu_is_kept_for_size_and_rejected_for_cost_when_it_serves_dearer(
    measured,
) -> None:
    report = measured["int8"]
    assert _with_goal(report, "size")[0] == "keep"  # int8 weights: about 3x smaller
    if "serving cost" not in better_for(report)[1]:
        pytest.skip("int8 served no dearer than float32 on this CPU: nothing to reject")
    verdict, reason = _with_goal(report, "cost")
    assert verdict == "reject" and "--goal size would keep it" in reason
    _, size_reason = _with_goal(report, "size")
    assert "better for storage and memory, not for" in size_reason
    assert "serving cost" in size_reason.split("not for", 1)[1]


def test_cost_rows_are_latency_times_the_core_hour_price(measured) -> None:
    report = measured["distill"]
    rows = {row.label: row for row in report.rows()}
    b1 = report.before.latency_1.median_s
    expected = b1 * 1e6 / 3600 * 0.0408
    assert report.cost_per_million(report.before, at_batch_n=False) == pytest.approx(expected)
    assert rows["cost per 1M inferences, batch 1"].before.startswith("$")
    per_row = report.after.latency_n.median_s / report.batch
    assert report.cost_per_million(report.after, at_batch_n=True) == pytest.approx(
        per_row * 1e6 / 3600 * 0.0408
    )
    data = report.to_json()
    assert data["goal"] == "cost" and data["price_per_hour"] == pytest.approx(0.0408)
    assert data["cost_per_million"]["before"]["batch_1"] == pytest.approx(expected)
    assert any("per core-hour (test price)" in n for n in report.notes)


def _figures(size: int, l1: float, ln: float, acc: float) -> Figures:
    return Figures(size, Latency(1, l1, l1, l1, 5), Latency(64, ln, ln, ln, 5), acc)


def test_the_issue_example_3x_smaller_18x_slower() -> None:
    """The case issue 16 names, with the figures the README's int8 example printed."""
    before, after = _figures(107_157, 4.0e-5, 8.0e-5, 0.96), _figures(33_023, 7.2e-4, 7.8e-4, 0.96)
    report = CompressionReport(
        model="m.pt", format="x", method="int8-dynamic", engine="e", threads=1, repeat=5,
        batch=64, input_shape=(64,), before=before, after=after, price_per_hour=0.0408,
    )  # fmt: skip
    assert _with_goal(report, "cost")[0] == "reject"
    assert _with_goal(report, "latency")[0] == "reject"
    verdict, reason = _with_goal(report, "size")
    assert verdict == "keep"
    assert "better for storage and memory, not for response time (batch 1) or serving cost" in (
        reason
    )
    money = format_money(cost_per_million(7.2e-4, 1, 0.0408), "USD")
    assert money == "$0.00816" and f"{money} instead of" in reason  # the money, in words
