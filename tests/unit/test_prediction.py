"""The run prediction (issue 16): command families, the least-squares fit and its interval, the
choice of parameters, the fallbacks, and a sweep's totals and schedule."""

from __future__ import annotations

import math
import random

import pytest

from costmeter.cost.least_squares import fit, invert, t_quantile
from costmeter.cost.prediction import (
    FIT,
    MEDIAN,
    NONE,
    PastRun,
    Target,
    command_family,
    key_prefix,
    predict,
)
from costmeter.runs.commands import command_key
from costmeter.service.run_prediction import calibration, schedule_wall

DIGITS = ["python", "-m", "costmeter.examples.digits"]


def key(*args: str, gpus: int = 0) -> str:
    return command_key([*DIGITS, *args], gpus)


def runs_where_time_follows_epochs(
    epochs: list[int], *, noise: float = 0.05, seed: int = 1, per_s: float = 1e-4
) -> list[PastRun]:
    """Runs whose time is 0.5 s x epochs^0.98 with log-normal noise; cost per_s x time."""
    rng = random.Random(seed)
    out = []
    for i, e in enumerate(epochs):
        d = 0.5 * e**0.98 * math.exp(rng.gauss(0, noise))
        out.append(PastRun(key("--epochs", str(e), "--seed", str(i % 3)), d, d * per_s))
    return out


def test_family_puts_numbers_in_slots_whatever_their_spelling() -> None:
    a = command_family(command_key(["python", "train.py", "--epochs", "5", "--lr", "0.1"], 1))
    b = command_family(command_key(["python3.11", "train.py", "--epochs=20", "--lr=1e-2"], 2))
    assert a.key == b.key
    assert a.values == {"gpus": 1.0, "epochs": 5.0, "lr": 0.1}
    assert b.values == {"gpus": 2.0, "epochs": 20.0, "lr": 0.01}
    cpu = command_family(command_key(["python", "train.py", "--epochs", "5", "--lr", "0.1"], 0))
    assert cpu.key != a.key and "gpus" not in cpu.values  # no GPU is another family
    positional = command_family(command_key(["./bench", "3", "x"], 0))
    assert positional.values == {"arg1": 3.0}
    assert command_family(command_key(["python", "train.py", "--out", "run1"])).values == {}
    assert key_prefix(key("--epochs", "4")) == "python -m costmeter.examples.digits --epochs"


def test_least_squares_solves_a_known_line_and_refuses_a_singular_one() -> None:
    rows = [(1.0, x) for x in (1.0, 2.0, 3.0, 4.0)]
    f = fit(rows, [3.0, 5.0, 7.0, 9.0])  # y = 1 + 2x exactly
    assert f is not None
    assert f.coef == pytest.approx((1.0, 2.0))
    assert f.sse == pytest.approx(0.0, abs=1e-18) and f.r2 == pytest.approx(1.0)
    assert fit([(1.0, 2.0), (1.0, 2.0), (1.0, 2.0)], [1.0, 2.0, 3.0]) is None
    assert fit([(1.0, 1.0), (1.0, 2.0)], [1.0, 2.0]) is None  # as many rows as columns
    assert fit([(1.0,)], [1.0]) is None  # no more rows than columns
    inv = invert([[4.0, 7.0], [2.0, 6.0]])
    assert inv == [pytest.approx([0.6, -0.7]), pytest.approx([-0.2, 0.4])]


def test_t_quantile_table_and_its_large_sample_correction() -> None:
    assert t_quantile(1) == pytest.approx(6.314)
    assert t_quantile(30) == pytest.approx(1.697)
    assert t_quantile(60) == pytest.approx(1.671, abs=1e-3)  # exact 1.6706
    assert t_quantile(120) == pytest.approx(1.658, abs=1e-3)  # exact 1.6577
    with pytest.raises(ValueError):
        t_quantile(0)


def test_time_proportional_to_epochs_is_fitted_and_extrapolates_within_its_range() -> None:
    past = runs_where_time_follows_epochs([2, 4, 8, 2, 4, 8, 12, 6, 3])
    pred = predict(Target(key("--epochs", "16", "--seed", "0")), past)
    assert pred.method == FIT and pred.runs == 9
    truth = 0.5 * 16**0.98
    assert pred.duration_s == pytest.approx(truth, rel=0.1)
    assert pred.low is not None and pred.high is not None and pred.cost is not None
    assert pred.low < truth * 1e-4 < pred.high
    assert pred.low < pred.cost < pred.high
    assert "fitted on 9 past runs of this command: time ∝ epochs^0." in pred.basis
    assert "R² 0.9" in pred.basis and "extrapolated: epochs 16 is outside 2..12" in pred.basis
    # The seed varies (0, 1, 2) but does not change the time: it is left out of the model.
    assert "seed" not in pred.basis.split(";")[0]


