"""Figures derived from a :class:`~uptake.collector.metrics.Report`, and how they read.

The page, the terminal summary and the JSON/CSV output all take their numbers and their
wording from here, so one concept has one count and one label everywhere.
"""

from __future__ import annotations

import math
import re

from ..definitions import writable
from .metrics import NudgeStat, ProgrammeStat, Report

__all__ = [
    "LIFT_CONFIDENCE",
    "itt_interval_text",
    "itt_text",
    "lift_interval",
    "lift_text",
    "num",
    "p_text",
    "pct",
    "plural",
    "printable",
    "skipped_text",
    "verdict_text",
]

#: The confidence of the lift interval the report shows.
LIFT_CONFIDENCE = 0.95
_Z = 1.959963984540054  # the two-sided 95% normal quantile


def pct(x: float | None, digits: int = 0) -> str:
    """A share as a percentage ("n/a" when undefined)."""
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def num(x: float | None, digits: int = 1) -> str:
    """A number with thousands separators ("n/a" when undefined)."""
    return "n/a" if x is None else f"{x:,.{digits}f}"


def plural(n: int, noun: str) -> str:
    """Return a count with its noun: "1 user", "2,000 users"."""
    return f"{n:,} {noun if n == 1 else noun + 's'}"


def p_text(p: float | None) -> str:
    """A p-value as people read it: three decimals, and "<0.001" below that."""
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """Return text safe to print: control characters become "?", a lone surrogate U+FFFD."""
    return _CONTROL.sub("?", writable(text))


def skipped_text(report: Report) -> str:
    """Say how many events were skipped, and why: "3 events skipped: 2 no user or anonymous id"."""
    text = f"{plural(report.skipped, 'event')} skipped"
    if report.skipped_by:
        text += ": " + ", ".join(f"{n:,} {reason}" for reason, n in report.skipped_by)
    return text


def lift_interval(nudge: NudgeStat) -> tuple[float, float] | None:
    """Return the 95% confidence interval of a nudge's lift (shown rate - held-out rate).

    A Wald interval for a difference of two proportions (unpooled standard error);
    None when the nudge has no lift (no goal, or nobody shown or held out).
    """
    if nudge.lift is None or not nudge.shown or not nudge.held_out:
        return None
    p1 = nudge.shown_converted / nudge.shown
    p2 = nudge.held_out_converted / nudge.held_out
    se = math.sqrt(p1 * (1 - p1) / nudge.shown + p2 * (1 - p2) / nudge.held_out)
    return (nudge.lift - _Z * se, nudge.lift + _Z * se)


def _pts(x: float) -> str:
    return f"{x * 100:+.1f}"


def lift_text(nudge: NudgeStat) -> str:
    """Return lift, interval and p-value: "+8.1 pts (95% CI -2.0 to +18.2), p=0.120"."""
    if nudge.lift is None:
        return "n/a"
    interval = lift_interval(nudge)
    text = f"{_pts(nudge.lift)} pts"
    if interval is not None:
        text += f" (95% CI {_pts(interval[0])} to {_pts(interval[1])})"
    p = nudge.p_value
    return text + f", p{'' if p is not None and p < 0.001 else '='}{p_text(p)}"


def verdict_text(stat: NudgeStat | ProgrammeStat) -> str:
    """Say what the lift by assignment found: "positive", "keep running"... ("n/a": no goal;
    "no holdout": fired for users but never held any out)."""
    if stat.verdict is not None:
        return stat.verdict
    if isinstance(stat, NudgeStat):
        if stat.goal is None:
            return "n/a"
        if stat.fired and not stat.held_out:
            return "no holdout"  # nothing to compare with: give the nudge a holdout
    return "keep running"  # nobody's goal window has ended yet


def itt_interval_text(stat: NudgeStat | ProgrammeStat) -> str:
    """Return the anytime-valid interval in points: "-2.0 to +18.2" ("" until there is one)."""
    if stat.itt_low is None or stat.itt_high is None:
        return ""
    return f"{_pts(stat.itt_low)} to {_pts(stat.itt_high)}"


def itt_text(stat: NudgeStat | ProgrammeStat) -> str:
    """Return the lift by assignment, its anytime-valid interval and the detectable effect:
    "+8.1 pts (anytime 95% -2.0 to +18.2; detectable at this size: 12.0 pts)"."""
    if stat.itt_lift is None:
        return "n/a"
    text = f"{_pts(stat.itt_lift)} pts"
    if stat.itt_low is not None and stat.mde is not None:
        text += (
            f" (anytime {LIFT_CONFIDENCE:.0%} {itt_interval_text(stat)}; detectable at this "
            f"size: {stat.mde * 100:.1f} pts)"
        )
    return text
