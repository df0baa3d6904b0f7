"""Validate the report's nudge lift statistics by simulation, at full size.

    python bench/lift_validation.py [--runs 1000] [--seed 1]

Simulates nudge experiments (``tests/lift_sim.py``: 40 users a day for 30 days, 30% held
out, the goal chance following each user's pre-assignment activity) and looks at each
after every day, as a PM opening the report daily would:

1. ``--runs`` A/A experiments (no effect): the share ever declared "positive" or
   "negative" by the anytime-valid interval, against a fixed-horizon 95% interval
   peeked at daily;
2. planted effects of +2, +5, +10 and +15 points (``--runs`` / 4 each): the power, and
   the median day of detection;
3. CUPED: the interval's half-width with and without it, as the pre-period predicts the
   outcome more or less.

Writes docs/lift-validation.md (the figures) and docs/img/lift-aa.svg (the share of A/A
experiments declared significant by each day, both ways). Plain Python; about a minute.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.lift_sim import Run, simulate
from uptake.collector.lift import ALPHA, MIN_PER_ARM, TARGET

DAYS, PER_DAY, HOLDOUT = 30, 40, 0.3
DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


def cumulative(days: list[int | None], runs: int) -> list[float]:
    """Share of runs declared significant by each day."""
    return [sum(1 for d in days if d is not None and d <= day) / runs for day in range(DAYS)]


def svg(anytime: list[float], naive: list[float]) -> str:
    """A small line chart of both curves, drawn by hand (no plotting dependency)."""
    w, h, left, bottom, top = 640, 300, 56, 40, 20
    top_share = max(0.3, max(naive) * 1.1)

    def x(day: int) -> float:
        return left + (w - left - 20) * day / (DAYS - 1)

    def y(share: float) -> float:
        return h - bottom - (h - bottom - top) * share / top_share

    def line(values: list[float], color: str, dash: str = "") -> str:
        points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in enumerate(values))
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        return f'<polyline fill="none" stroke="{color}" stroke-width="2"{extra} points="{points}"/>'

    ticks = []
    share = 0.0
    while share <= top_share + 1e-9:
        ticks.append(
            f'<line x1="{left}" x2="{w - 20}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{y(share) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{share:.0%}</text>'
        )
        share += 0.05
    days = "".join(
        f'<text x="{x(d):.1f}" y="{h - bottom + 16}" font-size="11" text-anchor="middle">'
        f"{d + 1}</text>"
        for d in range(0, DAYS, 5)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif"><rect width="{w}" height="{h}" fill="#fff"/>'
        + "".join(ticks)
        + f'<line x1="{left}" x2="{w - 20}" y1="{y(ALPHA):.1f}" y2="{y(ALPHA):.1f}" '
        'stroke="#9ca3af" stroke-dasharray="2,3"/>'
        + line(naive, "#dc2626")
        + line(anytime, "#2563eb")
        + days
        + f'<text x="{(w + left) / 2}" y="{h - 6}" font-size="12" text-anchor="middle">'
        "day of the experiment (looked at every day)</text>"
        f'<text x="{left + 10}" y="{top + 12}" font-size="12" fill="#dc2626">fixed-horizon '
        "95% interval, peeked daily</text>"
        f'<text x="{left + 10}" y="{top + 28}" font-size="12" fill="#2563eb">anytime-valid '
        "interval (the report)</text>"
        f'<text x="{w - 24}" y="{y(ALPHA) - 4:.1f}" font-size="11" text-anchor="end" '
        'fill="#6b7280">5%</text></svg>\n'
    )


def main() -> None:
    """Run the simulations; write the figures to docs/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()

    def many(n: int, **kw: float) -> list[Run]:
        return [simulate(rng, days=DAYS, per_day=PER_DAY, holdout=HOLDOUT, **kw) for _ in range(n)]

    aa = many(args.runs)
    anytime = cumulative([r.first_day for r in aa], args.runs)
    naive = cumulative([r.naive_day for r in aa], args.runs)
    covered = sum(r.final[0] <= 0 <= r.final[1] for r in aa) / args.runs
    lines = [
        "# Nudge lift: validation by simulation",
        "",
        "Written by `python bench/lift_validation.py "
        f"--runs {args.runs} --seed {args.seed}`; the method is in",
        "[nudges.md](nudges.md#measuring-lift). Each experiment: "
        f"{PER_DAY} users a day for {DAYS} days",
        f"({PER_DAY * DAYS:,} users), {HOLDOUT:.0%} held out, goal chance 10% + 40% x "
        "activity (+ the effect",
        "when nudged), pre-period active days following the same activity; the report is "
        "read after",
        f"every day. Sequence: alpha {ALPHA}, tightest at {TARGET:,} users, at least "
        f"{MIN_PER_ARM} users per arm.",
        "",
        f"## A/A: {args.runs:,} experiments with no effect, looked at daily",
        "",
        "| interval | share ever declared significant (30 daily looks) |",
        "| --- | --- |",
        f"| anytime-valid (the report) | {anytime[-1]:.1%} |",
        f"| fixed-horizon 95%, peeked at daily | {naive[-1]:.1%} |",
        "",
        f"The final anytime-valid interval covers the true lift (0) in {covered:.1%} of runs.",
        "",
        "![A/A experiments declared significant by day](img/lift-aa.svg)",
        "",
        "## Power: planted effects",
        "",
        "| true lift | experiments | found (positive) | wrongly negative | median day found |",
        "| --- | --- | --- | --- | --- |",
    ]
    for effect in (0.02, 0.05, 0.10, 0.15):
        n = max(args.runs // 4, 1)
        runs = many(n, effect=effect)
        found = [r.first_day for r in runs if r.first_verdict == "positive"]
        wrong = sum(1 for r in runs if r.first_verdict == "negative")
        median = f"{statistics.median(found) + 1:.0f}" if found else "-"
        lines.append(
            f"| +{effect * 100:.0f} pts | {n} | {len(found) / n:.0%} | {wrong} | {median} |"
        )
    lines += [
        "",
        "## CUPED: the pre-period's share of the outcome",
        "",
        "| activity moves the goal chance by | variance removed | half-width without "
        "| with CUPED |",
        "| --- | --- | --- | --- |",
    ]
    for predictive in (0.0, 0.4, 0.8):
        runs = many(max(args.runs // 10, 1), predictive=predictive)
        plain = statistics.mean(r.widths[0] for r in runs)
        adjusted = statistics.mean(r.widths[1] for r in runs)
        removed = statistics.mean(r.reduction for r in runs)
        lines.append(
            f"| {predictive * 100:.0f} pts | {removed:.1%} | {plain * 100:.1f} pts | "
            f"{adjusted * 100:.1f} pts |"
        )
    took = time.perf_counter() - started
    lines += ["", f"({took:.0f} s on this machine.)", ""]
    os.makedirs(os.path.join(DOCS, "img"), exist_ok=True)
    with open(os.path.join(DOCS, "lift-validation.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    with open(os.path.join(DOCS, "img", "lift-aa.svg"), "w", encoding="utf-8") as handle:
        handle.write(svg(anytime, naive))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
