"""The engagement report as a self-contained HTML page and as a terminal summary.

Both draw the same :class:`~uptake.collector.metrics.Report` with the same wording
(:mod:`uptake.collector.figures`): every figure says whether it counts users, accounts,
events or decisions, and a nudge's lift by assignment is shown with its anytime-valid 95%
interval, its verdict and the smallest effect detectable at its size. The settings that
shaped the numbers (:mod:`uptake.collector.settings`) are printed at the top of both.

Charts (:mod:`uptake.collector.charts`) are drawn by plotly.js, inlined once in the page
(no CDN: the file works offline). Every string that comes from events is escaped: in
tables by ``html.escape``, in chart labels as HTML entities, and the chart data itself is
embedded as JSON with ``<``, ``>`` and ``&`` escaped, so an event named ``</script>`` is
shown as text and never run.

A new part of the ``Report`` (sessions, retention cohorts, segments) needs three small
additions: a chart function in :mod:`~uptake.collector.charts` (listed in ``charts()``,
using its ``count_axis``/``day_axis``/``week_axis`` so counts stay whole and weeks start
on Monday), a section in ``_sections`` below, and a line in ``_summary``. The JSON and
CSV output (:mod:`uptake.collector.export`) follow the ``Report`` type by themselves.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from ..definitions import writable
from .charts import charts
from .html_parts import chart_div, table
from .metrics import AccountStat, MilestoneStat, Report
from .report_nudges import nudge_lines, nudge_section, programme_lines
from .settings import ReportSettings
from .wording import num, pct, plural, printable, skipped_text

__all__ = ["render_html", "summary"]


def summary(report: Report, settings: ReportSettings | None = None) -> list[str]:
    """Return a few lines for the terminal: the settings, then the figures a team looks at first.

    Names and ids in them come from events: control characters are replaced.
    """
    lines = settings.describe() if settings is not None else []
    return [printable(line) for line in lines + _summary(report)]


def _reached(m: MilestoneStat) -> str:
    return plural(m.reached, "account" if m.scope == "account" else "user")


def _summary(report: Report) -> list[str]:
    if report.first_day is None or not report.daily:
        read = plural(report.events, "event")
        return [f"no activity to report ({read} read, {skipped_text(report)})"]
    today = report.daily[-1]
    lines = [
        f"{plural(report.events, 'event')} read ({skipped_text(report)}); "
        f"{plural(report.users, 'active user')}, {plural(report.accounts, 'account')}; "
        f"{report.first_day} to {report.last_day} ({report.timezone})",
        f"active users on {today.day}: DAU {today.dau:,}, WAU {today.wau:,}, MAU {today.mau:,}; "
        f"stickiness (mean DAU/MAU, last 30 days) {pct(report.stickiness)}; "
        f"{num(report.interactions_per_user)} active events per MAU user (30 days)",
    ]
    complete = [w for w in report.lifecycle if w.complete]
    if complete:
        w = complete[-1]
        lines.append(
            f"week of {w.week_start} (users): {w.new:,} new, {w.returning:,} returning, "
            f"{w.resurrecting:,} resurrecting, {w.dormant:,} dormant; quick ratio "
            f"{num(w.quick_ratio, 2)}"
        )
    if report.milestones:
        parts = [
            f"{m.name} {pct(m.share)} ({_reached(m)}"
            + (f", median {num(m.median_days)} d" if m.median_days is not None else "")
            + ")"
            for m in report.milestones
        ]
        lines.append("milestones reached: " + ", ".join(parts))
    if report.features:
        top = report.features[:5]
        lines.append(
            "features (share of MAU using it, 30 days): "
            + ", ".join(f"{f.name} {pct(f.adoption)}" for f in top)
            + (f", {len(report.features) - 5} more" if len(report.features) > 5 else "")
        )
    if report.accounts_engagement:
        tiers = Counter(a.tier for a in report.accounts_engagement)
        falling = [a.account for a in report.accounts_engagement if a.declining]
        text = (
            f"accounts by tier: {tiers['high']} high, {tiers['medium']} medium, "
            f"{tiers['low']} low; {len(falling)} declining"
        )
        if falling:
            text += ": " + ", ".join(falling[:5]) + (", ..." if len(falling) > 5 else "")
        lines.append(text)
    for n in report.nudges:
        lines.extend(nudge_lines(n))
    for p in report.programme:
        lines.extend(programme_lines(p))
    return lines


def _script_json(value: Any) -> str:
    """Return JSON safe inside a <script> element."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _cards(report: Report) -> str:
    today = report.daily[-1] if report.daily else None
    complete = [w for w in report.lifecycle if w.complete]
    items: list[tuple[str, str]] = [
        ("active users", f"{report.users:,}"),
        ("accounts", f"{report.accounts:,}"),
        ("DAU (users)", f"{today.dau:,}" if today else "n/a"),
        ("WAU (users, 7 d)", f"{today.wau:,}" if today else "n/a"),
        ("MAU (users, 30 d)", f"{today.mau:,}" if today else "n/a"),
        ("stickiness (DAU/MAU)", pct(report.stickiness)),
        ("quick ratio (last full week)", num(complete[-1].quick_ratio, 2) if complete else "n/a"),
    ]
    return "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div>'
        f'<div class="k">{html.escape(k)}</div></div>'
        for k, v in items
    )