def test_interval_widens_with_fewer_runs() -> None:
    target = Target(key("--epochs", "6", "--seed", "0"))
    many = predict(target, runs_where_time_follows_epochs([2, 4, 8, 16] * 4, noise=0.1))
    few = predict(target, runs_where_time_follows_epochs([2, 4, 8, 16], noise=0.1))
    assert many.method == few.method == FIT
    assert many.low and many.high and few.low and few.high
    assert few.high / few.low > many.high / many.low


def test_gpu_model_is_a_factor_when_runs_differ_in_it() -> None:
    past = []
    for e in (2, 4, 8, 16):
        for model, speed in (("A100", 1.0), ("T4", 3.0)):
            d = speed * e
            past.append(PastRun(key("--epochs", str(e), gpus=1), d, d * 1e-3, model))
    on_t4 = predict(Target(key("--epochs", "10", gpus=1), "T4"), past)
    on_a100 = predict(Target(key("--epochs", "10", gpus=1), "A100"), past)
    assert on_t4.duration_s == pytest.approx(30.0, rel=0.01)
    assert on_a100.duration_s == pytest.approx(10.0, rel=0.01)
    assert "GPU model" in on_t4.basis
    guess = predict(Target(key("--epochs", "10", gpus=1), "H100"), past)
    assert "H100 never ran it" in guess.basis


def test_gpu_count_is_a_parameter() -> None:
    past = [
        PastRun(key("--epochs", "8", gpus=g), 40.0 / g**0.9 * (1 + 0.01 * i), 0.1 * g**0.1, None)
        for i, g in enumerate((1, 2, 4, 1, 2, 4))
    ]
    pred = predict(Target(key("--epochs", "8", gpus=8)), past)
    assert pred.method == FIT and "time ∝ gpus^-0.89" in pred.basis
    assert pred.duration_s == pytest.approx(40.0 / 8**0.9, rel=0.05)


def test_too_few_runs_fall_back_to_the_exact_commands_median_then_to_nothing() -> None:
    past = runs_where_time_follows_epochs([2, 4])
    same = predict(Target(past[1].command_key), past)
    assert same.method == MEDIAN and same.runs == 1
    assert same.cost == same.low == same.high == past[1].cost
    assert same.basis.startswith("the one past run of this exact command (too few to fit: 2")
    other = predict(Target(key("--epochs", "16", "--seed", "0")), past)
    assert other.method == NONE and other.cost is None and not other.known
    assert other.basis.startswith("no past run of this command with these values (too few")
    nothing = predict(Target(command_key(["python", "other.py"])), past)
    assert nothing.basis == "no past run of this command"
    # Two runs of the same command: their median and their lowest to highest cost.
    twice = [PastRun(key("--epochs", "3"), 2.0, 0.2), PastRun(key("--epochs", "3"), 4.0, 0.4)]
    both = predict(Target(key("--epochs", "3")), twice)
    assert (both.method, both.cost, both.low, both.high) == (MEDIAN, pytest.approx(0.3), 0.2, 0.4)
    assert both.to_json().keys() == {"duration_s", "cost", "low", "high", "basis"}


def test_a_fit_needs_two_more_runs_than_varying_parameters() -> None:
    past = [
        PastRun(key("--epochs", str(e), "--hidden", str(h)), e * h / 100, e * h / 1e5)
        for e, h in ((2, 64), (4, 128), (8, 64))
    ]
    pred = predict(Target(key("--epochs", "8", "--hidden", "128")), past)
    assert pred.method == NONE
    assert "4 needed for what varies" in pred.basis
    past.append(PastRun(key("--epochs", "2", "--hidden", "128"), 2.56, 2.56e-3))
    fitted = predict(Target(key("--epochs", "8", "--hidden", "128")), past)
    assert fitted.method == FIT
    assert fitted.duration_s == pytest.approx(10.24, rel=0.01)


def test_runs_that_cost_nothing_predict_nothing_to_pay() -> None:
    past = [PastRun(key("--epochs", str(e)), float(e), 0.0) for e in (1, 2, 4, 8)]
    pred = predict(Target(key("--epochs", "3")), past)
    assert pred.method == FIT and (pred.cost, pred.low, pred.high) == (0.0, 0.0, 0.0)


