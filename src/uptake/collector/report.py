"""The engagement report as a self-contained HTML page and as a terminal summary.

Charts are drawn by plotly.js, inlined once in the page (no CDN: the file works offline).
Every string that comes from events (names, ids, properties) is escaped: in tables by
``html.escape``, in chart labels as HTML entities (plotly reads a few tags in labels),
and the chart data itself is embedded as JSON with ``<``, ``>`` and ``&`` escaped, so an
event named ``</script>`` is shown as text and never run.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .metrics import Report

__all__ = ["render_html", "summary"]


def _pct(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _p(p: float | None) -> str:
    """A p-value as people read it: three decimals, and "<0.001" below that."""
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _printable(text: str) -> str:
    """Text safe to print and write: control characters (a terminal escape sequence, a
    newline that would forge a line) become "?", a lone surrogate becomes U+FFFD."""
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _CONTROL.sub("?", text)


def summary(report: Report) -> list[str]:
    """A few lines for the terminal: the figures a team looks at first.

    Names and ids in them come from events: control characters are replaced.
    """
    return [_printable(line) for line in _summary(report)]


def _skipped(report: Report) -> str:
    """The skipped count, with why when any was: "3 skipped: 2 no user or anonymous id"."""
    text = f"{report.skipped:,} skipped"
    if report.skipped_by:
        text += ": " + ", ".join(f"{n:,} {reason}" for reason, n in report.skipped_by)
    return text


def _summary(report: Report) -> list[str]:
    if report.first_day is None or not report.daily:
        return [f"no activity to report ({report.events:,} events, {_skipped(report)})"]
    today = report.daily[-1]
    lines = [
        f"{report.events:,} events ({_skipped(report)}) from {report.users:,} users in "
        f"{report.accounts:,} accounts, {report.first_day} to {report.last_day} "
        f"({report.timezone})",
        f"active users on {today.day}: DAU {today.dau:,}, WAU {today.wau:,}, MAU {today.mau:,}; "
        f"stickiness (DAU/MAU, last 30 days) {_pct(report.stickiness)}; "
        f"{_num(report.interactions_per_user)} interactions per MAU",
    ]
    complete = [w for w in report.lifecycle if w.complete]
    if complete:
        w = complete[-1]
        lines.append(
            f"week of {w.week_start}: {w.new:,} new, {w.returning:,} returning, "
            f"{w.resurrecting:,} resurrecting, {w.dormant:,} dormant; quick ratio "
            f"{_num(w.quick_ratio, 2)}"
        )
    if report.milestones:
        parts = [
            f"{m.name} {_pct(m.share)}"
            + (f" (median {_num(m.median_days)} d)" if m.median_days is not None else "")
            for m in report.milestones
        ]
        lines.append("milestones: " + ", ".join(parts))
    if report.features:
        top = report.features[:5]
        lines.append(
            "features (share of MAU): "
            + ", ".join(f"{f.name} {_pct(f.adoption)}" for f in top)
            + (f", {len(report.features) - 5} more" if len(report.features) > 5 else "")
        )
    if report.accounts_engagement:
        tiers = Counter(a.tier for a in report.accounts_engagement)
        falling = [a.account for a in report.accounts_engagement if a.declining]
        text = (
            f"accounts: {tiers['high']} high, {tiers['medium']} medium, {tiers['low']} low; "
            f"{len(falling)} declining"
        )
        if falling:
            text += ": " + ", ".join(falling[:5]) + (", ..." if len(falling) > 5 else "")
        lines.append(text)
    for n in report.nudges:
        text = (
            f"nudge {n.name} (users): fired {n.fired:,}, shown {n.shown:,}, held out "
            f"{n.held_out:,}, clicked {n.clicked:,}, dismissed {n.dismissed:,}; "
            f"{n.suppressed:,} decisions suppressed"
        )
        if n.lift is not None:
            text += (
                f"; {n.goal} within {_num(n.goal_within_days, 0)} d: {_pct(n.shown_rate)} "
                f"shown vs {_pct(n.held_out_rate)} held out, lift {n.lift * 100:+.1f} pts "
                f"(p{'' if n.p_value is not None and n.p_value < 0.001 else '='}{_p(n.p_value)})"
            )
        lines.append(text)
    return lines


def _label(text: str) -> str:
    """A user string as a plotly label: entities, so no tag in it is read as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


