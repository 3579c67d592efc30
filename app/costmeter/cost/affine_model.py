"""A run's duration as start-up + a time per unit of one parameter: ``time = a + b x``.

Most training commands have a fixed start-up (imports, data loading) and then work in proportion
to one parameter (``--epochs``, ``--steps``). A power law through such runs bends: fitted on 2 to
8 epochs it underestimates 16. This form is tried beside the power law for each varying
parameter, and kept when it predicts the past runs better, both judged by the same leave-one-out
error of log(duration). Its range is Student's t x that error, widened by the new run's leverage
(how far its value is from the past ones). The cost is fitted the same way on the same parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from costmeter.cost.least_squares import Fit, fit, t_quantile


@dataclass(frozen=True, slots=True)
class AffineFit:
    centre: float
    low: float
    high: float
    #: Mean squared leave-one-out error of log(y).
    mean_press: float
    intercept: float
    slope: float


def affine_fit(xs: Sequence[float], ys: Sequence[float], x: float) -> AffineFit | None:
    """``y = a + b x`` by least squares, predicted at ``x``; None when it does not fit (fewer
    than 3 runs, a slope or a prediction that is not above 0, a run it cannot leave out)."""
    n = len(xs)
    if n < 3:
        return None
    f = fit([(1.0, v) for v in xs], ys)
    if f is None or f.coef[1] <= 0:
        return None
    press = _log_press(f, xs, ys)
    x0 = (1.0, x)
    centre = f.predict(x0)
    if press is None or centre <= 0:
        return None
    half = t_quantile(f.dof) * math.sqrt(press) * math.sqrt(1 + f.leverage(x0))
    return AffineFit(
        centre, centre * math.exp(-half), centre * math.exp(half), press, f.coef[0], f.coef[1]
    )


def _log_press(f: Fit, xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The mean squared error of log(y) when each run is left out of the fit in turn."""
    total = 0.0
    for v, y in zip(xs, ys, strict=True):
        row = (1.0, v)
        h = f.leverage(row)
        if h >= 1 - 1e-9 or y <= 0:
            return None
        left_out = y - (y - f.predict(row)) / (1 - h)
        if left_out <= 0:
            return None
        total += (math.log(y) - math.log(left_out)) ** 2
    return total / len(xs)
