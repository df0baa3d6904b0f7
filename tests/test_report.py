"""The engagement report: its numbers checked against plain Python over the raw events."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from uptake.cli import main
from uptake.collector.metrics import compute
from uptake.collector.report import render_html, summary
from uptake.collector.sources import from_events, from_jsonl, from_store
from uptake.collector.store import EventStore
from uptake.rules.engagement import Engagement

END = dt.date(2026, 3, 31)  # a Tuesday
OWN = {"Milestone Reached", "Nudge Fired", "Nudge Held Out", "Nudge Shown", "Session Started"}


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def dataset(seed: int = 11) -> list[dict[str, Any]]:
    """80 days of random events: activity, features, own events, groups, junk."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    start = dt.datetime(2026, 1, 11, tzinfo=dt.timezone.utc)
    n = 0

    def add(kind: str, user: str | None, t: dt.datetime, **extra: Any) -> None:
        nonlocal n
        n += 1
        e: dict[str, Any] = {"type": kind, "messageId": f"m{n}", "timestamp": iso(t), **extra}
        if user is not None:
            e["userId"] = user
        events.append(e)

    for u in range(60):
        user = f"u{u}"
        account = f"a{u % 7}" if u % 5 else None
        context = {"groupId": account} if account else {}
        joined = rng.randrange(0, 70)
        rate = rng.choice([0.1, 0.3, 0.6, 0.9])
        for day in range(joined, 80):
            if rng.random() > rate:
                continue
            for _ in range(rng.randint(1, 4)):
                t = start + dt.timedelta(days=day, minutes=rng.uniform(0, 1439))
                roll = rng.random()
                if roll < 0.4:
                    feature = rng.choice(["reports", "alerts", "<b>x</b>", "exports"])
                    add(
                        "track",
                        user,
                        t,
                        event="Feature Used",
                        context=context,
                        properties={"feature": feature},
                    )
                elif roll < 0.5:
                    add("track", user, t, event="Session Started", context=context)
                elif roll < 0.55:
                    add("track", user, t, event="Heartbeat", context=context)  # inactive
                else:
                    add("track", user, t, event=rng.choice(["Viewed", "Goal"]), context=context)
        first = start + dt.timedelta(days=joined, hours=23, minutes=59)
        if rng.random() < 0.6:
            add(
                "track",
                user,
                first + dt.timedelta(days=rng.randint(0, 9)),
                event="Milestone Reached",
                context=context,
                properties={
                    "milestone": "activated",
                    "scope": "user",
                    "time_to_reach_s": rng.randint(0, 9 * 86_400),
                },
            )
        if rng.random() < 0.5:
            kind = rng.choice(["Nudge Shown", "Nudge Held Out"])
            props = {"nudge": "tip", "goal": "Goal", "goal_within_s": 3 * 86_400}
            t = first + dt.timedelta(days=rng.randint(0, 5))
            if kind == "Nudge Shown":
                add(
                    "track",
                    user,
                    t - dt.timedelta(seconds=1),
                    event="Nudge Fired",
                    context=context,
                    properties=props,
                )
            add("track", user, t, event=kind, context=context, properties=props)
    for a in range(7):
        add("group", f"u{a + 1}", start, groupId=f"a{a}", traits={"seats": 3 + a})
    add("track", None, start, event="No user")  # skipped
    add("track", "u1", start, event="Bad time")
    events[-1]["timestamp"] = "yesterday"
    rng.shuffle(events)
    return events


def day_of(e: dict[str, Any], tz: dt.tzinfo) -> dt.date:
    t = dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
    return t.astimezone(tz).date()


def usable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("userId") and e["timestamp"] != "yesterday"]


def active(e: dict[str, Any]) -> bool:
    return e["type"] == "track" and e["event"] not in OWN | {"Heartbeat"}


