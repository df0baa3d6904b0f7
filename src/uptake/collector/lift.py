"""A nudge's lift that can be trusted: by assignment, CUPED-adjusted, valid at every look.

The statistics behind the report's nudge verdict, in closed form (no scipy):

- **Intent to treat.** The two arms are the users *assigned* to the nudge (it fired) and
  the users *assigned* to its holdout, each from the moment of assignment, over the goal
  window. Being shown is an outcome of the treatment, not the treatment.
- **CUPED** (Deng, Xu, Kohavi and Walker, "Improving the sensitivity of online controlled
  experiments by utilizing pre-experiment data", WSDM 2013). Each user's outcome ``Y`` is
  adjusted by ``theta * (X - mean X)`` where ``X`` is their pre-assignment activity and
  ``theta = cov(X, Y) / var(X)`` over both arms. The difference of adjusted means
  estimates the same lift, with less variance when ``X`` predicts ``Y``.
- **Anytime-valid interval.** A two-sided normal-mixture confidence sequence (Robbins'
  mixture; Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric,
  nonasymptotic confidence sequences", Ann. Statist. 2021, and its asymptotic form in
  Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and
  asymptotic confidence sequences", Ann. Statist. 2024). With ``V`` the estimated variance
  of the difference after ``n`` users and ``r = n * rho**2``, the interval is the estimate
  plus or minus ``sqrt(V * (1 + 1/r) * log((1 + r) / alpha**2))``: it covers the true lift
  at every sample size at once with probability about ``1 - alpha``, so looking daily does
  not inflate false positives. ``rho`` only sets where it is tightest (``TARGET`` users).

Everything here works on per-arm sums (users, sum of Y, X, X², XY, Y²), which the SQL
engine and the plain-Python reference both count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import attrs

__all__ = [
    "ALPHA",
    "MIN_PER_ARM",
    "TARGET",
    "ArmSums",
    "Lift",
    "Verdict",
    "half_width",
    "lift_of",
]

#: The sequence's error rate: the chance it ever excludes the true lift.
ALPHA = 0.05
#: The sample size (users in both arms) at which the interval is tightest.
TARGET = 500
#: Fewer users than this in either arm: too few for the normal approximation.
MIN_PER_ARM = 10
#: The normal quantile for 80% power (the minimum detectable effect).
_Z_POWER = 0.8416212335729143

Verdict = Literal["keep running", "positive", "negative", "no effect detectable at this size"]


@attrs.frozen
class ArmSums:
    """One arm's sums over its users: ``y`` the outcome, ``x`` the covariate."""

    n: int = 0
    y: float = 0.0
    y2: float = 0.0
    x: float = 0.0
    x2: float = 0.0
    xy: float = 0.0

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, float]]) -> ArmSums:
        """Sum ``(y, x)`` pairs."""
        n = 0
        y = y2 = x = x2 = xy = 0.0
        for yi, xi in pairs:
            n += 1
            y += yi
            y2 += yi * yi
            x += xi
            x2 += xi * xi
            xy += xi * yi
        return cls(n, y, y2, x, x2, xy)

    def __add__(self, other: ArmSums) -> ArmSums:
        return ArmSums(
            self.n + other.n,
            self.y + other.y,
            self.y2 + other.y2,
            self.x + other.x,
            self.x2 + other.x2,
            self.xy + other.xy,
        )


@attrs.frozen
class Lift:
    """A lift by assignment, its anytime-valid interval and what it means.

    Attributes:
        treated: Users assigned to the nudge whose goal window has ended.
        control: Users assigned to its holdout whose goal window has ended.
        treated_rate: Goal conversion among ``treated``.
        control_rate: Goal conversion among ``control``.
        lift: The CUPED-adjusted difference (treated - control).
        raw_lift: The plain difference of the two rates.
        low: Lower end of the anytime-valid interval (None below ``MIN_PER_ARM``).
        high: Upper end.
        mde: The smallest lift the interval would detect with 80% power at this size.
        variance_reduction: The share of variance CUPED removed (0 when it removed none).
        verdict: "keep running", "positive", "negative" or
            "no effect detectable at this size".
    """

    treated: int
    control: int
    treated_rate: float
    control_rate: float
    lift: float
    raw_lift: float
    low: float | None
    high: float | None
    mde: float | None
    variance_reduction: float
    verdict: Verdict


