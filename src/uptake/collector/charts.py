"""The report's charts as plotly.js figures (traces and layout), readable at any size.

Counts get whole-number axes (no "0.5 users"), daily charts get day ticks and weekly
charts Monday (ISO week) ticks, never hours; every axis says what it counts. Labels that
come from events are HTML entities (plotly reads a few tags in labels).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from .metrics import Report
from .wording import plural, verdict_text

__all__ = ["QUICK_RATIO_CAP", "Chart", "charts"]

#: (id, traces, layout) of one chart.
Chart = tuple[str, list[dict[str, Any]], dict[str, Any]]

#: The lifecycle chart's quick-ratio axis stops here; a week above it is drawn at the cap
#: with its value written beside it (one early week of 27 would flatten every other).
QUICK_RATIO_CAP = 4.0

COLORS = {
    "blue": "#2563eb",
    "teal": "#0d9488",
    "amber": "#d97706",
    "red": "#dc2626",
    "gray": "#6b7280",
    "green": "#16a34a",
    "violet": "#7c3aed",
}
_DAY_MS = 86_400_000


def label(text: str) -> str:
    """Return a user string as a plotly label: entities, so no tag in it is read as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0, "font": {"size": 15}},
        "margin": {"l": 60, "r": 30, "t": 50, "b": 50},
        "height": 340,
        "legend": {"orientation": "h", "y": -0.25},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "xaxis": {"gridcolor": "#eeeeee", "automargin": True},
        "yaxis": {"gridcolor": "#eeeeee", "rangemode": "tozero", "automargin": True},
    }
    layout.update(extra)
    return layout


def _step(span: float, ticks: int = 6) -> int:
    """A whole, round tick step (1, 2, 5, 10, 20, ...) giving at most about ``ticks`` ticks."""
    base = 1
    while True:
        for factor in (1, 2, 5):
            if span / (base * factor) <= ticks:
                return base * factor
        base *= 10


def _weeks(weeks: float, ticks: int) -> int:
    """Return a step in weeks (1, 2, 4, 8, 13, 26, 52, ...) giving at most ``ticks`` ticks."""
    for step in (1, 2, 4, 8, 13, 26):
        if weeks / step <= ticks:
            return step
    return 52 * _step(weeks / 52, ticks)


def count_axis(title: str, values: Iterable[float], low: float = 0) -> dict[str, Any]:
    """Return a y (or x) axis for counts: whole-number ticks from ``low`` to the largest value."""
    top = max(values, default=0)
    axis: dict[str, Any] = {
        "title": {"text": title},
        "gridcolor": "#eeeeee",
        "automargin": True,
        "tickformat": ",d",
        "tick0": 0,
        "dtick": _step(max(top - low, 1)),
    }
    axis["range"] = [low * 1.08, max(top, 1) * 1.08]
    return axis


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _format(first: date, last: date) -> str:
    return "%b %d" if first.year == last.year else "%b %d, %Y"


def day_axis(days: list[date]) -> dict[str, Any]:
    """Return an x axis for a daily series: a tick per day, or per Monday for longer spans."""
    first, last = days[0], days[-1]
    span = (last - first).days + 1
    if span <= 14:
        step, tick0 = 1, first
    else:
        step, tick0 = 7 * _weeks(span / 7, 8), _monday(first)
    return {
        "type": "date",
        "tickformat": _format(first, last),
        "hoverformat": "%a %b %d, %Y",
        "dtick": step * _DAY_MS,
        "tick0": tick0.isoformat(),
        "range": [f"{first - timedelta(days=1)} 12:00", f"{last} 12:00"],
        "gridcolor": "#eeeeee",
        "automargin": True,
        "title": {"text": "day" if step == 1 else "day (ticks on Mondays)"},
    }


def week_axis(weeks: list[date]) -> dict[str, Any]:
    """Return an x axis for an ISO-week series (each point a Monday): ticks on Mondays."""
    first, last = weeks[0], weeks[-1]
    step = _weeks(len(weeks), 10)
    return {
        "type": "date",
        "tickformat": _format(first, last),
        "hoverformat": "week of %a %b %d, %Y",
        "dtick": 7 * step * _DAY_MS,
        "tick0": first.isoformat(),
        "range": [f"{first - timedelta(days=4)} 12:00", f"{last + timedelta(days=3)} 12:00"],
        "gridcolor": "#eeeeee",
        "automargin": True,
        "title": {"text": "week (starting Monday)"},
    }