_COLORS = {
    "blue": "#2563eb",
    "teal": "#0d9488",
    "amber": "#d97706",
    "red": "#dc2626",
    "gray": "#6b7280",
    "green": "#16a34a",
    "violet": "#7c3aed",
}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0, "font": {"size": 15}},
        "margin": {"l": 60, "r": 30, "t": 50, "b": 50},
        "height": 340,
        "legend": {"orientation": "h", "y": -0.2},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "xaxis": {"gridcolor": "#eeeeee"},
        "yaxis": {"gridcolor": "#eeeeee", "rangemode": "tozero"},
    }
    layout.update(extra)
    return layout


def _charts(report: Report) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """(id, traces, layout) of every chart the report has data for."""
    charts: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
    if report.daily:
        days = [d.day.isoformat() for d in report.daily]
        charts.append(
            (
                "active-users",
                [
                    {"type": "scatter", "mode": "lines", "name": name, "x": days, "y": values}
                    | {"line": {"color": color}}
                    for name, values, color in (
                        ("DAU", [d.dau for d in report.daily], _COLORS["blue"]),
                        ("WAU (7 days)", [d.wau for d in report.daily], _COLORS["teal"]),
                        ("MAU (30 days)", [d.mau for d in report.daily], _COLORS["violet"]),
                    )
                ]
                + [
                    {
                        "type": "scatter",
                        "mode": "lines",
                        "name": "DAU/MAU",
                        "x": days,
                        "y": [round(d.dau / d.mau, 4) if d.mau else None for d in report.daily],
                        "yaxis": "y2",
                        "line": {"color": _COLORS["amber"], "dash": "dot"},
                    }
                ],
                _layout(
                    "Active users and stickiness",
                    yaxis2={
                        "overlaying": "y",
                        "side": "right",
                        "tickformat": ".0%",
                        "rangemode": "tozero",
                        "showgrid": False,
                    },
                ),
            )
        )
        for n, hist in ((7, report.l7), (28, report.l28)):
            charts.append(
                (
                    f"l{n}",
                    [
                        {
                            "type": "bar",
                            "x": list(range(1, n + 1)),
                            "y": list(hist),
                            "marker": {"color": _COLORS["blue"]},
                            "name": "users",
                        }
                    ],
                    _layout(
                        f"L{n}: users by active days in the last {n}",
                        xaxis={"title": {"text": "active days"}, "dtick": 1 if n == 7 else 3},
                        yaxis={"title": {"text": "users"}},
                    ),
                )
            )
    if report.lifecycle:
        weeks = [w.week_start.isoformat() for w in report.lifecycle]
        traces: list[dict[str, Any]] = [
            {"type": "bar", "name": name, "x": weeks, "y": values, "marker": {"color": color}}
            for name, values, color in (
                ("new", [w.new for w in report.lifecycle], _COLORS["green"]),
                ("returning", [w.returning for w in report.lifecycle], _COLORS["blue"]),
                ("resurrecting", [w.resurrecting for w in report.lifecycle], _COLORS["teal"]),
                ("dormant", [-w.dormant for w in report.lifecycle], _COLORS["red"]),
            )
        ]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "quick ratio",
                "x": weeks,
                "y": [w.quick_ratio for w in report.lifecycle],
                "yaxis": "y2",
                "line": {"color": _COLORS["gray"]},
            }
        )
        charts.append(
            (
                "lifecycle",
                traces,
                _layout(
                    "Weekly lifecycle (weeks start on Monday)",
                    barmode="relative",
                    yaxis={"title": {"text": "users"}},
                    yaxis2={
                        "overlaying": "y",
                        "side": "right",
                        "title": {"text": "quick ratio"},
                        "showgrid": False,
                        "rangemode": "tozero",
                    },
                ),
            )
        )
    if report.milestones:
        ms = report.milestones
        charts.append(
            (
                "milestones",
                [
                    {
                        "type": "bar",
                        "orientation": "h",
                        "y": [_label(f"{m.name} ({m.scope})") for m in ms],
                        "x": [round(m.share, 4) for m in ms],
                        "text": [f"{m.reached:,}" for m in ms],
                        "textposition": "auto",
                        "marker": {"color": _COLORS["green"]},
                        "name": "reached",
                    }
                ],
                _layout(
                    "Activation funnel: share of users (or accounts) reaching each milestone",
                    height=max(220, 60 + 40 * len(ms)),
                    xaxis={"tickformat": ".0%", "range": [0, 1]},
                    yaxis={"autorange": "reversed", "automargin": True},
                ),
            )
        )
    if report.features:
        fs = report.features
        charts.append(
            (
                "features",
                [
                    {
                        "type": "scatter",
                        "mode": "markers+text",
                        "x": [round(f.adoption, 4) for f in fs],
                        "y": [round(f.frequency, 3) for f in fs],
                        "text": [_label(f.name) for f in fs],
                        "textposition": "top center",
                        "marker": {
                            "size": [8 + 22 * f.adoption for f in fs],
                            "color": _COLORS["violet"],
                            "opacity": 0.7,
                        },
                        "name": "features",
                    }
                ],
                _layout(
                    "Feature adoption (share of MAU) by frequency (days used in 30)",
                    xaxis={
                        "tickformat": ".0%",
                        "title": {"text": "adoption"},
                        "rangemode": "tozero",
                    },
                    yaxis={"title": {"text": "days per user"}, "rangemode": "tozero"},
                ),
            )
        )
    if report.accounts_engagement:
        tiers = Counter(a.tier for a in report.accounts_engagement)
        falling = Counter(a.tier for a in report.accounts_engagement if a.declining)
        order = ["high", "medium", "low"]
        charts.append(
            (
                "tiers",
                [
                    {
                        "type": "bar",
                        "name": "steady",
                        "x": order,
                        "y": [tiers[t] - falling[t] for t in order],
                        "marker": {"color": _COLORS["blue"]},
                    },
                    {
                        "type": "bar",
                        "name": "declining",
                        "x": order,
                        "y": [falling[t] for t in order],
                        "marker": {"color": _COLORS["red"]},
                    },
                ],
                _layout("Accounts by engagement tier", barmode="stack", height=300),
            )
        )
    lifts = [n for n in report.nudges if n.shown_rate is not None or n.held_out_rate is not None]
    if lifts:
        names = [_label(n.name) for n in lifts]
        charts.append(
            (
                "nudge-lift",
                [
                    {
                        "type": "bar",
                        "name": "shown",
                        "x": names,
                        "y": [n.shown_rate for n in lifts],
                        "text": [f"{n.shown_converted}/{n.shown}" for n in lifts],
                        "textposition": "auto",
                        "marker": {"color": _COLORS["blue"]},
                    },
                    {
                        "type": "bar",
                        "name": "held out",
                        "x": names,
                        "y": [n.held_out_rate for n in lifts],
                        "text": [f"{n.held_out_converted}/{n.held_out}" for n in lifts],
                        "textposition": "auto",
                        "marker": {"color": _COLORS["gray"]},
                    },
                ],
                _layout(
                    "Nudge goal conversion: shown vs held out",
                    barmode="group",
                    yaxis={"tickformat": ".0%", "rangemode": "tozero"},
                ),
            )
        )
    return charts


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cards(report: Report) -> str:
    today = report.daily[-1] if report.daily else None
    complete = [w for w in report.lifecycle if w.complete]
    items: list[tuple[str, str]] = [
        ("users", f"{report.users:,}"),
        ("accounts", f"{report.accounts:,}"),
        ("DAU", f"{today.dau:,}" if today else "n/a"),
        ("WAU", f"{today.wau:,}" if today else "n/a"),
        ("MAU", f"{today.mau:,}" if today else "n/a"),
        ("stickiness", _pct(report.stickiness)),
        ("quick ratio", _num(complete[-1].quick_ratio, 2) if complete else "n/a"),
    ]
    return "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div>'
        f'<div class="k">{html.escape(k)}</div></div>'
        for k, v in items
    )


