"""The report page laid out in headless Chromium at 1,200 px: what a reader actually sees.

Checks layout facts, not pixels: no horizontal scrolling, the nudge lift and p-value in
view, whole-number ticks on count axes, day and Monday ticks on date axes, axis titles
clear of their tick labels, labels that do not overlap.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_demo import ARTIFACTS, browser
from uptake.collector.metrics import compute
from uptake.collector.report import render_html
from uptake.collector.settings import ReportSettings
from uptake.collector.sources import from_events

DAY_MS = 86_400_000


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def tiny() -> list[dict[str, Any]]:
    """Seven events on one day, as a first `uptake serve` run stores them."""
    t = "2026-11-15T{:02d}:00:00Z".format
    acme = {"groupId": "acme"}
    return [
        {"type": "identify", "userId": "ann", "timestamp": t(9), "traits": {"plan": "team"}},
        {"type": "group", "userId": "ann", "groupId": "acme", "timestamp": t(9), "traits": {}},
        {"type": "track", "userId": "ann", "event": "Project Created", "timestamp": t(10)},
        {
            "type": "track",
            "userId": "ann",
            "event": "Feature Used",
            "timestamp": t(11),
            "properties": {"feature": "reports"},
            "context": acme,
        },
        {
            "type": "track",
            "userId": "bob",
            "event": "Feature Used",
            "timestamp": t(12),
            "properties": {"feature": "alerts"},
            "context": acme,
        },
        {
            "type": "track",
            "userId": "ann",
            "event": "Milestone Reached",
            "timestamp": t(12),
            "properties": {"milestone": "activated", "scope": "user", "time_to_reach_s": 7200},
        },
        {
            "type": "track",
            "userId": "bob",
            "event": "Nudge Shown",
            "timestamp": t(13),
            "properties": {"nudge": "try_reports", "goal": "Report Created"},
        },
    ]


def larger(users: int = 400, days: int = 70) -> list[dict[str, Any]]:
    """Enough users, weeks, features and nudges (long names too) to fill every chart."""
    rng = random.Random(5)
    start = dt.datetime(2026, 6, 3, tzinfo=dt.timezone.utc)  # a Wednesday
    features = ["dashboards", "reports", "alerts", "a rather long feature name", "api", "sso"]
    nudges = ["finish_setup_and_invite_your_whole_team_today", "try_reports", "third"]
    events: list[dict[str, Any]] = []
    for u in range(users):
        user, context = f"user-{u}", {"groupId": f"acct-{u % 30}"}
        joined = 0 if u < 20 else rng.randrange(days)  # an early burst: a quick ratio > 4
        rate = rng.choice([0.1, 0.4, 0.8])
        for day in range(joined, days):
            if rng.random() < rate:
                t = iso(start + dt.timedelta(days=day, hours=rng.uniform(8, 18)))
                feature = rng.choice(features)
                events.append(
                    {
                        "type": "track",
                        "userId": user,
                        "event": "Feature Used",
                        "timestamp": t,
                        "properties": {"feature": feature},
                        "context": context,
                    }
                )
                if rng.random() < 0.2:
                    events.append(
                        {"type": "track", "userId": user, "event": "Goal", "timestamp": t}
                    )
        t0 = iso(start + dt.timedelta(days=joined, hours=20))
        kind = "Nudge Shown" if rng.random() < 0.7 else "Nudge Held Out"
        for name in nudges:
            properties: dict[str, Any] = {
                "nudge": name,
                "goal": "Goal",
                "goal_within_s": 7 * 86_400,
            }
            if u % 20 == 1:  # the global holdout: held out of every nudge
                kind, properties["global_holdout"] = "Nudge Held Out", 0.05
            for event in ("Nudge Fired", kind) if kind == "Nudge Shown" else (kind,):
                events.append(
                    {
                        "type": "track",
                        "userId": user,
                        "event": event,
                        "timestamp": t0,
                        "properties": properties,
                    }
                )
    for a in range(30):
        group = {"type": "group", "userId": f"user-{a}", "groupId": f"acct-{a}"}
        events.append(group | {"timestamp": iso(start), "traits": {"seats": 5 + a}})
    return events


@pytest.fixture(scope="module")
def chromium_page() -> Iterator[Any]:
    executable = browser()
    from playwright import sync_api  # the test extra installs it: never skipped

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield b.new_page(viewport={"width": 1200, "height": 900})
        finally:
            b.close()


def open_report(page: Any, path: Path, events: list[dict[str, Any]]) -> None:
    settings = ReportSettings()
    path.write_text(render_html(compute(from_events(events)), settings=settings))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function("document.body.dataset.charts !== undefined")
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 1200
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report-{path.stem}.png"), full_page=True)


def ticks(page: Any, chart: str, axis: str) -> list[dict[str, Any]]:
    """The ticks plotly drew on an axis: value and label."""
    return list(
        page.evaluate(
            f"document.getElementById('chart-{chart}')._fullLayout.{axis}._vals"
            ".map(t => ({x: t.x, text: t.text}))"
        )
    )


def boxes(page: Any, selector: str) -> list[dict[str, float]]:
    return list(
        page.evaluate(
            f"[...document.querySelectorAll({selector!r})].map(e => {{"
            "const r = e.getBoundingClientRect();"
            "return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; })"
        )
    )


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def assert_count_axes_are_whole(page: Any, charts: list[str]) -> None:
    for chart in charts:
        values = [t["x"] for t in ticks(page, chart, "yaxis")]
        assert values and all(float(v).is_integer() for v in values), (chart, values)


def test_a_seven_event_report_reads_sensibly(chromium_page: Any, tmp_path: Path) -> None:
    page = chromium_page
    open_report(page, tmp_path / "tiny.html", tiny())
    assert_count_axes_are_whole(page, ["active-users", "l7", "l28", "lifecycle", "tiers"])
    # One day: a single day tick at midnight, no hours.
    day_ticks = ticks(page, "active-users", "xaxis")
    assert [t["text"] for t in day_ticks] == ["Nov 15"]
    assert all(t["x"] % DAY_MS == 0 for t in day_ticks)
    week_ticks = ticks(page, "lifecycle", "xaxis")
    assert [t["text"] for t in week_ticks] == ["Nov 09"]  # the Monday of Sunday Nov 15
    # The lone week's bars are drawn wide enough to see.
    bar = boxes(page, "#chart-lifecycle .barlayer .point path")[0]
    assert bar["right"] - bar["left"] > 100
    assert "1 user" in page.inner_text("#chart-milestones")


def test_a_full_report_fits_1200_px_with_lift_verdict_and_interval_in_view(
    chromium_page: Any, tmp_path: Path
) -> None:
    page = chromium_page
    open_report(page, tmp_path / "larger.html", larger())
    # The nudge table scrolls nowhere, and its verdict, lift and interval are in view.
    fits = page.evaluate(
        "[...document.querySelectorAll('table.nudges, table.nudge-reach')].map(t => "
        "[t.scrollWidth, t.parentElement.clientWidth, t.parentElement.scrollWidth])"
    )
    assert len(fits) == 2
    # The programme against the global holdout has its own row, in view too.
    assert page.locator("table.programme tbody tr").count() == 1
    for cell in boxes(page, "table.programme th, table.programme td, table.nudge-reach td"):
        assert cell["left"] >= 0 and cell["right"] <= 1200
    for table_width, section_width, section_scroll in fits:
        assert table_width <= section_width and section_scroll <= section_width
    headers = page.locator("table.nudges th").all_text_contents()
    assert headers[:5] == ["nudge", "verdict", "lift", "anytime 95% (pts)", "detectable now"]
    for cell in boxes(page, "table.nudges th, table.nudges td"):
        assert cell["left"] >= 0 and cell["right"] <= 1200
    lift_cell = page.locator("table.nudges tbody tr").first.locator("td").nth(2)
    assert lift_cell.inner_text().endswith(" pts")
    # The chart shows the lift with its interval (error bars), around a zero line.
    lift = page.evaluate(
        "document.getElementById('chart-nudge-lift').data[0].error_y.arrayminus.length"
    )
    assert lift == 3
    assert_count_axes_are_whole(page, ["active-users", "l7", "l28", "lifecycle", "tiers"])
    # Weekly ticks on Mondays, daily ticks at midnight: never an hour.
    weeks = ticks(page, "lifecycle", "xaxis")
    assert len(weeks) >= 5
    for t in weeks:
        assert t["x"] % DAY_MS == 0
        assert (dt.date(1970, 1, 1) + dt.timedelta(days=t["x"] // DAY_MS)).weekday() == 0
    for t in ticks(page, "active-users", "xaxis"):
        assert t["x"] % DAY_MS == 0
    # The early burst's quick ratio is cut at the cap, its value written beside it.
    quick = page.evaluate("document.getElementById('chart-lifecycle').data[4]")
    assert max(y for y in quick["y"] if y is not None) == 4
    assert any(text.endswith("\u2191") for text in quick["text"])
    # Axis titles clear of their tick labels; right axes titled.
    for chart in ("lifecycle", "active-users"):
        title = boxes(page, f"#chart-{chart} .g-y2title text")
        assert len(title) == 1, chart
        for tick in boxes(page, f"#chart-{chart} .y2tick text"):
            assert not overlap(title[0], tick), chart
    # Feature labels do not overlap one another.
    labels = boxes(page, "#chart-features .ytick text")
    assert len(labels) == 6
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not overlap(a, b)


def test_the_discovery_section_fits_1200_px(chromium_page: Any, tmp_path: Path) -> None:
    # Long candidate labels and milestones to paste wrap in their cells: the section
    # "What retained users did first" scrolls nowhere.
    import uptake
    from uptake.collector.discovery import html_section

    from .discover_helpers import planted_records

    records = planted_records(8, 500)
    found = uptake.discover(records)
    assert found.strong
    page = chromium_page
    path = tmp_path / "discover.html"
    path.write_text(render_html(compute(records), extra_sections=[html_section(found)]))
    page.goto(path.as_uri())
    page.wait_for_function("document.body.dataset.charts !== undefined")
    section = page.evaluate(
        "(s => [s.scrollWidth, s.clientWidth])(document.querySelector('#discover'))"
    )
    assert section[0] <= section[1]
    assert page.evaluate("document.documentElement.scrollWidth") <= 1200
    for cell in boxes(page, "table.discover th, table.discover td"):
        assert cell["left"] >= 0 and cell["right"] <= 1200
    assert "uptake.Milestone(" in page.inner_text("table.discover")
