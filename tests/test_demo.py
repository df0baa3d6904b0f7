"""``uptake demo`` end to end (SDK -> collector over HTTP -> store -> report), and the report
opened in a real headless browser."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
from pathlib import Path

import pytest

from uptake.cli import main
from uptake.demo import run_demo

UNTIL = "2026-06-30"
ARTIFACTS = Path(
    os.environ.get("UPTAKE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
)


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "uptake-report.html"
    result = run_demo(
        seed=3,
        users=120,
        days=35,
        until=dt.date.fromisoformat(UNTIL),
        out=str(out),
        progress=False,
        stream=io.StringIO(),
    )
    # Every event the client tracked went over HTTP into the collector's store.
    assert result.tracked == result.delivered == result.stored > 3_000
    assert result.dropped == result.failed == 0
    assert result.milestones["activated"] > 0 and result.milestones["habit"] > 0
    assert result.nudges["try_reports"]["fired"] > 0
    assert result.nudges["try_reports"]["shown"] > 0
    assert any(line.startswith("nudge try_reports") and "lift" in line for line in result.summary)
    return out


def test_the_demo_command_is_deterministic_for_a_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for run in range(2):
        out = tmp_path / f"r{run}.html"
        args = ["demo", "--seed", "5", "--users", "40", "--days", "21", "--until", UNTIL]
        assert main([*args, "--out", str(out), "--quiet"]) == 0
        printed = capsys.readouterr().out
        assert "wrote " in printed and out.is_file()
        # Ports, temporary paths and timings differ; everything else is the same.
        lines = [
            line
            for line in printed.splitlines()
            if not line.startswith(("collector listening", "wrote", "done in"))
        ]
        outputs.append(lines)
    assert outputs[0] == outputs[1]
    assert any(
        line.startswith("milestones reached: ") and "activated" in line for line in outputs[0]
    )


def test_the_demo_refuses_bad_arguments(tmp_path: Path) -> None:
    assert main(["demo", "--users", "3", "--quiet", "--out", str(tmp_path / "x.html")]) == 2
    used = tmp_path / "used.db"
    used.write_bytes(b"")
    assert main(["demo", "--db", str(used), "--quiet", "--out", str(tmp_path / "x.html")]) == 2


def browser() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium not installed (Debian: apt-get install chromium)"
        if os.environ.get("UPTAKE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_report_renders_in_a_headless_browser(demo_report: Path) -> None:
    chromium = browser()
    from playwright import sync_api  # the test extra installs it: never skipped

    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            # Offline: any request leaving the page (a CDN) would fail the test.
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(demo_report.as_uri())
            page.wait_for_function("document.body.dataset.charts !== undefined")
            charts = page.locator("div.chart").count()
            assert charts == int(page.evaluate("document.body.dataset.charts")) == 8
            # plotly draws an SVG with at least one trace into every chart.
            drawn = page.locator(
                "div.chart .main-svg .plot .trace, div.chart .main-svg .barlayer .trace"
            )
            for i in range(charts):
                chart = page.locator("div.chart").nth(i)
                assert chart.locator(".main-svg").count() >= 1, chart.get_attribute("id")
                assert chart.locator(".trace").count() >= 1, chart.get_attribute("id")
            assert drawn.count() >= charts
            assert "declining first" in page.inner_text("body")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-report.png"), full_page=True)
        finally:
            b.close()
    assert errors == []
    assert [u for u in requests if not u.startswith("file://")] == []
    assert (ARTIFACTS / "demo-report.png").stat().st_size > 10_000


def test_an_event_named_script_shows_as_text_in_the_browser(tmp_path: Path) -> None:
    chromium = browser()
    from playwright import sync_api  # the test extra installs it: never skipped

    from uptake.collector.metrics import compute
    from uptake.collector.report import render_html
    from uptake.collector.sources import from_events

    evil = "<script>window.pwned=1</script>"
    t = "2026-03-02T10:00:00Z"
    events = [
        {
            "type": "track",
            "userId": "u1",
            "event": "Feature Used",
            "timestamp": t,
            "properties": {"feature": evil},
            "context": {"groupId": evil},
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Milestone Reached",
            "timestamp": t,
            "properties": {"milestone": "<img src=x onerror=window.pwned=2>", "scope": "user"},
        },
    ]
    path = tmp_path / "evil.html"
    path.write_text(render_html(compute(from_events(events))), encoding="utf-8")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = b.new_page()
            page.goto(path.as_uri())
            page.wait_for_function("document.body.dataset.charts !== undefined")
            assert page.evaluate("window.pwned === undefined")
            assert evil in page.inner_text("body")  # the table shows the name as text
            labels = page.locator("#chart-features .ytick text").all_text_contents()
            assert labels == [evil]  # and so does the chart
        finally:
            b.close()


def test_the_report_finds_what_the_demo_planted(tmp_path: Path) -> None:
    # The demo plants an activation moment (at least 3 reports within 7 days of the first
    # event makes a user stay) and a nudge that works (users shown finish_setup invite a
    # teammate far more often, and so reach "activated"). The report must find both: the
    # moment as its top strong candidate, the nudge as positive, with an interval clear
    # of zero.
    import uptake
    from uptake.collector.discovery import to_data

    db = tmp_path / "events.db"
    result = run_demo(
        seed=4,
        users=240,
        days=56,
        until=dt.date.fromisoformat(UNTIL),
        out=str(tmp_path / "r.html"),
        db=str(db),
        progress=False,
        stream=io.StringIO(),
    )
    found = result.discovery
    assert found is not None and found.cohort > 150
    top = found.strong[0]
    assert (top.kind, top.name, top.count, top.days) == ("event", "Report Created", 3, 7)
    assert top.precision > 0.8 > 0.3 > top.rate_without and top.lift_low > 0.5
    assert any(
        line.startswith("  1. Report Created at least 3 times within 7 days: ")
        for line in result.summary
    )
    (line,) = [line for line in result.summary if line.startswith("nudge finish_setup:")]
    assert line.startswith("nudge finish_setup: positive; lift by assignment +")
    interval = line.split("anytime 95% ")[1].split(";")[0]
    low, high = (float(x) for x in interval.split(" to "))
    assert 0 < low < high
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<td>finish_setup</td><td>positive</td>" in page
    assert "What retained users did first" in page and "What the demo planted" in page
    assert "<tr><td>Report Created at least 3 times within 7 days</td>" in page
    # The report's discovery ran on the table the report had loaded: reading the store
    # again gives the same result.
    again = uptake.discover(db, settings=result.settings_path)
    assert to_data(again) == to_data(found)