def _chart_div(chart_id: str) -> str:
    return f'<div class="chart" id="chart-{chart_id}"></div>'


def render_html(report: Report, *, plotly_js: str | None = None, title: str = "") -> str:
    """The report as one HTML page with plotly.js inlined.

    Args:
        report: What :func:`uptake.collector.metrics.compute` returned.
        plotly_js: The plotly.js bundle to inline (default: the one the ``plotly``
            package ships).
        title: Shown at the top (escaped).

    Raises:
        ImportError: plotly is not installed (it comes with the ``collector`` extra).
    """
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    charts = _charts(report)
    present = {chart_id for chart_id, _, _ in charts}
    sections: list[str] = []

    def section(heading: str, *parts: str) -> None:
        sections.append(f"<section><h2>{html.escape(heading)}</h2>{''.join(parts)}</section>")

    period = (
        f"{report.first_day} to {report.last_day} ({report.timezone})"
        if report.first_day
        else "no activity"
    )
    if "active-users" in present:
        section(
            "Active users",
            _chart_div("active-users"),
            '<div class="row">',
            _chart_div("l7"),
            _chart_div("l28"),
            "</div>",
            "<p class=note>Stickiness is the mean of DAU/MAU over the last 30 days; "
            f"interactions per MAU: {html.escape(_num(report.interactions_per_user))}.</p>",
        )
    if "lifecycle" in present:
        section(
            "Lifecycle",
            _chart_div("lifecycle"),
            _table(
                ["week of", "active", "new", "returning", "resurrecting", "dormant", "quick ratio"],
                (
                    (
                        f"{w.week_start}" + ("" if w.complete else " (so far)"),
                        w.active,
                        w.new,
                        w.returning,
                        w.resurrecting,
                        w.dormant,
                        _num(w.quick_ratio, 2),
                    )
                    for w in reversed(report.lifecycle)
                ),
            ),
        )
    if "milestones" in present:
        section(
            "Activation",
            _chart_div("milestones"),
            _table(
                ["milestone", "scope", "reached", "share", "median days", "p90 days"],
                (
                    (
                        m.name,
                        m.scope,
                        f"{m.reached:,}",
                        _pct(m.share, 1),
                        _num(m.median_days),
                        _num(m.p90_days),
                    )
                    for m in report.milestones
                ),
            ),
        )
    if "features" in present:
        section(
            "Feature adoption",
            _chart_div("features"),
            _table(
                ["feature", "users (30 d)", "share of MAU", "days per user", "users ever"],
                (
                    (
                        f.name,
                        f"{f.users_30:,}",
                        _pct(f.adoption, 1),
                        _num(f.frequency),
                        f.users_ever,
                    )
                    for f in report.features
                ),
            ),
        )
    if "tiers" in present:
        section(
            "Accounts (declining first, then lowest score)",
            _chart_div("tiers"),
            _table(
                [
                    "account",
                    "score",
                    "tier",
                    "declining",
                    "active users (28 d)",
                    "seats",
                    "frequency",
                    "breadth",
                    "depth",
                    "weekly active users (8 weeks)",
                ],
                (
                    (
                        a.account,
                        a.score,
                        a.tier,
                        "yes" if a.declining else "",
                        a.active_users_28,
                        "" if a.seats is None else f"{a.seats:g}",
                        _pct(a.frequency),
                        _pct(a.breadth),
                        _pct(a.depth),
                        " ".join(str(n) for n in a.weekly_active_users),
                    )
                    for a in report.accounts_engagement
                ),
                "accounts",
            ),
        )
    if report.nudges:
        section(
            "Nudges",
            _chart_div("nudge-lift") if "nudge-lift" in present else "",
            _table(
                [
                    "nudge",
                    "users fired",
                    "shown",
                    "clicked",
                    "dismissed",
                    "held out",
                    "suppressed (decisions)",
                    "goal",
                    "shown: converted",
                    "held out: converted",
                    "lift",
                    "p-value",
                ],
                (
                    (
                        n.name,
                        n.fired,
                        n.shown,
                        n.clicked,
                        n.dismissed,
                        n.held_out,
                        n.suppressed,
                        ""
                        if n.goal is None
                        else f"{n.goal} within {_num(n.goal_within_days, 0)} d",
                        ""
                        if n.shown_rate is None
                        else f"{n.shown_converted}/{n.shown} ({_pct(n.shown_rate, 1)})",
                        ""
                        if n.held_out_rate is None
                        else f"{n.held_out_converted}/{n.held_out} ({_pct(n.held_out_rate, 1)})",
                        "" if n.lift is None else f"{n.lift * 100:+.1f} pts",
                        _p(n.p_value),
                    )
                    for n in report.nudges
                ),
            ),
            "<p class=note>Lift compares goal conversion within the goal window after a nudge "
            "was shown against users held out of it at the moment they would have been "
            "nudged.</p>",
        )
    plots = "\n".join(
        f"Plotly.newPlot('chart-{chart_id}', {_script_json(traces)}, {_script_json(layout)}, "
        "{displaylogo: false, responsive: true});"
        for chart_id, traces, layout in charts
    )
    heading = html.escape(title or "uptake engagement report")
    page = _PAGE.format(
        title=heading,
        period=html.escape(period),
        counts=html.escape(f"{report.events:,} events read, {_skipped(report)}"),
        cards=_cards(report),
        sections="\n".join(sections),
        plotly=plotly_js.replace("</script", "<\\/script"),
        plots=plots,
        charts=len(charts),
    )
    # A lone surrogate (events may carry them) could not be written as UTF-8.
    return (
        page if page.isascii() else page.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
  color: #111827; background: #f3f4f6; }}
header {{ background: #111827; color: #f9fafb; padding: 20px 32px; }}
header h1 {{ margin: 0 0 4px; font-size: 22px; }}
header p {{ margin: 0; color: #d1d5db; }}
main {{ max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }}
.card {{ background: #fff; border-radius: 8px; padding: 12px 18px; min-width: 110px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }}
.card .v {{ font-size: 24px; font-weight: 600; }}
.card .k {{ color: #6b7280; font-size: 13px; }}
section {{ background: #fff; border-radius: 8px; padding: 8px 20px 16px; margin: 16px 0;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); overflow-x: auto; }}
h2 {{ font-size: 17px; }}
.row {{ display: flex; flex-wrap: wrap; gap: 8px; }}
.row .chart {{ flex: 1 1 400px; }}
table {{ border-collapse: collapse; font-size: 13px; margin-top: 8px; width: 100%; }}
th, td {{ text-align: left; padding: 4px 10px; border-bottom: 1px solid #e5e7eb;
  white-space: nowrap; }}
th {{ color: #374151; background: #f9fafb; }}
.note {{ color: #6b7280; font-size: 13px; }}
</style>
<script>{plotly}</script>
</head>
<body>
<header><h1>{title}</h1><p>{period} &middot; {counts}</p></header>
<main>
<div class="cards">{cards}</div>
{sections}
</main>
<script>
{plots}
document.body.dataset.charts = "{charts}";
</script>
</body>
</html>
"""