def _active_users(report: Report) -> Chart:
    daily = report.daily
    days = [d.day.isoformat() for d in daily]
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers" if len(daily) < 3 else "lines",
            "name": name,
            "x": days,
            "y": values,
            "line": {"color": color},
        }
        for name, values, color in (
            ("DAU (users)", [d.dau for d in daily], COLORS["blue"]),
            ("WAU (users, 7 days)", [d.wau for d in daily], COLORS["teal"]),
            ("MAU (users, 30 days)", [d.mau for d in daily], COLORS["violet"]),
        )
    ]
    traces.append(
        {
            "type": "scatter",
            "mode": "lines+markers" if len(daily) < 3 else "lines",
            "name": "DAU/MAU (right axis)",
            "x": days,
            "y": [round(d.dau / d.mau, 4) if d.mau else None for d in daily],
            "yaxis": "y2",
            "line": {"color": COLORS["amber"], "dash": "dot"},
        }
    )
    return (
        "active-users",
        traces,
        _layout(
            "Active users and stickiness",
            margin={"l": 60, "r": 70, "t": 50, "b": 50},
            xaxis=day_axis([d.day for d in daily]),
            yaxis=count_axis("active users", [d.mau for d in daily]),
            yaxis2={
                "title": {"text": "stickiness (DAU/MAU)"},
                "overlaying": "y",
                "side": "right",
                "tickformat": ".0%",
                "range": [0, 1.08],
                "tick0": 0,
                "dtick": 0.25,
                "showgrid": False,
                "automargin": True,
            },
        ),
    )


def _histogram(n: int, hist: tuple[int, ...]) -> Chart:
    return (
        f"l{n}",
        [
            {
                "type": "bar",
                "x": list(range(1, n + 1)),
                "y": list(hist),
                "marker": {"color": COLORS["blue"]},
                "name": "users",
                "hovertemplate": "%{y:,d} users active on %{x} days<extra></extra>",
            }
        ],
        _layout(
            f"L{n}: users by active days in the last {n}",
            xaxis={
                "title": {"text": f"active days of the last {n}"},
                "tick0": 1,
                "dtick": 1 if n == 7 else 3,
                "range": [0.4, n + 0.6],
                "automargin": True,
            },
            yaxis=count_axis("users", hist),
        ),
    )


def _lifecycle(report: Report) -> Chart:
    weeks = report.lifecycle
    x = [w.week_start.isoformat() for w in weeks]
    traces: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": name,
            "x": x,
            "y": values,
            "width": 5 * _DAY_MS,  # a lone week's bar would otherwise be a hairline
            # The week so far is drawn pale: its counts are not final.
            "marker": {"color": color, "opacity": [1 if w.complete else 0.45 for w in weeks]},
        }
        for name, values, color in (
            ("new", [w.new for w in weeks], COLORS["green"]),
            ("returning", [w.returning for w in weeks], COLORS["blue"]),
            ("resurrecting", [w.resurrecting for w in weeks], COLORS["teal"]),
            ("dormant", [-w.dormant for w in weeks], COLORS["red"]),
        )
    ]
    ratios = [w.quick_ratio for w in weeks]
    shown = [None if q is None else min(q, QUICK_RATIO_CAP) for q in ratios]
    clipped = [q is not None and q > QUICK_RATIO_CAP for q in ratios]
    traces.append(
        {
            "type": "scatter",
            "mode": "lines+markers+text" if any(clipped) else "lines+markers",
            "name": "quick ratio (right axis)",
            "x": x,
            "y": shown,
            "customdata": ratios,
            "hovertemplate": "quick ratio %{customdata:.2f}<extra></extra>",
            "text": [
                f"{q:.1f}\u2191" if c and q else "" for q, c in zip(ratios, clipped, strict=True)
            ],
            "textposition": "middle right",
            "yaxis": "y2",
            "line": {"color": COLORS["gray"]},
        }
    )
    top = max(w.new + w.returning + w.resurrecting for w in weeks)
    bottom = max(w.dormant for w in weeks)
    axis = count_axis("users (dormant below 0)", [top], low=-bottom)
    known = [q for q in shown if q is not None]
    ratio_top = max(known, default=1.0) or 1.0
    return (
        "lifecycle",
        traces,
        _layout(
            "Weekly lifecycle (ISO weeks, starting Monday)",
            barmode="relative",
            margin={"l": 60, "r": 70, "t": 50, "b": 50},
            xaxis=week_axis([w.week_start for w in weeks]),
            yaxis=axis,
            yaxis2={
                "overlaying": "y",
                "side": "right",
                "title": {"text": f"quick ratio (cut at {QUICK_RATIO_CAP:g})", "standoff": 12},
                "showgrid": False,
                "range": [0, ratio_top * 1.08],
                "tick0": 0,
                "dtick": 0.25 if ratio_top <= 1 else 0.5 if ratio_top <= 2 else 1,
                "automargin": True,
                "zeroline": False,
            },
        ),
    )