@pytest.mark.parametrize("tz", [dt.timezone.utc, ZoneInfo("America/Los_Angeles")])
def test_the_numbers_match_plain_python_over_the_raw_events(tz: dt.tzinfo) -> None:
    events = dataset()
    source = from_events(events)
    report = compute(source, tz=tz, inactive=["Heartbeat"], until=END)
    assert source.skipped == 2 and source.read == len(events)
    rows = [e for e in usable(events) if day_of(e, tz) <= END]
    acts = [e for e in rows if active(e)]
    days: dict[str, set[dt.date]] = defaultdict(set)
    for e in acts:
        days[e["userId"]].add(day_of(e, tz))
    assert report.users == len(days)
    assert report.last_day == END
    first = min(min(d) for d in days.values())
    assert report.first_day == first

    # DAU / WAU / MAU, every day; stickiness over the last 30 days.
    def active_between(a: dt.date, b: dt.date) -> int:
        return sum(1 for ds in days.values() if any(a <= d <= b for d in ds))

    expected = []
    day = first
    while day <= END:
        expected.append(
            (
                day,
                active_between(day, day),
                active_between(day - dt.timedelta(days=6), day),
                active_between(day - dt.timedelta(days=29), day),
            )
        )
        day += dt.timedelta(days=1)
    assert [(d.day, d.dau, d.wau, d.mau) for d in report.daily] == expected
    ratios = [dau / mau for _, dau, _, mau in expected[-30:] if mau]
    assert report.stickiness == pytest.approx(sum(ratios) / len(ratios), abs=1e-12)
    month = [e for e in acts if day_of(e, tz) > END - dt.timedelta(days=30)]
    assert report.interactions_per_user == pytest.approx(len(month) / expected[-1][3])

    # L7 / L28.
    for n, hist in ((7, report.l7), (28, report.l28)):
        counts = [0] * n
        for ds in days.values():
            k = len([d for d in ds if END - dt.timedelta(days=n) < d <= END])
            if k:
                counts[k - 1] += 1
        assert list(hist) == counts

    # Lifecycle by ISO week.
    def week(d: dt.date) -> dt.date:
        return d - dt.timedelta(days=d.weekday())

    weeks = {u: {week(d) for d in ds} for u, ds in days.items()}
    for w in report.lifecycle:
        now = {u for u, ws in weeks.items() if w.week_start in ws}
        prev = {u for u, ws in weeks.items() if w.week_start - dt.timedelta(days=7) in ws}
        new = {u for u in now if min(weeks[u]) == w.week_start}
        assert (w.active, w.new, w.returning, w.resurrecting, w.dormant) == (
            len(now),
            len(new),
            len(now & prev),
            len(now - prev - new),
            len(prev - now),
        )
        assert w.quick_ratio == (
            (len(new) + len(now - prev - new)) / len(prev - now) if prev - now else None
        )
    assert report.lifecycle[0].week_start == week(first)
    assert report.lifecycle[-1].complete is False  # the report ends on a Tuesday

    # Activation: first "activated" per user; time to reach from the event.
    reached: dict[str, tuple[str, int]] = {}
    for e in sorted(rows, key=lambda e: e["timestamp"]):
        if e["event"] == "Milestone Reached" if e["type"] == "track" else False:
            reached.setdefault(e["userId"], (e["timestamp"], e["properties"]["time_to_reach_s"]))
    (milestone,) = report.milestones
    assert milestone.reached == len(reached)
    assert milestone.share == len(reached) / len(days)
    took = sorted(s / 86_400 for _, s in reached.values())
    assert milestone.median_days == pytest.approx(statistics.median(took))

    # Feature adoption over the last 30 days, as a share of MAU.
    recent_start = END - dt.timedelta(days=29)
    per_feature: dict[str, dict[str, set[dt.date]]] = defaultdict(lambda: defaultdict(set))
    for e in acts:
        if e["event"] == "Feature Used" and day_of(e, tz) >= recent_start:
            per_feature[e["properties"]["feature"]][e["userId"]].add(day_of(e, tz))
    mau = expected[-1][3]
    for f in report.features:
        users = per_feature[f.name]
        assert f.users_30 == len(users)
        assert f.adoption == pytest.approx(len(users) / mau)
        assert f.frequency == pytest.approx(sum(map(len, users.values())) / len(users))

    # Account scores with the SDK's default weights (no touchpoints declared).
    config = Engagement()
    window = END - dt.timedelta(days=27)
    for a in report.accounts_engagement:
        mine = [e for e in acts if e.get("context", {}).get("groupId") == a.account]
        adays = {day_of(e, tz) for e in mine if day_of(e, tz) >= window}
        feats: dict[str, set[dt.date]] = defaultdict(set)
        seen = set()
        for e in mine:
            if e["event"] == "Feature Used":
                seen.add(e["properties"]["feature"])
                if day_of(e, tz) >= window:
                    feats[e["properties"]["feature"]].add(day_of(e, tz))
        users28 = {e["userId"] for e in mine if day_of(e, tz) >= window}
        seats = 3 + int(a.account[1:])
        parts = {
            "frequency": len(adays) / 28,
            "breadth": len(feats) / len(seen) if seen else 0.0,
            "depth": sum(min(len(d), 8) for d in feats.values()) / len(feats) / 8 if feats else 0.0,
            "user_breadth": min(len(users28) / seats, 1.0),
        }
        w = config.account_weights
        score = sum(w[k] * v for k, v in parts.items()) / sum(w[k] for k in parts)
        assert (a.score, a.active_users_28, a.seats) == (round(score * 100), len(users28), seats)
        assert a.tier == config.tier(a.score)
    flags = [a.declining for a in report.accounts_engagement]
    assert flags == sorted(flags, reverse=True)  # declining accounts come first

    # Nudge lift: goal within 3 days after being shown / held out.
    (nudge,) = report.nudges
    for kind, n, conv in (
        ("Nudge Shown", nudge.shown, nudge.shown_converted),
        ("Nudge Held Out", nudge.held_out, nudge.held_out_converted),
    ):
        t0 = {e["userId"]: e["timestamp"] for e in rows if e.get("event") == kind}
        assert n == len(t0)
        hits = 0
        for user, start in t0.items():
            s = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
            goals = [
                dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
                for e in rows
                if e.get("event") == "Goal" and e["userId"] == user
            ]
            hits += any(s <= g <= s + dt.timedelta(days=3) for g in goals)
        assert conv == hits
    assert nudge.lift == pytest.approx(
        nudge.shown_converted / nudge.shown - nudge.held_out_converted / nudge.held_out
    )
    assert 0 <= (nudge.p_value or 0) <= 1