def _account_rows(accounts: Iterable[AccountStat]) -> Iterable[Sequence[object]]:
    for a in accounts:
        yield (
            a.account,
            a.score,
            a.tier,
            "yes" if a.declining else "",
            a.active_users_28,
            "" if a.seats is None else f"{a.seats:g}",
            pct(a.frequency),
            pct(a.breadth),
            pct(a.depth),
            " ".join(str(n) for n in a.weekly_active_users),
        )


def _sections(report: Report, present: set[str]) -> list[str]:
    sections: list[str] = []

    def section(heading: str, *parts: str) -> None:
        sections.append(f"<section><h2>{html.escape(heading)}</h2>{''.join(parts)}</section>")

    if report.nudges:
        section("Nudges: do they work?", *nudge_section(report, present))
    if "active-users" in present:
        section(
            "Active users",
            chart_div("active-users"),
            '<div class="row">',
            chart_div("l7"),
            chart_div("l28"),
            "</div>",
            "<p class=note>Stickiness is the mean of DAU/MAU over the last 30 days; "
            f"active events per MAU user (30 days): "
            f"{html.escape(num(report.interactions_per_user))}.</p>",
        )
    if "lifecycle" in present:
        section(
            "Lifecycle (users)",
            chart_div("lifecycle"),
            table(
                ["week of", "active", "new", "returning", "resurrecting", "dormant", "quick ratio"],
                (
                    (
                        f"{w.week_start}" + ("" if w.complete else " (so far)"),
                        f"{w.active:,}",
                        f"{w.new:,}",
                        f"{w.returning:,}",
                        f"{w.resurrecting:,}",
                        f"{w.dormant:,}",
                        num(w.quick_ratio, 2),
                    )
                    for w in reversed(report.lifecycle)
                ),
            ),
        )
    if "milestones" in present:
        section(
            "Activation",
            chart_div("milestones"),
            table(
                ["milestone", "scope", "reached", "share", "median days", "p90 days"],
                (
                    (
                        m.name,
                        m.scope,
                        _reached(m),
                        pct(m.share, 1),
                        num(m.median_days),
                        num(m.p90_days),
                    )
                    for m in report.milestones
                ),
            ),
        )
    if "features" in present:
        section(
            "Feature adoption",
            chart_div("features"),
            table(
                ["feature", "users (30 d)", "share of MAU", "days used per user", "users ever"],
                (
                    (
                        f.name,
                        f"{f.users_30:,}",
                        pct(f.adoption, 1),
                        num(f.frequency),
                        f"{f.users_ever:,}",
                    )
                    for f in report.features
                ),
            ),
        )
    if "tiers" in present and report.last_day is not None:
        week = report.last_day - timedelta(days=report.last_day.weekday())
        section(
            "Accounts (declining first, then lowest score)",
            chart_div("tiers"),
            table(
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
                    f"weekly active users, the 8 weeks before the week of {week}, oldest first",
                ],
                _account_rows(report.accounts_engagement),
                "accounts",
            ),
        )
    return sections


