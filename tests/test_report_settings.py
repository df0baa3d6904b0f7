"""The report's settings file, and one count per concept across the demo, summary and page."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import attrs
import pytest

import uptake
from uptake.cli import main
from uptake.collector.figures import nudge_stat
from uptake.collector.lift import ArmSums, lift_of
from uptake.collector.metrics import NudgeStat, compute
from uptake.collector.report import render_html, summary
from uptake.collector.settings import ReportSettings, SettingsError, beside, dumps, load, loads
from uptake.collector.sources import from_events
from uptake.collector.wording import lift_interval, lift_text, verdict_text
from uptake.demo import _Progress, run_demo


def test_settings_round_trip_through_toml(tmp_path: Path) -> None:
    settings = ReportSettings(
        timezone="America/Los_Angeles",
        inactive=["Heartbeat", 'Quote " and \\ back'],
        core_features=["reports", "alerts"],
        touchpoints=["QBR Attended"],
        account_weights={"frequency": 1, "breadth": 2.5},
        high=80,
        medium=30.5,
        depth_target=5,
        touchpoint_target=2,
        touchpoint_window_days=60,
        seats_trait="licenses",
    )
    path = tmp_path / "s.toml"
    path.write_text(dumps(settings), encoding="utf-8")
    again = load(path)
    assert again == settings and again.path == str(path)
    engagement = again.engagement()
    assert engagement.core_features == ("reports", "alerts")
    assert dict(engagement.account_weights) == {"frequency": 1.0, "breadth": 2.5}
    assert (engagement.high, engagement.medium, engagement.depth_target) == (80, 30.5, 5)
    assert engagement.touchpoint_window == dt.timedelta(days=60)
    assert engagement.seats_trait == "licenses"
    # Defaults: every feature the account used, the SDK's weights and tiers.
    assert loads(dumps(ReportSettings())) == ReportSettings() == loads("")
    assert ReportSettings().engagement() == type(engagement)()
    assert ReportSettings().describe()[0].startswith("settings: defaults; ")
    assert ReportSettings(high=90).describe()[0].startswith("settings: not from a file; ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1", "colour: unknown setting"),
        ("core_features = []", "core_features: must not be empty"),
        ("core_features = [1]", "core_features: must be a list of non-empty strings"),
        ('inactive = "Heartbeat"', "inactive: must be a list"),
        ('timezone = "Mars/Olympus"', "timezone: unknown time zone 'Mars/Olympus'"),
        ("[tiers]\nhigh = 30\nmedium = 50", "tiers: must satisfy 0 < medium < high"),
        ("[tiers]\nlow = 10", "tiers.low: unknown tier"),
        ('[tiers]\nhigh = "70"', "tiers.high: must be a number"),
        ("[account_weights]\nlogins = 1", "account_weights.logins: unknown component"),
        ("[account_weights]\nbreadth = -1", "account_weights.breadth: must be between"),
        ("[account_weights]\nbreadth = 0", "account_weights: some component needs a weight"),
        ("depth_target = 0", "depth_target: must be a whole number from 1 to 28"),
        ("touchpoint_window_days = 1.5", "touchpoint_window_days: must be a whole number"),
        ("timezone = ", "not a TOML file"),
    ],
)
def test_a_bad_settings_file_names_the_key(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=r"^f\.toml: ") as info:
        loads(text, path="f.toml")
    assert message in str(info.value)


def events() -> list[dict[str, object]]:
    t = "2026-03-02T10:00:00Z"
    return [
        {"type": "track", "userId": "u1", "event": "Viewed", "timestamp": t},
        {"type": "track", "userId": "u2", "event": "Heartbeat", "timestamp": t},
        {"type": "track", "userId": "u1", "event": "Viewed", "timestamp": "2026-03-03T03:00:00Z"},
    ]


def test_the_report_reads_the_settings_beside_its_source_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "export.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in events()))
    out = tmp_path / "r.html"
    assert main(["report", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("settings: defaults; time zone UTC; inactive events: none\n")
    assert "2 active users" in printed
    assert beside(source) == tmp_path / "export.toml"
    beside(source).write_text('inactive = ["Heartbeat"]\ntimezone = "Asia/Tokyo"\n')
    assert main(["report", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"settings: {beside(source)}; time zone Asia/Tokyo; inactive events: Heartbeat" in printed
    )
    assert "1 active user," in printed and "2026-03-02 to 2026-03-03 (Asia/Tokyo)" in printed
    page = out.read_text()
    assert f"settings: {beside(source)}; time zone Asia/Tokyo" in page
    # --settings wins over the file beside the source, and flags over both.
    other = tmp_path / "other.toml"
    other.write_text("[tiers]\nhigh = 90\nmedium = 20\n")
    assert main(["report", str(source), "--out", str(out), "--settings", str(other)]) == 0
    printed = capsys.readouterr().out
    assert "inactive events: none" in printed and "tiers high >= 90, medium >= 20" in printed
    assert main(["report", str(source), "--out", str(out), "--timezone", "UTC"]) == 0
    assert "with command-line flags; time zone UTC; inactive events: Heartbeat" in (
        capsys.readouterr().out
    )
    other.write_text("[tiers]\nhigh = 101\n")
    assert main(["report", str(source), "--out", str(out), "--settings", str(other)]) == 2
    assert "other.toml: tiers.high: must be between 0 and 100" in capsys.readouterr().err
    assert main(["report", str(source), "--settings", str(tmp_path / "none.toml")]) == 2
    assert "cannot read settings" in capsys.readouterr().err


def nudge(shown: int, shown_converted: int, held: int, held_converted: int) -> NudgeStat:
    shown_rate, held_rate = shown_converted / shown, held_converted / held
    return NudgeStat(
        name="tip",
        fired=shown,
        held_out=held,
        shown=shown,
        clicked=0,
        dismissed=0,
        suppressed=0,
        goal="Goal",
        goal_within_days=7.0,
        shown_converted=shown_converted,
        held_out_converted=held_converted,
        shown_rate=shown_rate,
        held_out_rate=held_rate,
        lift=shown_rate - held_rate,
        p_value=0.0021,
    )


def test_the_lift_interval_by_hand() -> None:
    # p1 = .5, p2 = .3: se = sqrt(.25/100 + .21/100) = .0678233; 1.96 se = .1329319
    low, high = lift_interval(nudge(100, 50, 100, 30)) or (0.0, 0.0)
    assert low == pytest.approx(0.2 - 0.1329319, abs=1e-6)
    assert high == pytest.approx(0.2 + 0.1329319, abs=1e-6)
    assert lift_text(nudge(100, 50, 100, 30)) == "+20.0 pts (95% CI +6.7 to +33.3), p=0.002"
    # Everyone converted in both groups: no spread, the interval is the point.
    assert lift_interval(nudge(10, 10, 5, 5)) == (0.0, 0.0)
    assert lift_interval(attrs.evolve(nudge(10, 1, 5, 1), lift=None)) is None


def test_nudge_lines_lead_with_verdict_and_lift_and_label_users_and_decisions() -> None:
    report = compute(from_events(events()))
    # 300 users per arm by assignment, 50% against 30% converted.
    treated = ArmSums.of([(1.0, 0.0)] * 150 + [(0.0, 0.0)] * 150)
    control = ArmSums.of([(1.0, 0.0)] * 90 + [(0.0, 0.0)] * 210)
    stat = nudge_stat(
        "tip",
        {"fired": 300, "held out": 300, "shown": 280},
        0,
        ("Goal", 7 * 86_400.0),
        {"shown": 140, "held out": 90},
        (lift_of(treated, control), 12),
    )
    report = attrs.evolve(report, nudges=(stat,))
    lines = summary(report)
    text = next(line for line in lines if line.startswith("nudge tip"))
    assert text.startswith(
        "nudge tip: positive; lift by assignment +20.0 pts (anytime 95% +8.1 to +31.9; "
        "detectable at this size: 15.2 pts); users "
    )
    assert "users fired 300, shown 280, held out 300" in text and "0 decisions suppressed" in text
    assert "150/300 (50.0%) nudged vs 90/300 (30.0%) held out; 12 still in the window" in "\n".join(
        lines
    )
    page = render_html(report, plotly_js="")
    assert "positive" in page and "+20.0 pts" in page and "+8.1 to +31.9" in page


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_only_on_a_terminal() -> None:
    piped = io.StringIO()
    _Progress(piped, 2, enabled=True).update(1, "x")
    assert piped.getvalue() == ""
    tty = Terminal()
    bar = _Progress(tty, 2, enabled=True)
    bar.update(1, "10 events tracked")
    bar.update(2, "20 events tracked")
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("20 events tracked\n")
    off = Terminal()
    _Progress(off, 2, enabled=False).update(1, "x")
    assert off.getvalue() == ""


def test_the_demo_and_the_report_on_its_store_print_the_same_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    printed = io.StringIO()
    result = run_demo(
        seed=5,
        users=40,
        days=21,
        until=dt.date(2026, 6, 30),
        out=str(tmp_path / "demo.html"),
        db=str(db),
        progress=False,
        stream=printed,
    )
    assert result.settings_path == str(tmp_path / "demo.toml")
    written = load(tmp_path / "demo.toml")
    assert written.core_features is not None and written.touchpoints == ("QBR Attended",)
    assert main(["report", str(db), "--out", str(tmp_path / "r.html")]) == 0
    report_lines = capsys.readouterr().out.splitlines()[:-1]  # less "wrote ... in 0.1s"
    # The same settings, the same tiers, the same nudge counts, line for line.
    assert report_lines == result.summary
    assert any(line.startswith("accounts by tier: ") for line in report_lines)
    # The demo prints nudge counts only from the report: in users, once.
    out = printed.getvalue()
    for name, counts in result.nudges.items():
        assert f"users fired {counts['fired']:,}, shown {counts['shown']:,}, held out " in out
        assert out.count(f"held out {counts['held_out']:,},") == 1
        assert f"nudge {name}" in out
    assert "events read" in out and f"tracked {result.tracked:,} events" in out
    # Milestones the client saw reached are the report's, in users or accounts.
    reached = next(line for line in result.summary if line.startswith("milestones reached: "))
    for name, n in result.milestones.items():
        assert re.search(rf"\b{name} \d+% \({n} (users?|accounts?)\b", reached), name
    with pytest.raises(ValueError, match=r"demo\.toml exists"):
        run_demo(db=str(tmp_path / "demo.jsonl"), out=str(tmp_path / "x.html"), progress=False)


def test_a_nudge_without_a_holdout_says_so_instead_of_keep_running() -> None:
    stat = nudge_stat("tip", {"fired": 50}, 0, ("Goal", 86_400.0), {}, (None, 0))
    assert verdict_text(stat) == "no holdout"
    assert verdict_text(attrs.evolve(stat, goal=None)) == "n/a"
    assert verdict_text(attrs.evolve(stat, held_out=3)) == "keep running"


def test_declared_milestones_round_trip_and_name_their_mistakes() -> None:
    text = (
        '[[milestones]]\nname = "reports"\ncounts = { "Report Created" = 3 }\nwithin_days = 7\n'
        '\n[[milestones]]\nname = "teams"\nfeatures = 2\nscope = "account"\n'
    )
    settings = loads(text)
    assert settings.milestones == (
        uptake.Milestone("reports", counts={"Report Created": 3}, within=dt.timedelta(days=7)),
        uptake.Milestone("teams", features=2, scope="account"),
    )
    assert loads(dumps(settings)) == settings
    assert settings.describe()[-1] == "declared milestones: reports, teams"
    assert settings.to_dict()["milestones"][0] == {
        "name": "reports",
        "counts": {"Report Created": 3},
        "within_days": 7,
    }
    for bad, message in (
        ('[[milestones]]\nname = "x"\nwithin = 7\nall_of = ["A"]\n', "milestones\\[0\\].within:"),
        ('[[milestones]]\nname = "x"\n', "milestones\\[0\\] \\('x'\\): milestone 'x' has no"),
        ('[[milestones]]\nname = "x"\nall_of = ["A"]\nwithin_days = 0\n', "within_days"),
        ('milestones = ["x"]\n', "must be a table"),
        ('[[milestones]]\nname = "x"\nall_of = ["A"]\n' * 2, "declared twice"),
    ):
        with pytest.raises(SettingsError, match=message):
            loads(bad)


def test_any_name_survives_the_settings_file() -> None:
    # Emoji (outside the BMP), quotes, control characters and DEL: JSON's \ud83d-style
    # escapes would make a file TOML refuses.
    names = ("🚀 Launch", 'say "hi"', "tab\there", "del\x7f")
    settings = loads("")
    settings = attrs.evolve(settings, core_features=names, inactive=names)
    again = loads(dumps(settings))
    assert again.core_features == names and again.inactive == names