def test_the_collector_store_and_a_jsonl_export_give_the_same_report(tmp_path: Path) -> None:
    events = dataset(5)
    store = EventStore(tmp_path / "events.db")
    store.add([e for e in usable(events)])
    store.close()
    with open(tmp_path / "events.jsonl", "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
        f.write("not json\n\n")
    a = compute(from_store(tmp_path / "events.db"))
    jsonl = from_jsonl(tmp_path / "events.jsonl")
    b = compute(jsonl)
    assert jsonl.skipped == 3  # no user, a bad time, a line that is not JSON
    assert a == b


def test_user_strings_are_escaped_everywhere() -> None:
    evil = "</script><script>window.pwned=1</script>"
    t = "2026-03-02T10:00:00Z"
    events = [
        {
            "type": "track",
            "userId": evil,
            "event": "Feature Used",
            "timestamp": t,
            "properties": {"feature": evil},
            "context": {"groupId": evil},
        },
        {
            "type": "track",
            "userId": "u",
            "event": "Milestone Reached",
            "timestamp": t,
            "properties": {"milestone": "<img src=x onerror=alert(1)>", "scope": "user"},
        },
        {
            "type": "track",
            "userId": "u",
            "event": "Nudge Shown",
            "timestamp": t,
            "properties": {"nudge": "<b>bold</b>", "goal": "x", "goal_within_s": 60},
        },
    ]
    page = render_html(compute(from_events(events)), plotly_js="/* plotly */", title=evil)
    assert "<script>window.pwned" not in page
    assert "<img src=x" not in page and "<b>bold</b>" not in page
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert page.count("<script>") == 2  # plotly.js and the charts, nothing else


def test_an_empty_store_gives_an_empty_report(tmp_path: Path) -> None:
    EventStore(tmp_path / "e.db").close()
    report = compute(from_store(tmp_path / "e.db"))
    assert report.users == 0 and report.daily == ()
    assert summary(report) == ["no activity to report (0 events, 0 skipped)"]
    assert "<section>" not in render_html(report, plotly_js="")


def test_the_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in dataset(3)))
    out = tmp_path / "r.html"
    assert (
        main(
            [
                "report",
                str(path),
                "--out",
                str(out),
                "--until",
                "2026-03-31",
                "--timezone",
                "Europe/Paris",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "(Europe/Paris)" in printed and "stickiness" in printed
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "missing.db")]) == 2
    assert main(["report", str(path), "--timezone", "Mars/Olympus"]) == 2
    with pytest.raises(SystemExit, match="not a date"):
        main(["report", str(path), "--until", "soon"])