def _settings_block(settings: ReportSettings | None) -> str:
    if settings is None:
        return ""
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in settings.describe())
    return f'<section class="settings"><h2>Settings</h2><ul>{lines}</ul></section>'


def render_html(
    report: Report,
    *,
    plotly_js: str | None = None,
    title: str = "",
    settings: ReportSettings | None = None,
    extra_sections: Sequence[str] = (),
) -> str:
    """Return the report as one HTML page with plotly.js inlined.

    Args:
        report: What :func:`uptake.collector.metrics.compute` returned.
        plotly_js: The plotly.js bundle to inline (default: the one the ``plotly``
            package ships).
        title: Shown at the top (escaped).
        settings: The settings the report was computed with, shown at the top.
        extra_sections: HTML sections (escaped by their maker) shown after the others,
            such as discovery's "What retained users did first".

    Raises:
        ImportError: plotly is not installed (it comes with the ``collector`` extra).
    """
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    drawn = charts(report)
    present = {chart_id for chart_id, _, _ in drawn}
    sections = _sections(report, present) + list(extra_sections)
    period = (
        f"{report.first_day} to {report.last_day} ({report.timezone})"
        if report.first_day
        else "no activity"
    )
    plots = "\n".join(
        f"Plotly.newPlot('chart-{chart_id}', {_script_json(traces)}, {_script_json(layout)}, "
        "{displaylogo: false, responsive: true});"
        for chart_id, traces, layout in drawn
    )
    heading = html.escape(title or "uptake engagement report")
    page = _PAGE.format(
        title=heading,
        period=html.escape(period),
        counts=html.escape(
            f"{plural(report.events, 'event')} read, {skipped_text(report)}; "
            f"{plural(report.users, 'active user')}"
        ),
        settings=_settings_block(settings),
        cards=_cards(report),
        sections="\n".join(s for s in sections if s),
        plotly=plotly_js.replace("</script", "<\\/script"),
        plots=plots,
        charts=len(drawn),
    )
    # A lone surrogate (events may carry them) could not be written as UTF-8.
    return writable(page)


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
main {{ max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; box-sizing: border-box; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }}
.card {{ background: #fff; border-radius: 8px; padding: 12px 18px; min-width: 110px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }}
.card .v {{ font-size: 24px; font-weight: 600; }}
.card .k {{ color: #6b7280; font-size: 13px; }}
section {{ background: #fff; border-radius: 8px; padding: 8px 20px 16px; margin: 16px 0;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); overflow-x: auto; }}
section.settings {{ font-size: 13px; color: #374151; }}
section.settings ul {{ margin: 0; padding-left: 18px; }}
h2 {{ font-size: 17px; }}
.row {{ display: flex; flex-wrap: wrap; gap: 8px; }}
.row .chart {{ flex: 1 1 400px; min-width: 0; }}
table {{ border-collapse: collapse; font-size: 13px; margin-top: 8px; width: 100%; }}
th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }}
td {{ white-space: nowrap; }}
th {{ color: #374151; background: #f9fafb; vertical-align: bottom; font-weight: 600; }}
table.nudges td:nth-child(2), table.nudges td:nth-child(3), table.nudges td:nth-child(4) {{
  font-weight: 600; background: #eff6ff; }}
table.programme td:nth-child(2), table.programme td:nth-child(3),
table.programme td:nth-child(4) {{ font-weight: 600; background: #eff6ff; }}
table.nudges td:first-child, table.nudges td:nth-child(6) {{ white-space: normal; min-width: 8em;
  overflow-wrap: anywhere; }}
table.nudge-reach th {{ white-space: normal; }}
table.discover td:first-child, table.discover td:last-child {{ white-space: normal;
  min-width: 14em; overflow-wrap: anywhere; }}
table.discover td:last-child {{ font-family: ui-monospace, monospace; font-size: 12px; }}
table.discover th {{ white-space: normal; }}
.note {{ color: #6b7280; font-size: 13px; }}
</style>
<script>{plotly}</script>
</head>
<body>
<header><h1>{title}</h1><p>{period} &middot; {counts}</p></header>
<main>
{settings}
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
