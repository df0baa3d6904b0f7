"""The statistics of a candidate, in closed form from its 2 x 2 table.

For a candidate and the cohort's outcome, ``a`` subjects did it and were retained, ``b``
did it and were not, ``c`` did not and were retained, ``d`` did not and were not
(docs/discover.md):

- reach ``(a + b) / n``, precision ``a / (a + b)``, the rate without ``c / (c + d)``,
  recall ``a / (a + c)``, lift = precision - rate without, and phi.
- The lift's confidence interval is Newcombe's hybrid score interval (his "method 10",
  1998): the Wilson interval of each rate, combined. It stays inside [-1, 1] and behaves
  at rates near 0 or 1 and at small counts, where the Wald interval does not.
- The score is phi with the lift replaced by the lower bound of its interval at a
  family-wise level (Bonferroni over every candidate tested): since
  ``phi = lift * sqrt(r(1 - r) / (q(1 - q)))`` (r the reach, q the cohort's rate), it
  rewards a large lift, a reach near half the cohort, and enough subjects to be sure,
  and it is above 0 only for a lift that the evidence says is above 0 after looking at
  every candidate.

No statistics library is needed: the normal quantile comes from :mod:`statistics`.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["family_z", "newcombe", "phi", "score", "wilson"]


def family_z(tested: int, level: float = 0.95) -> float:
    """Return the two-sided normal quantile at ``level``, Bonferroni-adjusted for ``tested``."""
    alpha = (1 - level) / max(tested, 1)
    return NormalDist().inv_cdf(1 - alpha / 2)


def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    """Return the Wilson score interval of the proportion ``x / n`` (``n`` > 0)."""
    p = x / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(a: int, n1: int, c: int, n0: int, z: float) -> tuple[float, float]:
    """Return Newcombe's hybrid score interval of ``a / n1 - c / n0`` (both groups non-empty)."""
    p1, p0 = a / n1, c / n0
    l1, u1 = wilson(a, n1, z)
    l0, u0 = wilson(c, n0, z)
    diff = p1 - p0
    low = diff - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return low, high


def phi(a: int, b: int, c: int, d: int) -> float | None:
    """Return the phi coefficient of a 2 x 2 table; None when a margin is empty."""
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return None
    return (a * d - b * c) / math.sqrt(margins)


def score(lift_low: float, reach: float, rate: float) -> float:
    """Return phi at the lift's lower bound: ``lift_low * sqrt(r(1 - r) / (q(1 - q)))``.

    ``rate`` is the cohort's outcome rate q; 0 when q is 0 or 1 (nothing to predict).
    """
    spread = rate * (1 - rate)
    if spread <= 0:
        return 0.0
    return lift_low * math.sqrt(reach * (1 - reach) / spread)
