"""Simulated nudge experiments for the lift statistics (seeded, plain Python).

Users arrive every day and are assigned to the nudge or to its holdout. Each user has an
activity level ``a``; their pre-assignment active days ``X`` (of 28) follow it, and so does
their chance to reach the goal. The report looks at the experiment after every day.
Shared by ``tests/test_lift.py`` (small) and ``bench/lift_validation.py`` (full size).
"""

from __future__ import annotations

import math
import random

import attrs

from uptake.collector.lift import MIN_PER_ARM, ArmSums, lift_of

_Z95 = 1.959963984540054


@attrs.frozen
class Run:
    """One simulated experiment, looked at daily.

    ``first_day`` is the first look whose anytime-valid interval excluded 0 (None: never),
    ``first_verdict`` what it said then;
    ``naive_day`` the same for a fixed-horizon 95% interval, peeked at daily;
    ``widths`` the final half-widths without and with CUPED.
    """

    first_day: int | None
    first_verdict: str | None
    naive_day: int | None
    final: tuple[float, float]
    widths: tuple[float, float]
    reduction: float


def simulate(
    rng: random.Random,
    *,
    days: int = 30,
    per_day: int = 40,
    holdout: float = 0.3,
    effect: float = 0.0,
    predictive: float = 0.4,
) -> Run:
    """Simulate one experiment; ``effect`` is added to the treated users' goal chance and
    ``predictive`` is how much the activity level moves it (0: X says nothing of Y)."""
    sums = [ArmSums(), ArmSums()]  # control, treated
    first_day = naive_day = None
    first_verdict = None
    last = None
    plain = None
    for day in range(days):
        add = [[0, 0.0, 0.0, 0.0, 0.0], [0, 0.0, 0.0, 0.0, 0.0]]
        for _ in range(per_day):
            a = rng.random()
            x = min(max(round(28 * a + rng.gauss(0.0, 2.0)), 0), 28)
            arm = 0 if rng.random() < holdout else 1
            p = 0.1 + predictive * a + (effect if arm else 0.0)
            y = 1.0 if rng.random() < p else 0.0
            s = add[arm]
            s[0] += 1
            s[1] += y
            s[2] += x
            s[3] += x * x
            s[4] += x * y
        sums = [
            old + ArmSums(int(s[0]), s[1], s[1], s[2], s[3], s[4])
            for old, s in zip(sums, add, strict=True)
        ]
        last = lift_of(sums[1], sums[0])
        plain = lift_of(sums[1], sums[0], cuped=False)
        if last is None or plain is None:
            continue
        if first_day is None and last.verdict in ("positive", "negative"):
            first_day, first_verdict = day, last.verdict
        if naive_day is None and min(sums[0].n, sums[1].n) >= MIN_PER_ARM:
            t, c = sums[1], sums[0]
            p1, p0 = t.y / t.n, c.y / c.n
            se = math.sqrt(p1 * (1 - p1) / t.n + p0 * (1 - p0) / c.n)
            if se > 0 and abs(p1 - p0) > _Z95 * se:
                naive_day = day
    assert last is not None and plain is not None
    assert last.low is not None and last.high is not None
    assert plain.low is not None and plain.high is not None
    return Run(
        first_day=first_day,
        first_verdict=first_verdict,
        naive_day=naive_day,
        final=(last.low, last.high),
        widths=((plain.high - plain.low) / 2, (last.high - last.low) / 2),
        reduction=last.variance_reduction,
    )
