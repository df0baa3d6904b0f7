"""The engagement report: its numbers checked against plain Python over the raw events."""

from __future__ import annotations

import datetime as dt
import json
import math
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
    ]
    for kind in ("Nudge Fired", "Nudge Shown", "Nudge Held Out"):
        events.append(
            {
                "type": "track",
                "userId": "u" if kind != "Nudge Held Out" else "v",
                "event": kind,
                "timestamp": t,
                "properties": {"nudge": "<b>bold</b>", "goal": evil, "goal_within_s": 60},
            }
        )
    # An event after the goal window, so that it has ended for both users.
    events.append(
        {"type": "track", "userId": "v", "event": "Ping", "timestamp": "2026-03-03T10:00:00Z"}
    )
    report = compute(from_events(events))
    assert report.nudges[0].itt_lift is not None  # so the lift chart, with the name, is drawn
    page = render_html(report, plotly_js="/* plotly */", title=evil)
    assert 'id="chart-nudge-lift"' in page and 'id="chart-milestones"' in page
    assert "<script>window.pwned" not in page
    assert "<img src=x" not in page and "<b>bold</b>" not in page
    # In chart data: HTML entities (plotly reads tags in labels), inside escaped JSON.
    assert "\\u0026lt;b\\u0026gt;bold\\u0026lt;/b\\u0026gt;" in page
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert page.count("<script>") == 2  # plotly.js and the charts, nothing else


def test_an_empty_store_gives_an_empty_report(tmp_path: Path) -> None:
    EventStore(tmp_path / "e.db").close()
    report = compute(from_store(tmp_path / "e.db"))
    assert report.users == 0 and report.daily == ()
    assert summary(report) == ["no activity to report (0 events read, 0 events skipped)"]
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
    assert "0 events skipped" in capsys.readouterr().out and out.is_file()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    assert main(["report", str(other), "--out", str(out)]) == 2
    assert "not a collector's event store" in capsys.readouterr().err
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\xff" * 100)
    assert main(["report", str(garbage), "--out", str(out)]) == 2  # not an event source
    assert "nor a JSONL export" in capsys.readouterr().err


def track(user: str, event: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "timestamp": at, **extra}