def _share_bars(
    key: str,
    names: list[str],
    shares: list[float],
    texts: list[str],
    *,
    color: str,
    trace: str,
    title: str,
    axis: str,
    row: int,
    category: bool = False,
) -> Chart:
    """Horizontal bars of shares (0-100%), one a row, labelled with what they count."""
    yaxis: dict[str, object] = {"autorange": "reversed", "automargin": True}
    if category:
        yaxis["type"] = "category"
    return (
        key,
        [
            {
                "type": "bar",
                "orientation": "h",
                "y": names,
                "x": [round(share, 4) for share in shares],
                "text": texts,
                "textposition": "auto",
                "marker": {"color": COLORS[color]},
                "name": trace,
            }
        ],
        _layout(
            title,
            height=max(220, 80 + row * len(names)),
            xaxis={"tickformat": ".0%", "range": [0, 1], "title": {"text": axis}},
            yaxis=yaxis,
        ),
    )


def _milestones(report: Report) -> Chart:
    ms = report.milestones
    return _share_bars(
        "milestones",
        [label(f"{m.name} ({m.scope})") for m in ms],
        [m.share for m in ms],
        [plural(m.reached, "account" if m.scope == "account" else "user") for m in ms],
        color="green",
        trace="reached",
        title="Activation: share of users (accounts, for account milestones) reaching each",
        axis="share reached",
        row=40,
    )


def _features(report: Report) -> Chart:
    fs = report.features
    return _share_bars(
        "features",
        [label(f.name) for f in fs],
        [f.adoption for f in fs],
        [f"{plural(f.users_30, 'user')}, {f.frequency:.1f} days each" for f in fs],
        color="violet",
        trace="adoption",
        title="Feature adoption: share of MAU using each feature (last 30 days)",
        axis="share of MAU",
        row=32,
        category=True,
    )


def _tiers(report: Report) -> Chart:
    tiers = Counter(a.tier for a in report.accounts_engagement)
    falling = Counter(a.tier for a in report.accounts_engagement if a.declining)
    order = ["high", "medium", "low"]
    return (
        "tiers",
        [
            {
                "type": "bar",
                "name": "steady",
                "x": order,
                "y": [tiers[t] - falling[t] for t in order],
                "marker": {"color": COLORS["blue"]},
            },
            {
                "type": "bar",
                "name": "declining",
                "x": order,
                "y": [falling[t] for t in order],
                "marker": {"color": COLORS["red"]},
            },
        ],
        _layout(
            "Accounts by engagement tier",
            barmode="stack",
            height=300,
            xaxis={"title": {"text": "tier"}, "type": "category"},
            yaxis=count_axis("accounts", tiers.values()),
        ),
    )


def _nudge_lift(report: Report) -> Chart | None:
    lifts = [(n, n.itt_lift) for n in report.nudges if n.itt_lift is not None]
    if not lifts:
        return None
    ys = [y * 100 for _, y in lifts if y is not None]
    highs = [
        (n.itt_high - y) * 100 if n.itt_high is not None and y is not None else 0 for n, y in lifts
    ]
    lows = [
        (y - n.itt_low) * 100 if n.itt_low is not None and y is not None else 0 for n, y in lifts
    ]
    return (
        "nudge-lift",
        [
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": "lift (anytime 95%)",
                "x": [label(n.name) for n, _ in lifts],
                "y": [round(y, 2) for y in ys],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [round(h, 2) for h in highs],
                    "arrayminus": [round(low, 2) for low in lows],
                    "thickness": 2,
                    "width": 8,
                },
                "text": [
                    f"{y:+.1f} pts, {verdict_text(n)}" for (n, _), y in zip(lifts, ys, strict=True)
                ],
                "textposition": "middle right",
                "cliponaxis": False,
                "marker": {"color": COLORS["blue"], "size": 11},
            }
        ],
        _layout(
            "Nudge lift on its goal by assignment, with its anytime-valid 95% interval",
            height=320,
            xaxis={
                "type": "category",
                "title": {"text": "nudge"},
                "automargin": True,
                "range": [-0.5, len(lifts) - 0.5],
            },
            yaxis={
                "rangemode": "tozero",
                "title": {"text": "lift (percentage points)"},
                "zeroline": True,
                "zerolinecolor": "#374151",
                "zerolinewidth": 1.5,
                "gridcolor": "#eeeeee",
                "automargin": True,
                "ticksuffix": " pts",
            },
            showlegend=False,
        ),
    )


def charts(report: Report) -> list[Chart]:
    """Return (id, traces, layout) of every chart the report has data for."""
    out: list[Chart] = []
    if report.daily:
        out.append(_active_users(report))
        out.extend(_histogram(n, hist) for n, hist in ((7, report.l7), (28, report.l28)))
    if report.lifecycle:
        out.append(_lifecycle(report))
    if report.milestones:
        out.append(_milestones(report))
    if report.features:
        out.append(_features(report))
    if report.accounts_engagement:
        out.append(_tiers(report))
    lift = _nudge_lift(report)
    if lift is not None:
        out.append(lift)
    return out
