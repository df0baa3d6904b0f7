"""The nudges in the report: their summary lines and their section of the page.

Lift by assignment leads: verdict, lift, anytime-valid interval and the effect detectable
at this size (see :mod:`.lift`), then reach, then the programme against the global
holdout when there is one.
"""

from __future__ import annotations

from .html_parts import chart_div, table
from .metrics import NudgeStat, ProgrammeStat, Report
from .wording import LIFT_CONFIDENCE, itt_interval_text, itt_text, num, pct, verdict_text

__all__ = ["nudge_lines", "nudge_section", "programme_lines"]


def nudge_lines(n: NudgeStat) -> list[str]:
    """Return the summary's lines for one nudge: verdict and lift first, then counts."""
    counts = (
        f"users fired {n.fired:,}, shown {n.shown:,}, held out {n.held_out:,}, clicked "
        f"{n.clicked:,}, dismissed {n.dismissed:,}; {n.suppressed:,} decisions suppressed"
    )
    if n.global_held_out:
        counts += f"; {n.global_held_out:,} users in the global holdout"
    if n.goal is None:
        return [f"nudge {n.name}: {counts}"]
    return [
        f"nudge {n.name}: {verdict_text(n)}; lift by assignment {itt_text(n)}; {counts}",
        f"  goal {n.goal} within {num(n.goal_within_days, 0)} d of assignment: "
        f"{_converted(n.treated_rate, n.treated)} nudged vs "
        f"{_converted(n.control_rate, n.control)} held out; {n.pending:,} still in the "
        f"window; CUPED cut the variance by {pct(n.variance_reduction)}",
    ]


def programme_lines(p: ProgrammeStat) -> list[str]:
    """Return the summary's line for the programme against the global holdout."""
    text = f"nudge programme vs global holdout ({p.outcome}): {verdict_text(p)}"
    if p.treated_rate is not None and p.control_rate is not None:
        text += (
            f"; lift {itt_text(p)}; {_converted(p.treated_rate, p.treated)} of the rest vs "
            f"{_converted(p.control_rate, p.control)} held out of every nudge"
        )
    return [text + f"; {p.pending:,} users assigned less than 35 days ago"]


def _converted(rate: float | None, of: int) -> str:
    """Return converted users of ``of``: "36/67 (53.7%)" (nothing without a rate)."""
    return "" if rate is None else f"{round(rate * of):,}/{of:,} ({pct(rate, 1)})"


def nudge_section(report: Report, present: set[str]) -> list[str]:
    """Return the parts of the page's nudge section (``present``: the charts drawn)."""
    lifts = (
        (
            n.name,
            verdict_text(n),
            "n/a" if n.itt_lift is None else f"{n.itt_lift * 100:+.1f} pts",
            itt_interval_text(n),
            "" if n.mde is None else f"{n.mde * 100:.1f} pts",
            "" if n.goal is None else f"{n.goal} within {num(n.goal_within_days, 0)} d",
            _converted(n.treated_rate, n.treated),
            _converted(n.control_rate, n.control),
        )
        for n in report.nudges
    )
    reach = (
        (
            n.name,
            f"{n.fired:,}",
            f"{n.shown:,}",
            f"{n.clicked:,}",
            f"{n.dismissed:,}",
            f"{n.held_out:,}",
            f"{n.global_held_out:,}",
            f"{n.suppressed:,}",
            f"{n.pending:,}",
            "" if n.variance_reduction is None else pct(n.variance_reduction),
        )
        for n in report.nudges
    )
    parts = [
        table(
            [
                "nudge",
                "verdict",
                "lift",
                f"anytime {LIFT_CONFIDENCE:.0%} (pts)",
                "detectable now",
                "goal",
                "nudged: converted (users)",
                "held out: converted (users)",
            ],
            lifts,
            "nudges",
        ),
        chart_div("nudge-lift") if "nudge-lift" in present else "",
        "<p class=note>Lift by assignment (intent to treat): goal conversion of the users the "
        "nudge fired for minus that of the users held out of it, each from the moment of that "
        "decision, over the goal window, among users whose window has ended; adjusted for each "
        "user's active days in the 28 days before (CUPED). The interval is an anytime-valid "
        "95% confidence sequence: it may be read every day without raising false positives. "
        "The verdict is <b>positive</b> or <b>negative</b> once it excludes zero, <b>keep "
        "running</b> until then, and <b>no effect detectable at this size</b> when no user "
        "was assigned for a week; <i>detectable now</i> is the smallest lift found with 80% "
        "power at this size. Users shown it are not compared: being shown is an outcome.</p>",
        table(
            [
                "nudge",
                "users fired",
                "users shown",
                "users clicked",
                "users dismissed",
                "users held out",
                "users in global holdout",
                "decisions suppressed",
                "users in goal window",
                "CUPED variance cut",
            ],
            reach,
            "nudge-reach",
        ),
    ]
    for p in report.programme:
        row = (
            p.outcome,
            verdict_text(p),
            "n/a" if p.itt_lift is None else f"{p.itt_lift * 100:+.1f} pts",
            itt_interval_text(p),
            "" if p.mde is None else f"{p.mde * 100:.1f} pts",
            _converted(p.treated_rate, p.treated),
            _converted(p.control_rate, p.control),
        )
        parts.append(
            table(
                [
                    "nudge programme",
                    "verdict",
                    "lift",
                    f"anytime {LIFT_CONFIDENCE:.0%} (pts)",
                    "detectable now",
                    "everyone else: retained",
                    "global holdout: retained",
                ],
                [row],
                "programme",
            )
        )
    return parts