def test_impossible_timestamps_are_skipped_not_fatal(tmp_path: Path) -> None:
    lines = [json.dumps(track("u1", "Viewed", "2026-03-02T10:00:00Z"))]
    for bad in ("NaN", "Infinity", "-Infinity", "1e300", "-1e15"):
        lines.append('{"type": "track", "userId": "u2", "event": "X", "timestamp": ' + bad + "}")
    for bad in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"):
        lines.append(json.dumps(track("u3", "X", bad)))
        lines.append(json.dumps({"type": "identify", "userId": "u3", "timestamp": bad}))
    lines.append("[" * 200_000)  # nests too deep for the JSON parser
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines))
    for tz in (None, ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo")):
        source = from_jsonl(path)
        report = compute(source, tz=tz)
        assert source.skipped == 12
        assert report.users == 1 and len(report.daily) == 1


def test_odd_property_shapes_and_lone_surrogates_do_not_stop_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = "2026-03-02T10:00:00Z"
    events = [
        track("u1", "Feature Used", at, messageId="1", properties=5),
        track("u1", "Nudge Fired", at, messageId="2", properties=True),
        track("u1", "Milestone Reached", at, messageId="3", properties='{"milestone": "m"}'),
        {
            "type": "group",
            "userId": "u1",
            "groupId": "a",
            "timestamp": at,
            "messageId": "4",
            "traits": 3.5,
        },
        track("u1", "Feature Used", at, messageId="5", properties={"feature": "bad\ud800x"}),
        track("u\x1b[2Jx", "Feature Used", at, messageId="6", properties={"feature": "ok"}),
    ]
    store = EventStore(tmp_path / "odd # store?.db")
    store.add(events)
    store.close()
    for source in (from_store(tmp_path / "odd # store?.db"), from_events(events)):
        report = compute(source)
        assert report.users == 2 and report.milestones == () and report.nudges == ()
        names = sorted(f.name for f in report.features)
        assert names[1] == "ok" and names[0].startswith("bad\ufffd") and names[0][-1] == "x"
        names[0].encode("utf-8")  # no lone surrogate left: it can be written out
    # The name is not cut at "#" or "?": no stray file "odd " was created beside it.
    assert all(p.name.startswith("odd # store?.db") for p in tmp_path.iterdir())
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events))  # "\ud800" escaped in JSON
    assert main(["report", str(path), "--out", str(tmp_path / "r.html")]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed
    assert "<td>bad\ufffd" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_the_sdk_agrees_on_inactive_touchpoints_and_fractional_seats() -> None:
    import uptake

    at = "2026-03-02T10:00:00Z"
    events = [
        {
            "type": "group",
            "userId": "u1",
            "groupId": "a",
            "timestamp": at,
            "traits": {"seats": 0.5},
        },
        {
            "type": "group",
            "userId": "u2",
            "groupId": "b",
            "timestamp": at,
            "traits": {"seats": 4.7},
        },
    ]
    for acct in ("a", "b"):
        for user in ("u1", "u2"):
            events.append(track(user, "Viewed", at, context={"groupId": acct}))
        events.append(track("u1", "QBR Attended", at, context={"groupId": acct}))
        events.append(
            track("u1", "QBR Attended", "2025-09-01T10:00:00Z", context={"groupId": acct})
        )  # outside the 90-day window
    config = Engagement(touchpoints=["QBR Attended"])
    client = uptake.Client(
        send=False,
        milestones=[uptake.Milestone("m", any_of=["Never"])],
        engagement=config,
        inactive_events=["QBR Attended"],
    )
    client.replay(sorted(events, key=lambda e: e["timestamp"]))
    report = compute(from_events(events), inactive=["QBR Attended"], engagement=config)
    now = dt.datetime(2026, 3, 2, 23, tzinfo=dt.timezone.utc)
    for a in report.accounts_engagement:
        snap = client.engagement(account_id=a.account, at=now)
        assert (a.score, a.touchpoints, a.user_breadth, a.seats) == (
            snap.score,
            snap.touchpoints,
            snap.user_breadth,
            snap.seats,
        )
        assert a.touchpoints == pytest.approx(1 / 3)  # one touchpoint day in the window of 3
    assert {a.account: a.seats for a in report.accounts_engagement} == {"a": None, "b": 4}
    client.shutdown()


def test_quantiles_fallbacks_shares_and_p_values_by_hand() -> None:
    at = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    events = []
    for u in range(10):  # active from day 0; reach "m" after u days, with no time given
        events.append(track(f"u{u}", "Viewed", iso(at)))
        events.append(
            track(
                f"u{u}",
                "Milestone Reached",
                iso(at + dt.timedelta(days=u)),
                properties={"milestone": "m", "scope": "user"},
            )
        )
    for u in range(5):  # reached "m2" but never active
        events.append(
            track(
                f"x{u}",
                "Milestone Reached",
                iso(at),
                properties={"milestone": "m2", "scope": "user"},
            )
        )
    goal = {"nudge": "n", "goal": "G", "goal_within_s": 86_400}
    for u in range(100):  # 30 of 100 shown convert, 15 of 100 held out do
        events.append(track(f"s{u}", "Nudge Fired", iso(at), properties=goal))
        events.append(track(f"s{u}", "Nudge Shown", iso(at), properties=goal))
        events.append(track(f"h{u}", "Nudge Held Out", iso(at), properties=goal))
        if u < 30:
            events.append(track(f"s{u}", "G", iso(at + dt.timedelta(hours=23))))
        if u < 15:
            events.append(track(f"h{u}", "G", iso(at + dt.timedelta(hours=23))))
        if u == 99:  # too late: after the goal window
            events.append(track(f"h{u}", "G", iso(at + dt.timedelta(hours=25))))
    report = compute(from_events(events))
    m = next(x for x in report.milestones if x.name == "m")
    assert m.median_days == pytest.approx(4.5) and m.p90_days == pytest.approx(8)
    m2 = next(x for x in report.milestones if x.name == "m2")
    # 56 active users, and 5 who reached it with nothing else: 5 of 61, never over 100%.
    assert (m2.reached, m2.share) == (5, 5 / 61)
    (n,) = report.nudges
    assert (n.shown, n.shown_converted, n.held_out, n.held_out_converted) == (100, 30, 100, 15)
    pooled = 45 / 200
    z = (0.30 - 0.15) / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    expected = 2 * (1 - statistics.NormalDist().cdf(z))
    assert n.p_value == pytest.approx(expected, rel=1e-9)


def test_a_stray_event_after_the_last_active_day_does_not_move_today() -> None:
    events = [track("u1", "Viewed", "2026-03-02T10:00:00Z")]
    events.append(track("u1", "Session Ended", "2026-03-03T00:10:00Z"))
    events.append({"type": "identify", "userId": "u1", "timestamp": "2026-03-09T00:00:00Z"})
    report = compute(from_events(events))
    assert report.last_day == dt.date(2026, 3, 2) and report.daily[-1].dau == 1
