"""What makes a prediction at submit cheap gives the same prediction: the intercept-only fit
done directly (``fit_ones``, equal to ``least_squares.fit`` to the last bit), progress files
read once while unchanged (``StepRates``), and ``predict``'s answers kept by their inputs
(``Predictions``)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmeter import progress
from costmeter.cost.least_squares import fit, fit_ones
from costmeter.cost.prediction import Target, predict
from costmeter.service import run_prediction
from costmeter.service.run_prediction import (
    Predictions,
    StepRates,
    past_runs,
    step_rate,
)
from costmeter.store.runs import PastRow

FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300, deadline=None)
@given(y=st.lists(FLOATS | st.sampled_from([0.0, -0.0, 1e-300, -1e300]), max_size=40))
def test_fit_ones_is_fit_on_a_column_of_ones_to_the_last_bit(y: list[float]) -> None:
    assert _outcome(fit_ones, y) == _outcome(lambda v: fit([(1.0,)] * len(v), v), y)


def _outcome(f: Callable[[list[float]], object], y: list[float]) -> str:
    """repr tells -0.0 from 0.0 and shows every digit: equal reprs, equal floats; an error
    (a square past the largest float) counts by its kind."""
    try:
        return repr(f(y))
    except ArithmeticError as exc:
        return type(exc).__name__


@settings(max_examples=100, deadline=None)
@given(y=st.lists(st.floats(-20, 5), min_size=2, max_size=300))
def test_fit_ones_on_log_times(y: list[float]) -> None:
    """The values predictions fit: logs of durations and costs, up to PAST_LIMIT of them."""
    assert repr(fit_ones(y)) == repr(fit([(1.0,)] * len(y), y))
    assert fit_ones(y) is not None


def _progress(run_dir: Path, steps: int, per_step: float, t0: float = 1000.0) -> None:
    lines = [
        f'{{"time": {t0 + per_step * s}, "step": {s}, "total": {steps}}}'
        for s in range(1, steps + 1)
    ]
    (run_dir / progress.FILE_NAME).write_text("\n".join(lines) + "\n")


def _age(path: Path, seconds: float) -> None:
    """Set the file's modification time back (its change time stays now)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_step_rates_are_step_rate_whatever_happens_to_the_file(tmp_path: Path) -> None:
    rates = StepRates()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert rates.get(str(run_dir)) == step_rate(str(run_dir)) == (None, None)  # no file yet
    assert rates.get(None) == rates.get("") == (None, None)
    _progress(run_dir, 10, 0.5)
    assert rates.get(str(run_dir)) == step_rate(str(run_dir)) == (10.0, 0.5)
    _progress(run_dir, 20, 0.25)  # changed at once: read again
    assert rates.get(str(run_dir)) == step_rate(str(run_dir)) == (20.0, 0.25)
    (run_dir / progress.FILE_NAME).unlink()
    assert rates.get(str(run_dir)) == (None, None)
    (run_dir / progress.FILE_NAME).mkdir()  # not a file: as step_rate finds it
    assert rates.get(str(run_dir)) == step_rate(str(run_dir)) == (None, None)


def test_a_settled_file_is_read_once_and_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _progress(run_dir, 10, 0.5)
    path = run_dir / progress.FILE_NAME
    _age(path, 60)
    reads: list[object] = []
    read = progress.read_progress

    def counted(p: str | Path) -> list[progress.ProgressPoint]:
        reads.append(p)
        return read(p)

    monkeypatch.setattr(progress, "read_progress", counted)
    rates = StepRates()
    # Its change time is now (utime sets it): not settled yet, read every time.
    assert rates.get(str(run_dir)) == rates.get(str(run_dir)) == (10.0, 0.5)
    assert len(reads) == 2
    now = time.time_ns()
    monkeypatch.setattr(run_prediction.time, "time_ns", lambda: now + 10 * 10**9)
    assert [rates.get(str(run_dir)) for _ in range(3)] == [(10.0, 0.5)] * 3
    assert len(reads) == 3  # settled: read once more, then kept
    _progress(run_dir, 10, 0.75)  # same size, new times: read again
    monkeypatch.setattr(run_prediction.time, "time_ns", lambda: now + 20 * 10**9)
    assert rates.get(str(run_dir)) == (10.0, 0.75)
    assert len(reads) == 4


def _rows(costs: list[float]) -> list[PastRow]:
    return [PastRow(i, "gpus=0 true", 1.0 + i / 10, c, None, 1, None) for i, c in enumerate(costs)]


def test_predictions_are_predict_and_computed_once_per_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def counted(target: Target, past: list[object]) -> object:
        calls.append(len(past))
        return predict(target, past)  # type: ignore[arg-type]

    monkeypatch.setattr(run_prediction, "predict", counted)
    memo = Predictions()
    target = Target("gpus=0 true")
    rows = _rows([0.1, 0.2, 0.3, 0.25])
    rates: list[tuple[float | None, float | None]] = [(10.0, 0.1), (None, None)]
    first = memo.get(target, rows, rates)
    assert first == predict(target, past_runs(rows, rates))
    assert memo.get(target, list(rows), list(rates)) is first
    assert calls == [4]
    more = _rows([0.1, 0.2, 0.3, 0.25, 0.5])  # a run of the family was priced
    assert memo.get(target, more, rates) == predict(target, past_runs(more, rates))
    other_rates: list[tuple[float | None, float | None]] = [(10.0, 0.2), (None, None)]
    assert memo.get(target, rows, other_rates) == predict(target, past_runs(rows, other_rates))
    assert calls == [4, 5, 4]  # another progress file: another input
    zero = _rows([-0.0, 0.2, 0.3])  # equal to 0.0 as a key, not always as an answer
    memo.get(target, zero, [])
    memo.get(target, zero, [])
    assert calls == [4, 5, 4, 3, 3]


def test_past_runs_carry_the_rates_of_the_first_rows_only() -> None:
    rows = _rows([0.1, 0.2, 0.3])
    past = past_runs(rows, [(5.0, 0.5)])
    assert [(p.steps, p.step_s) for p in past] == [(5.0, 0.5), (None, None), (None, None)]
    assert [p.cost for p in past] == [0.1, 0.2, 0.3]
    assert math.isclose(past[2].duration_s, 1.2)
