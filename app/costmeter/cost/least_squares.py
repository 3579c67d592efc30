"""Ordinary least squares for the tiny fits of a run prediction, in plain Python.

The design matrices here have a handful of columns and at most a few hundred rows, so the normal
equations solved by Gauss-Jordan elimination are exact enough and need no numpy (which only
ships with the app's extra). ``t_quantile`` gives Student's t for the prediction interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: A pivot below this (relative to the matrix's scale) makes the matrix singular for us.
_SINGULAR = 1e-12
#: A run whose leverage is this close to 1 cannot be left out (its leave-one-out error is
#: unbounded): a model that needs it to be exact is not chosen.
_MAX_LEVERAGE = 1 - 1e-9

#: Student's t, 95th percentile (two-sided 90 %), for 1..30 degrees of freedom (the usual
#: table; e.g. Abramowitz and Stegun 26.10).
_T95 = (
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
    1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
    1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697,
)  # fmt: skip
_Z95 = 1.6448536269514722


def t_quantile(dof: int) -> float:
    """The 95th percentile of Student's t with ``dof`` degrees of freedom (at least 1): the
    table up to 30, then the normal quantile with the first Cornish-Fisher correction
    ``z + (z^3 + z) / (4 dof)`` (within 0.001 of the exact value there)."""
    if dof < 1:
        raise ValueError("Student's t needs at least 1 degree of freedom.")
    if dof <= len(_T95):
        return _T95[dof - 1]
    z = _Z95
    return z + (z**3 + z) / (4 * dof)


@dataclass(frozen=True, slots=True)
class Fit:
    """A least-squares fit of ``y ~ X @ coef``."""

    coef: tuple[float, ...]
    #: (X^T X)^-1, for the leverage of a new point.
    xtx_inv: tuple[tuple[float, ...], ...]
    #: Residual sum of squares and its degrees of freedom (rows - columns).
    sse: float
    dof: int
    #: Leave-one-out sum of squared errors (PRESS); inf when a row cannot be left out.
    press: float
    #: Share of the variance around the mean explained; None when y does not vary.
    r2: float | None

    @property
    def sigma(self) -> float:
        """The residual standard error."""
        return math.sqrt(self.sse / self.dof) if self.dof > 0 else math.inf

    def predict(self, x: Sequence[float]) -> float:
        return sum(c * v for c, v in zip(self.coef, x, strict=True))

    def leverage(self, x: Sequence[float]) -> float:
        """x^T (X^T X)^-1 x: how far ``x`` is from the rows the fit saw."""
        return sum(
            x[i] * sum(self.xtx_inv[i][j] * x[j] for j in range(len(x))) for i in range(len(x))
        )

    def interval(self, x: Sequence[float]) -> tuple[float, float, float]:
        """The prediction at ``x`` and its two-sided 90 % prediction interval."""
        centre = self.predict(x)
        half = t_quantile(self.dof) * self.sigma * math.sqrt(1 + self.leverage(x))
        return centre, centre - half, centre + half


def fit(rows: Sequence[Sequence[float]], y: Sequence[float]) -> Fit | None:
    """Least squares of ``y`` on ``rows`` (each row one observation, the intercept's 1
    included by the caller); None when the columns are not independent or there are no more
    rows than columns."""
    n = len(rows)
    p = len(rows[0]) if rows else 0
    if n <= p or p == 0:
        return None
    xtx = [[sum(r[i] * r[j] for r in rows) for j in range(p)] for i in range(p)]
    inv = invert(xtx)
    if inv is None:
        return None
    xty = [sum(r[i] * v for r, v in zip(rows, y, strict=True)) for i in range(p)]
    coef = [sum(inv[i][j] * xty[j] for j in range(p)) for i in range(p)]
    sse = 0.0
    press = 0.0
    for r, v in zip(rows, y, strict=True):
        e = v - sum(c * x for c, x in zip(coef, r, strict=True))
        sse += e * e
        h = sum(r[i] * sum(inv[i][j] * r[j] for j in range(p)) for i in range(p))
        press = math.inf if h >= _MAX_LEVERAGE else press + (e / (1 - h)) ** 2
    mean = sum(y) / n
    sst = sum((v - mean) ** 2 for v in y)
    r2 = None if sst <= 0 else max(0.0, 1 - sse / sst)
    return Fit(tuple(coef), tuple(tuple(r) for r in inv), sse, n - p, press, r2)


def fit_ones(y: Sequence[float]) -> Fit | None:
    """``fit`` of ``y`` on the intercept alone (every row ``(1.0,)``), by the same
    floating-point operations in the same order, so the same ``Fit`` to the last bit (a test
    holds them equal), without its per-row loops over one column. Every prediction fits this
    model; repeating one command, it is the only one."""
    n = len(y)
    if n <= 1:
        return None
    inv = 1.0 / float(n)  # (X^T X)^-1: X^T X is n ones added up
    coef = 0 + inv * sum(y)  # sum() of one product, as ``fit`` adds up its coefficients
    fitted = 0 + coef * 1.0
    # Leverage 1/n: at most 0.5 here, so every run can be left out (no infinite PRESS).
    h = 0 + 1.0 * (0 + inv * 1.0)
    sse = 0.0
    press = 0.0
    for v in y:
        e = v - fitted
        sse += e * e
        press = press + (e / (1 - h)) ** 2
    mean = sum(y) / n
    sst = sum((v - mean) ** 2 for v in y)
    r2 = None if sst <= 0 else max(0.0, 1 - sse / sst)
    return Fit((coef,), ((inv,),), sse, n - 1, press, r2)


def invert(m: Sequence[Sequence[float]]) -> list[list[float]] | None:
    """The inverse of a small square matrix (Gauss-Jordan, partial pivoting); None when it is
    singular."""
    p = len(m)
    scale = max((abs(v) for row in m for v in row), default=0.0)
    if scale == 0:
        return None
    a = [[*map(float, row), *(1.0 if i == j else 0.0 for j in range(p))] for i, row in enumerate(m)]
    for col in range(p):
        pivot = max(range(col, p), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) <= _SINGULAR * scale:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        lead = a[col][col]
        a[col] = [v / lead for v in a[col]]
        for r in range(p):
            if r != col and a[r][col] != 0:
                f = a[r][col]
                a[r] = [v - f * w for v, w in zip(a[r], a[col], strict=True)]
    return [row[p:] for row in a]