def test_declining_accounts_come_first() -> None:
    events = []
    monday = dt.date(2026, 2, 2)
    for week in range(8):  # 4 weeks of 4 active members, then 3 of 1, then this week
        members = 4 if week < 4 else 1
        for m in range(members):
            day = monday + dt.timedelta(days=7 * week + m)
            for account in ("falling", "steady"):
                users = m if account == "falling" else m % 4
                events.append(
                    {
                        "type": "track",
                        "event": "Viewed",
                        "userId": f"{account}-{users}",
                        "timestamp": f"{day}T12:00:00Z",
                        "context": {"groupId": account},
                    }
                )
        if week >= 4:  # the steady account keeps its four members
            for m in range(1, 4):
                day = monday + dt.timedelta(days=7 * week + m)
                events.append(
                    {
                        "type": "track",
                        "event": "Viewed",
                        "userId": f"steady-{m}",
                        "timestamp": f"{day}T12:00:00Z",
                        "context": {"groupId": "steady"},
                    }
                )
    report = compute(from_events(events), until=monday + dt.timedelta(days=7 * 7 + 1))
    first, second = report.accounts_engagement
    assert (first.account, first.declining) == ("falling", True)
    assert first.weekly_active_users == (0, 4, 4, 4, 4, 1, 1, 1)
    assert (second.account, second.declining) == ("steady", False)
    assert second.score > first.score  # a higher score, yet listed second
    assert any("1 declining: falling" in line for line in summary(report))


def test_account_scores_agree_with_the_sdk_snapshot() -> None:
    import uptake

    events = usable(dataset(21))
    config = Engagement(touchpoints=["Goal"])
    client = uptake.Client(
        send=False,
        milestones=[uptake.Milestone("m", any_of=["Never"])],
        engagement=config,
        inactive_events=["Heartbeat"],
    )
    client.replay(sorted(events, key=lambda e: e["timestamp"]))
    report = compute(from_events(events), inactive=["Heartbeat"], engagement=config, until=END)
    assert len(report.accounts_engagement) == 7
    at = dt.datetime.combine(END, dt.time(23, 59, 59), dt.timezone.utc)
    for a in report.accounts_engagement:
        snap = client.engagement(account_id=a.account, at=at)
        assert (a.score, a.tier, a.active_users_28, a.declining) == (
            snap.score,
            snap.tier,
            snap.active_users_28,
            snap.declining,
        ), a.account
        assert a.weekly_active_users == snap.weekly_activity
        assert (a.frequency, a.breadth, a.depth) == (snap.frequency, snap.breadth, snap.depth)
        assert a.touchpoints == snap.touchpoints and a.user_breadth == snap.user_breadth
    client.shutdown()


def test_the_report_command_reads_a_collector_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EventStore(tmp_path / "events.db")
    store.add(usable(dataset(4)))
    store.close()
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "events.db"), "--out", str(out)]) == 0
    assert "0 skipped" in capsys.readouterr().out and out.is_file()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    assert main(["report", str(other), "--out", str(out)]) == 2
    assert "not a collector's event store" in capsys.readouterr().err
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\xff" * 100)
    assert main(["report", str(garbage), "--out", str(out)]) == 0  # read as JSONL: skipped
    assert "no activity to report (0 events, 1 skipped)" in capsys.readouterr().out
