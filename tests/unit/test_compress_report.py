"""The verdict and the rendering of a compression report (pure: no torch needed)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmeter.compress.measure import Latency, _percentile
from costmeter.compress.report import CompressionReport, Figures, Goal, decide, ratio_text


def figures(size: int, l1: float | None, ln: float | None, acc: float | None) -> Figures:
    def lat(batch: int, s: float | None) -> Latency:
        if s is None:
            return Latency(batch, error="not implemented for 'Half'")
        return Latency(batch, s, s * 0.9, s * 1.1, 10)

    return Figures(size, lat(1, l1), lat(64, ln), acc)


def report(
    before: Figures, after: Figures, max_drop: float = 1.0, goal: Goal = "cost"
) -> CompressionReport:
    r = CompressionReport(
        model="m.pt", format="x", method="int8-dynamic", engine="e", threads=1, repeat=10,
        batch=64, input_shape=(64,), before=before, after=after, max_drop=max_drop,
        agreement=0.99 if after.accuracy is not None else None, goal=goal,
    )  # fmt: skip
    r.verdict, r.reason = decide(r)
    return r


def test_keep_when_smaller_and_accuracy_within_the_gate() -> None:
    # Issue 16: smaller but slower at batch 1 is kept for --goal size only, and says so.
    r = report(figures(1000, 1e-4, 1e-3, 0.95), figures(300, 3e-4, 1e-3, 0.945), goal="size")
    assert r.verdict == "keep"
    assert "3.33x smaller" in r.reason and "3.00x slower at batch 1" in r.reason
    assert "better for storage and memory, not for response time" in r.reason
    assert r.accuracy_drop_points == pytest.approx(0.5)
    assert "-0.5 points (limit 1)" in r.reason


def test_reject_when_accuracy_drops_more_than_allowed() -> None:
    r = report(figures(1000, 1e-4, 1e-3, 0.95), figures(300, 1e-4, 1e-3, 0.93), max_drop=1.5)
    assert r.verdict == "reject"
    assert "drops 2.0 points, more than the 1.5 allowed" in r.reason


def test_reject_when_neither_smaller_nor_faster() -> None:
    r = report(figures(1000, 1e-4, 1e-3, 0.95), figures(1000, 1.05e-4, 0.98e-3, 0.95))
    assert r.verdict == "reject" and "neither smaller nor faster" in r.reason


def test_faster_only_is_a_gain_and_no_eval_gives_no_verdict() -> None:
    r = report(figures(1000, 1e-4, 1e-3, None), figures(1000, 1e-4, 0.5e-3, None))
    assert r.verdict == "unmeasured"
    assert "2.00x faster at batch 64" in r.reason and "not measured" in r.reason
    assert r.verdict_text().startswith("No verdict:")


def test_a_model_that_does_not_run_is_rejected() -> None:
    r = report(figures(1000, 1e-4, 1e-3, 0.9), figures(500, None, None, None))
    assert r.verdict == "reject" and "does not run" in r.reason
    rows = {row.label: row for row in r.rows()}
    assert rows["latency, batch 1"].after == "does not run"


def test_rows_table_and_json() -> None:
    r = report(
        figures(107_157, 6.3e-5, 1.54e-4, 0.96), figures(33_023, 1.26e-3, 3.4e-3, 0.96), goal="size"
    )
    rows = r.rows()
    assert [row.label for row in rows] == [
        "size (state_dict bytes)", "latency, batch 1", "latency, batch 64", "accuracy",
        "agreement with original",
    ]  # fmt: skip
    assert (rows[0].before, rows[0].after, rows[0].change) == (
        "107.2 kB",
        "33.0 kB",
        "3.24x smaller",
    )
    assert (rows[1].before, rows[1].after) == ("63 µs", "1.26 ms")
    assert rows[3].change == "+0.0 points"  # no "-0.0"
    table = r.render_table()
    assert "Keep: 3.24x smaller" in table and "agreement with original" in table
    data = json.loads(json.dumps(r.to_json()))
    assert data["after"]["latency_1"]["median_s"] == pytest.approx(1.26e-3)
    assert data["verdict"] == "keep" and "compressed" not in data
    assert data["accuracy_drop_points"] == pytest.approx(0.0)


def test_ratio_text() -> None:
    assert ratio_text(100, 50, "smaller", "larger") == "2.00x smaller"
    assert ratio_text(50, 100, "faster", "slower") == "2.00x slower"
    assert ratio_text(100, 100.2, "faster", "slower") == "same"
    assert ratio_text(0, 1, "a", "b") == ""


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=50))
def test_percentiles_lie_between_min_and_max(values: list[float]) -> None:
    p10, p90 = _percentile(values, 0.1), _percentile(values, 0.9)
    assert min(values) <= p10 <= p90 <= max(values)


def test_importing_the_commands_and_the_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, costmeter.compress, costmeter.cli.compress_cmd, costmeter.cli.example_cmd; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchao', "
        "'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