def rho_squared(target: int = TARGET, alpha: float = ALPHA) -> float:
    """Return the mixture's ``rho**2`` that makes the interval tightest at ``target`` users."""
    a = -2 * math.log(alpha)
    return (a + math.log(a + 1)) / target


def half_width(variance: float, n: int, alpha: float = ALPHA, target: int = TARGET) -> float:
    """Return the confidence sequence's half-width for an estimate of ``variance`` after
    ``n`` users (the normal-mixture boundary; see the module docstring)."""
    if variance <= 0:
        return 0.0
    r = n * rho_squared(target, alpha)
    return math.sqrt(variance * (1 + 1 / r) * math.log((1 + r) / alpha**2))


def _moments(s: ArmSums) -> tuple[float, float, float, float, float]:
    """Means of y and x, and the (n - 1) variances of y and x and their covariance."""
    my, mx = s.y / s.n, s.x / s.n
    d = max(s.n - 1, 1)
    vy = max(s.y2 - s.n * my * my, 0.0) / d
    vx = max(s.x2 - s.n * mx * mx, 0.0) / d
    cxy = (s.xy - s.n * mx * my) / d
    return my, mx, vy, vx, cxy


def lift_of(
    treated: ArmSums,
    control: ArmSums,
    *,
    growing: bool = True,
    alpha: float = ALPHA,
    target: int = TARGET,
    cuped: bool = True,
) -> Lift | None:
    """Return the lift of ``treated`` over ``control`` (None when an arm is empty).

    Args:
        treated: Sums over the users assigned to the nudge.
        control: Sums over the users assigned to its holdout.
        growing: Whether the arms still grow (users were assigned recently); when they
            don't and the interval holds 0, waiting will not help.
        alpha: The error rate of the sequence.
        target: Users at which the interval is tightest.
        cuped: Adjust by the covariate (else ``theta = 0``).
    """
    if not treated.n or not control.n:
        return None
    m1y, m1x, v1y, v1x, c1 = _moments(treated)
    m0y, m0x, v0y, v0x, c0 = _moments(control)
    raw = m1y - m0y
    both = treated + control
    _, _, _, vx, cxy = _moments(both)
    theta = cxy / vx if cuped and vx > 0 else 0.0
    lift = raw - theta * (m1x - m0x)
    raw_var = v1y / treated.n + v0y / control.n
    adj1 = max(v1y - 2 * theta * c1 + theta * theta * v1x, 0.0)
    adj0 = max(v0y - 2 * theta * c0 + theta * theta * v0x, 0.0)
    var = adj1 / treated.n + adj0 / control.n
    reduction = max(1 - var / raw_var, 0.0) if raw_var > 0 else 0.0
    low = high = mde = None
    verdict: Verdict = "keep running"
    if min(treated.n, control.n) >= MIN_PER_ARM and var > 0:
        w = half_width(var, both.n, alpha, target)
        low, high = lift - w, lift + w
        mde = w + _Z_POWER * math.sqrt(var)
        if low > 0:
            verdict = "positive"
        elif high < 0:
            verdict = "negative"
        elif not growing:
            verdict = "no effect detectable at this size"
    return Lift(
        treated=treated.n,
        control=control.n,
        treated_rate=m1y,
        control_rate=m0y,
        lift=lift,
        raw_lift=raw,
        low=low,
        high=high,
        mde=mde,
        variance_reduction=reduction,
        verdict=verdict,
    )