def test_schedule_wall_time_is_a_greedy_list_schedule() -> None:
    assert schedule_wall([3.0, 3.0, 3.0, 3.0], 2) == 6.0
    assert schedule_wall([5.0, 1.0, 1.0, 1.0], 2) == 5.0
    assert schedule_wall([1.0, 2.0], 1) == 3.0
    assert schedule_wall([], 4) == 0.0


def test_calibration_counts_costs_inside_the_range_and_the_median_error() -> None:
    cal = calibration([(1.0, 1.1, 0.9, 1.2), (2.0, 1.0, 0.5, 1.5), (4.0, 4.0, 3.0, 5.0)])
    assert cal.runs == 3 and cal.inside == pytest.approx(2 / 3)
    assert cal.median_abs_pct == pytest.approx(10.0)
    assert "67% of actual costs inside" in cal.describe()
    assert calibration([]).describe().startswith("calibration: no finished run")


def test_start_up_plus_time_per_epoch_beats_a_power_law_that_bends() -> None:
    rng = random.Random(7)
    past = []
    for e in (2, 4, 8, 2, 4, 8, 3, 6):
        d = (1.5 + 0.2 * e) * math.exp(rng.gauss(0, 0.03))
        past.append(PastRun(key("--epochs", str(e)), d, d * 2e-4))
    pred = predict(Target(key("--epochs", "32")), past)
    truth = 1.5 + 0.2 * 32
    assert pred.basis.startswith("fitted on 8 past runs of this command: time = 1.")
    assert "s x epochs; extrapolated: epochs 32 is outside 2..8" in pred.basis
    assert pred.duration_low is not None and pred.duration_high is not None
    assert pred.duration_low < truth < pred.duration_high
    assert pred.low is not None and pred.high is not None
    assert pred.low < truth * 2e-4 < pred.high


def test_progress_gives_the_steps_and_the_time_per_step() -> None:
    """Runs that reported progress: steps = epochs, 0.05 s a step after 2 s of start-up."""
    rng = random.Random(3)
    past = []
    for e in (2, 3, 4, 2, 3, 4):
        step_s = 0.05 * math.exp(rng.gauss(0, 0.02))
        d = 2.0 * math.exp(rng.gauss(0, 0.02)) + e * step_s
        past.append(PastRun(key("--epochs", str(e)), d, d * 1e-4, steps=e, step_s=step_s))
    pred = predict(Target(key("--epochs", "400")), past)
    assert pred.basis.startswith("from the progress of 6 past runs of this command: 2.")
    assert "400 steps (steps = epochs) x 0.05" in pred.basis
    assert pred.duration_s == pytest.approx(2.0 + 400 * 0.05, rel=0.05)
    assert pred.duration_low is not None and pred.duration_high is not None
    assert pred.duration_low < 22.0 < pred.duration_high


def test_a_plans_total_adds_ranges_and_budget_refuses_on_the_centre_warns_on_the_high_end() -> None:
    from costmeter.cost.prediction import Prediction
    from costmeter.service.run_prediction import PlannedRun, PlanPrediction

    def run(name: str, cost: float | None, high: float | None = None) -> PlannedRun:
        if cost is None:
            return PlannedRun(name, {}, Prediction(None, None, None, None, "none", 0, NONE))
        pred = Prediction(10.0, cost, cost / 2, high or cost * 2, "b", 5, FIT)
        return PlannedRun(name, {"x": name}, pred)

    plan = PlanPrediction([run("a", 1.0), run("b", 3.0), run("c", None)], "USD", 2, 10.0, ["c"])
    total = plan.total()
    assert (total.runs, total.predicted_runs) == (3, 2)
    assert (total.cost, total.low, total.high) == (4.0, 2.0, 8.0)
    assert total.duration_s == 20.0 and total.wall_s == 10.0
    assert "not counted (no prediction): c" in total.basis
    assert plan.over_budget(1.5) == (["b"], ["a"])  # b's centre is over; a's high end only
    assert plan.over_budget(10.0) == ([], [])
    out = plan.to_json()
    assert out["runs"][0] == {  # type: ignore[index]
        "params": {"x": "a"},
        "predicted": {"duration_s": 10.0, "cost": 1.0, "low": 0.5, "high": 2.0, "basis": "b"},
    }
