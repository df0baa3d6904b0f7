"""Nudges: every trigger and cap at its edges, priority and rate limit, holdouts, outcomes."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import uptake
from uptake.testing import capture_events

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)  # a Monday

ACTIVATED = uptake.Milestone("activated", all_of=["Project Created"])
REPORTING = uptake.Milestone("reporting", counts={"Report Created": 2})


def make(*nudges: uptake.Nudge, **options: Any) -> tuple[uptake.Client, list[str]]:
    """A client with these nudges; returns it and a list that collects fired names."""
    options.setdefault("milestones", [ACTIVATED, REPORTING])
    client = uptake.Client(send=False, nudges=list(nudges), **options)
    fired: list[str] = []
    client.on_nudge()(lambda n: fired.append(n.name))
    return client, fired


def at(offset: dt.timedelta) -> dt.datetime:
    return T0 + offset


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trigger": "Dashboard Viewed"}, "trigger must be"),
        ({"trigger": uptake.Reached("activated"), "max_shows": 0}, "max_shows"),
        ({"trigger": uptake.Reached("activated"), "holdout": 1.0}, "below 1"),
        ({"trigger": uptake.Reached("activated"), "holdout": -0.1}, "at least 0"),
        ({"trigger": uptake.Reached("activated"), "cooldown": -HOUR}, "cooldown"),
        ({"trigger": uptake.Reached("activated"), "priority": 1.5}, "priority"),
        ({"trigger": uptake.Reached("activated"), "payload": ["x"]}, "payload"),
        ({"trigger": uptake.Reached("activated"), "audience": 3}, "audience"),
        ({"trigger": uptake.Reached("activated"), "unless": "activated"}, "unless"),
        ({"trigger": uptake.Reached("activated"), "start": T0, "end": T0}, "end must be"),
    ],
)
def test_bad_nudges_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.Nudge("n", **kwargs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: uptake.EventCount("A", 0), "positive int"),
        (lambda: uptake.EventCount("", 1), "non-empty"),
        (lambda: uptake.EventCount("A", 2, within=dt.timedelta(0)), "positive timedelta"),
        (lambda: uptake.NotReached("activated", after=-DAY), "positive timedelta"),
        (lambda: uptake.Inactive(after=0), "positive timedelta"),  # type: ignore[arg-type]
        (lambda: uptake.Nudge("bad\x00name", trigger=uptake.Declining()), "name"),
    ],
)
def test_bad_triggers_are_refused(build: Any, message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        build()


def test_client_checks_nudges_against_its_milestones() -> None:
    tip = uptake.Nudge("tip", trigger=uptake.Reached("activated"))
    with pytest.raises(uptake.ConfigurationError, match=r"does not have: \['nope'\]"):
        make(uptake.Nudge("x", trigger=uptake.Reached("nope")))
    with pytest.raises(uptake.ConfigurationError, match=r"does not have: \['nope'\]"):
        make(uptake.Nudge("x", trigger=uptake.Reached("activated"), unless=["nope"]))
    with pytest.raises(uptake.ConfigurationError, match="unique"):
        make(tip, tip)
    with pytest.raises(uptake.ConfigurationError, match=r"uptake\.Nudge"):
        make("tip")  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="needs engagement"):
        make(uptake.Nudge("d", trigger=uptake.Declining()), engagement=False)
    with pytest.raises(uptake.ConfigurationError, match="nudge_rate_limit"):
        make(tip, nudge_rate_limit=60)
    client, _ = make(tip)
    with pytest.raises(uptake.ConfigurationError, match="no nudge named 'other'"):
        client.on_nudge("other")
    with pytest.raises(uptake.InvalidEventError, match="no nudge named 'other'"):
        client.nudge_shown("u", "other")
    with pytest.raises(uptake.InvalidEventError, match="snooze"):
        client.nudge_dismissed("u", "tip", snooze=dt.timedelta(0))


# ---------------------------------------------------------------- triggers at their edges


@pytest.mark.parametrize(
    ("minutes", "fires"),
    [
        ([0, 1], False),  # two of three
        ([0, 1, 2], True),
        ([0, 5, 11], False),  # the first fell out of the 10 minutes
        ([0, 5, 10], True),  # exactly 10 minutes apart still counts
        ([0, 20, 25, 29], True),
    ],
)
def test_event_count_within_a_window_catches_friction(minutes: list[int], fires: bool) -> None:
    nudge = uptake.Nudge(
        "export_help", trigger=uptake.EventCount("Export Failed", 3, within=10 * MINUTE)
    )
    client, fired = make(nudge)
    for m in minutes:
        client.track("u", "Export Failed", timestamp=at(m * MINUTE))
    assert fired == (["export_help"] if fires else [])


def test_event_count_for_life_fires_on_the_nth_event() -> None:
    client, fired = make(uptake.Nudge("try_reports", trigger=uptake.EventCount("Dashboard", 3)))
    for d in range(2):
        client.track("u", "Dashboard", timestamp=at(d * DAY))
    assert fired == []
    client.track("u", "Dashboard", timestamp=at(30 * DAY))  # a lifetime count has no window
    assert fired == ["try_reports"]


def test_reached_fires_when_the_milestone_is_reached() -> None:
    client, fired = make(uptake.Nudge("celebrate", trigger=uptake.Reached("activated")))
    client.track("u", "Signed Up", timestamp=at(0 * DAY))
    assert fired == []
    client.track("u", "Project Created", timestamp=at(HOUR))
    assert fired == ["celebrate"]


@pytest.mark.parametrize(
    ("second_event", "fires"),
    [
        (2 * DAY - MINUTE, False),  # just before the deadline
        (2 * DAY, True),  # at the deadline
        (5 * DAY, True),
    ],
)
def test_not_reached_fires_when_the_user_is_next_seen_after_the_deadline(
    second_event: dt.timedelta, fires: bool
) -> None:
    nudge = uptake.Nudge("finish_setup", trigger=uptake.NotReached("activated", after=2 * DAY))
    client, fired = make(nudge)
    client.track("u", "Signed Up", timestamp=at(0 * DAY))
    client.track("u", "Page Viewed", timestamp=at(second_event))
    assert fired == (["finish_setup"] if fires else [])


def test_not_reached_never_fires_once_reached() -> None:
    nudge = uptake.Nudge("finish_setup", trigger=uptake.NotReached("activated", after=2 * DAY))
    client, fired = make(nudge)
    client.track("u", "Signed Up", timestamp=at(0 * DAY))
    client.track("u", "Project Created", timestamp=at(DAY))
    client.track("u", "Page Viewed", timestamp=at(3 * DAY))
    assert fired == []


def test_not_reached_fires_on_a_pending_nudges_call_without_any_event() -> None:
    nudge = uptake.Nudge("finish_setup", trigger=uptake.NotReached("activated", after=2 * DAY))
    client, fired = make(nudge)
    client.track("u", "Signed Up", timestamp=at(0 * DAY))
    assert client.pending_nudges("u", at=at(DAY)) == []
    pending = client.pending_nudges("u", at=at(3 * DAY))
    assert [p.name for p in pending] == ["finish_setup"] and fired == ["finish_setup"]
    assert pending[0].timestamp == at(3 * DAY)


@pytest.mark.parametrize(
    ("gap", "fires"),
    [(7 * DAY - MINUTE, False), (7 * DAY, True), (30 * DAY, True)],
)
def test_inactive_fires_when_the_user_comes_back(gap: dt.timedelta, fires: bool) -> None:
    client, fired = make(uptake.Nudge("welcome_back", trigger=uptake.Inactive(after=7 * DAY)))
    client.track("u", "Page Viewed", timestamp=at(0 * DAY))
    client.track("u", "Page Viewed", timestamp=at(DAY))
    assert fired == []
    client.track("u", "Page Viewed", timestamp=at(DAY + gap))
    assert fired == (["welcome_back"] if fires else [])


def test_inactive_ignores_uptakes_own_events() -> None:
    client, fired = make(uptake.Nudge("welcome_back", trigger=uptake.Inactive(after=7 * DAY)))
    client.track("u", "Page Viewed", timestamp=at(0 * DAY))
    client.track("u", "Nudge Shown", {"nudge": "x"}, timestamp=at(10 * DAY))
    assert fired == []


def weeks_ago(n: int) -> dt.datetime:
    return T0 - n * 7 * DAY


def test_declining_fires_once_the_third_low_week_is_complete() -> None:
    client, fired = make(uptake.Nudge("miss_you", trigger=uptake.Declining()))
    for n in range(4, 8):  # four busy weeks: 4 days each
        for d in range(4):
            client.track("u", "Work", timestamp=weeks_ago(n) + d * DAY)
    for n in (3, 2):  # two quiet weeks: 1 day each
        client.track("u", "Work", timestamp=weeks_ago(n))
    assert fired == []
    client.track("u", "Work", timestamp=weeks_ago(1))  # third quiet week, not complete yet
    assert fired == []
    client.track("u", "Work", timestamp=T0)  # the next week: three complete quiet weeks
    assert fired == ["miss_you"]


# ---------------------------------------------------------------- caps


def test_max_shows_and_cooldown_count_fires() -> None:
    nudge = uptake.Nudge(
        "celebrate", trigger=uptake.Reached("activated"), max_shows=2, cooldown=DAY
    )
    client, fired = make(nudge, nudge_rate_limit=None)
    client.track("u", "Project Created", timestamp=at(0 * DAY))
    for h in range(1, 24 * 4):  # a trigger that keeps holding fires again after the cooldown
        client.track("u", "Page Viewed", timestamp=at(h * HOUR))
    assert fired == ["celebrate", "celebrate"]
    why = {e.name: e for e in client.explain_nudges("u", at=at(5 * DAY))}
    assert why["celebrate"].status == "pending" and why["celebrate"].fires == 2
    client.nudge_shown("u", "celebrate", timestamp=at(5 * DAY))
    assert client.explain_nudges("u", at=at(5 * DAY))[0].status == "max_shows"


def test_cooldown_edge() -> None:
    nudge = uptake.Nudge("c", trigger=uptake.Reached("activated"), max_shows=5, cooldown=DAY)
    client, fired = make(nudge, nudge_rate_limit=None)
    client.track("u", "Project Created", timestamp=at(0 * DAY))
    client.track("u", "Page Viewed", timestamp=at(DAY - MINUTE))
    assert fired == ["c"]
    explained = client.explain_nudges("u", at=at(DAY - MINUTE))[0]
    assert (explained.status, explained.until) == ("pending", at(DAY))
    client.track("u", "Page Viewed", timestamp=at(DAY))
    assert fired == ["c", "c"]


def test_unless_suppresses_and_explains() -> None:
    nudge = uptake.Nudge(
        "try_reports", trigger=uptake.EventCount("Dashboard", 3), unless=["reporting"]
    )
    client, fired = make(nudge)
    for d in range(2):
        client.track("u", "Report Created", timestamp=at(d * HOUR))
    for d in range(3):
        client.track("u", "Dashboard", timestamp=at(DAY + d * HOUR))
    assert fired == []
    why = client.explain_nudges("u", at=at(2 * DAY))[0]
    assert why.status == "suppressed" and "reporting" in why.detail


def test_a_pending_nudge_made_pointless_by_a_milestone_is_dropped() -> None:
    nudge = uptake.Nudge(
        "try_reports", trigger=uptake.EventCount("Dashboard", 1), unless=["reporting"]
    )
    client, _ = make(nudge)
    client.track("u", "Dashboard", timestamp=at(0 * DAY))
    assert [p.name for p in client.pending_nudges("u", at=at(MINUTE))] == ["try_reports"]
    for m in (2, 3):
        client.track("u", "Report Created", timestamp=at(m * MINUTE))
    client.track("u", "Dashboard", timestamp=at(2 * DAY))
    assert client.pending_nudges("u", at=at(2 * DAY)) == []


# ---------------------------------------------------------------- priority and rate limit


def test_priority_then_rate_limit_then_the_next_one_after_the_hour() -> None:
    low = uptake.Nudge("low", trigger=uptake.EventCount("Login", 1), priority=1)
    high = uptake.Nudge("high", trigger=uptake.EventCount("Login", 1), priority=10)
    client, fired = make(low, high)
    with capture_events(client) as events:
        client.track("u", "Login", timestamp=at(0 * DAY))
        client.track("u", "Page Viewed", timestamp=at(30 * MINUTE))  # still rate limited
        assert fired == ["high"]
        client.track("u", "Page Viewed", timestamp=at(HOUR))  # the hour is over
    assert fired == ["high", "low"]
    nudge_events = [
        (e["event"], e["properties"].get("nudge"), e["properties"].get("reason"))
        for e in events
        if e["event"].startswith("Nudge")
    ]
    assert nudge_events == [
        ("Nudge Fired", "high", "Login x1"),
        ("Nudge Suppressed", "low", "rate_limited"),  # recorded once, not per event
        ("Nudge Fired", "low", "Login x1"),
    ]
    assert [p.name for p in client.pending_nudges("u", at=at(HOUR))] == ["high", "low"]


def test_explain_shows_rate_limit_and_order() -> None:
    a = uptake.Nudge("a", trigger=uptake.EventCount("Login", 1), priority=2)
    b = uptake.Nudge("b", trigger=uptake.EventCount("Login", 1), priority=1)
    c = uptake.Nudge("c", trigger=uptake.EventCount("Never", 1))
    client, _ = make(a, b, c)
    client.track("u", "Page Viewed", timestamp=at(0 * DAY))
    client.track("u", "Login", timestamp=at(0 * DAY))  # counts Login, fires a
    explained = client.explain_nudges("u", at=at(10 * MINUTE))
    assert [(e.name, e.status) for e in explained] == [
        ("a", "pending"),
        ("b", "rate_limited"),
        ("c", "trigger_not_met"),
    ]
    assert explained[1].until == at(HOUR)
    assert "0 of 1" in explained[2].detail


def test_rate_limit_can_be_turned_off() -> None:
    a = uptake.Nudge("a", trigger=uptake.EventCount("Login", 1))
    b = uptake.Nudge("b", trigger=uptake.EventCount("Login", 1))
    client, fired = make(a, b, nudge_rate_limit=None)
    client.track("u", "Login", timestamp=T0)
    assert sorted(fired) == ["a", "b"]


# ---------------------------------------------------------------- holdouts


def test_holdout_proportion_and_stability_across_clients() -> None:
    nudge = uptake.Nudge("tip", trigger=uptake.EventCount("Login", 1), holdout=0.5)
    first, fired_first = make(nudge)
    second, fired_second = make(nudge)
    held: list[set[str]] = []
    for client in (first, second):
        with capture_events(client) as events:
            for u in range(1000):
                client.track(f"user-{u}", "Login", timestamp=T0)
        held.append({e["userId"] for e in events if e["event"] == "Nudge Held Out"})
    assert 450 <= len(held[0]) <= 550
    assert held[0] == held[1]  # the same users, whichever client decides
    assert len(fired_first) == len(fired_second) == 1000 - len(held[0])
    user = next(iter(held[0]))
    assert first.pending_nudges(user, at=T0) == []
    assert first.explain_nudges(user, at=T0)[0].status == "max_shows"  # held out once


def test_held_out_events_carry_the_goal() -> None:
    nudge = uptake.Nudge(
        "tip",
        trigger=uptake.EventCount("Login", 1),
        holdout=0.999,
        goal="Report Created",
        goal_within=7 * DAY,
    )
    client, fired = make(nudge)
    with capture_events(client) as events:
        client.track("u", "Login", timestamp=T0)
    assert fired == []
    (held,) = [e for e in events if e["event"] == "Nudge Held Out"]
    assert held["properties"]["goal"] == "Report Created"
    assert held["properties"]["goal_within_s"] == 7 * 86400


# ---------------------------------------------------------------- callbacks and outcomes


def test_callbacks_get_a_frozen_object_and_are_isolated(caplog: pytest.LogCaptureFixture) -> None:
    nudge = uptake.Nudge("tip", trigger=uptake.EventCount("Login", 1), payload={"text": "Hi"})
    client, fired = make(nudge)
    got: list[uptake.NudgeFired] = []

    @client.on_nudge("tip")
    def broken(n: uptake.NudgeFired) -> None:
        raise RuntimeError("host bug")

    client.on_nudge("tip")(got.append)
    with caplog.at_level(logging.ERROR, logger="uptake"):
        client.track("u", "Login", account_id="acme", timestamp=T0)  # does not raise
    assert "on_nudge callback" in caplog.text
    (n,) = got
    assert (n.name, n.user_id, n.account_id, n.timestamp) == ("tip", "u", "acme", T0)
    assert n.payload["text"] == "Hi" and n.reason == "Login x1"
    with pytest.raises(AttributeError):
        n.name = "other"  # type: ignore[misc]
    assert fired == ["tip"]


def test_shown_clicked_dismissed_and_snoozed() -> None:
    shown = uptake.Nudge("shown", trigger=uptake.EventCount("Login", 1), priority=4)
    clicked = uptake.Nudge("clicked", trigger=uptake.EventCount("Login", 1), priority=3)
    dismissed = uptake.Nudge(
        "dismissed", trigger=uptake.EventCount("Login", 1), priority=2, max_shows=9
    )
    snoozed = uptake.Nudge(
        "snoozed", trigger=uptake.EventCount("Login", 1), priority=1, max_shows=9
    )
    client, fired = make(shown, clicked, dismissed, snoozed, nudge_rate_limit=None)
    client.track("u", "Login", timestamp=T0)
    pending = client.pending_nudges("u", at=T0)
    assert [p.name for p in pending] == ["shown", "clicked", "dismissed", "snoozed"]
    with capture_events(client) as events:
        client.nudge_shown("u", "shown", timestamp=T0)
        client.nudge_clicked("u", "clicked", timestamp=T0)
        client.nudge_dismissed("u", "dismissed", timestamp=T0)
        client.nudge_dismissed("u", "snoozed", snooze=3 * DAY, timestamp=T0)
    assert [e["event"] for e in events] == [
        "Nudge Shown",
        "Nudge Clicked",
        "Nudge Dismissed",
        "Nudge Snoozed",
    ]
    assert events[3]["properties"] == {"nudge": "snoozed", "snooze_s": 3 * 86400}
    assert client.pending_nudges("u", at=T0) == []
    fired.clear()
    client.track("u", "Login", timestamp=at(2 * DAY))  # the snooze still runs
    assert fired == []
    assert {e.name: e.status for e in client.explain_nudges("u", at=at(2 * DAY))} == {
        "shown": "max_shows",
        "clicked": "max_shows",
        "dismissed": "dismissed",
        "snoozed": "snoozed",
    }
    client.track("u", "Login", timestamp=at(3 * DAY))
    assert fired == ["snoozed"]


def test_nudge_events_are_not_activity() -> None:
    client, _ = make(uptake.Nudge("tip", trigger=uptake.EventCount("Login", 1)))
    client.track("u", "Login", timestamp=T0)
    client.nudge_shown("u", "tip", timestamp=at(5 * DAY))
    assert client.engagement("u", at=at(5 * DAY)).last_seen == T0


# ---------------------------------------------------------------- audiences


def test_audience_by_traits() -> None:
    nudge = uptake.Nudge(
        "upgrade",
        trigger=uptake.EventCount("Limit Hit", 1),
        audience={"plan": ["free", "trial"], "country": "FR"},
    )
    client, fired = make(nudge)
    client.identify("free-fr", {"plan": "free", "country": "FR"})
    client.identify("pro-fr", {"plan": "pro", "country": "FR"})
    client.identify("trial-de", {"plan": "trial", "country": "DE"})
    for user in ("free-fr", "pro-fr", "trial-de", "unknown"):
        client.track(user, "Limit Hit", timestamp=T0)
    assert fired == ["upgrade"]
    assert client.explain_nudges("pro-fr", at=T0)[0].status == "not_in_audience"


def test_audience_callable_sees_milestones_and_tier(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, frozenset[str], str]] = []

    def active_low_tier(a: uptake.Audience) -> bool:
        seen.append((a.user_id, a.milestones, a.tier))
        return "activated" in a.milestones and a.tier == "low"

    def broken(a: uptake.Audience) -> bool:
        raise ValueError("bad predicate")

    good = uptake.Nudge("good", trigger=uptake.EventCount("Login", 1), audience=active_low_tier)
    bad = uptake.Nudge("bad", trigger=uptake.EventCount("Login", 1), audience=broken)
    client, fired = make(good, bad, nudge_rate_limit=None)
    client.track("u", "Project Created", timestamp=T0)
    with caplog.at_level(logging.ERROR, logger="uptake"):
        client.track("u", "Login", timestamp=T0)
    assert fired == ["good"]
    assert seen == [("u", frozenset({"activated"}), "low")]
    assert "audience of nudge 'bad' raised" in caplog.text


# ---------------------------------------------------------------- accounts, replay, simulate


def test_reached_can_wait_for_an_account_milestone() -> None:
    team = uptake.Milestone("team", features=2, scope="account")
    nudge = uptake.Nudge("team_ready", trigger=uptake.Reached("team"))
    client, fired = make(nudge, milestones=[team])
    client.feature_used("a", "reports", account_id="acme", timestamp=T0)
    client.feature_used("b", "alerts", account_id="acme", timestamp=at(HOUR))
    assert fired == ["team_ready"]  # for b, whose event reached it
    assert client.pending_nudges("b", account_id="acme", at=at(HOUR))[0].name == "team_ready"


def test_replay_counts_events_but_fires_nothing() -> None:
    client, fired = make(uptake.Nudge("tip", trigger=uptake.EventCount("Dashboard", 3)))
    history = [
        {
            "type": "track",
            "userId": "u",
            "event": "Dashboard",
            "timestamp": at(d * HOUR).isoformat(),
        }
        for d in range(2)
    ]
    client.replay(history)
    assert fired == []
    client.track("u", "Dashboard", timestamp=at(DAY))  # the third, counting history
    assert fired == ["tip"]


def test_simulate_reports_who_would_be_nudged_without_touching_the_client() -> None:
    client, fired = make(uptake.Nudge("live", trigger=uptake.Reached("activated")))
    history = []
    for u in range(20):
        for d in range(3):
            event = "Dashboard" if u % 2 == 0 else "Page Viewed"
            stamp = at(d * DAY + u * MINUTE).isoformat()
            history.append({"type": "track", "userId": f"u{u}", "event": event, "timestamp": stamp})
    history.append({"type": "identify", "userId": "u0"})  # skipped
    candidates = [
        uptake.Nudge("try_reports", trigger=uptake.EventCount("Dashboard", 2), priority=5),
        uptake.Nudge("also", trigger=uptake.EventCount("Dashboard", 2), max_shows=3),
    ]
    result = client.simulate(history, nudges=candidates)
    assert (result.events, result.skipped, result.users) == (60, 1, 20)
    reports = result.nudges["try_reports"]
    assert (reports.users, reports.fires, reports.first) == (10, 10, at(DAY))
    assert dict(reports.by_day) == {"2026-06-02": 10}
    also = result.nudges["also"]
    # Held back by the rate limit on day 2, fired when each user was next seen on day 3.
    assert (also.fires, also.rate_limited, also.first) == (10, 10, at(2 * DAY))
    assert "try_reports" in str(result)
    assert fired == [] and client.state("u0") is None  # nothing fired or stored
    with pytest.raises(uptake.ConfigurationError):
        client.simulate(history, nudges=[uptake.Nudge("x", trigger=uptake.Reached("nope"))])


# ---------------------------------------------------------------- shared store

WORKER = """
import datetime as dt, sys, uptake
store = uptake.SqliteStore(sys.argv[1])
nudge = uptake.Nudge("once", trigger=uptake.EventCount("Ping", 1), max_shows=1)
client = uptake.Client(send=False, store=store, nudges=[nudge], nudge_rate_limit=None)
fired = []
client.on_nudge()(lambda n: fired.append(n.user_id))
t0 = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
print("ready", flush=True)
sys.stdin.readline()  # the start barrier: every process is ready, go
for i in range(40):
    for u in range(25):
        client.track(f"user-{u}", "Ping", timestamp=t0 + dt.timedelta(seconds=i))
print(",".join(fired))
"""


def test_two_processes_sharing_a_store_never_exceed_max_shows(tmp_path: Path) -> None:
    path = tmp_path / "rules.db"
    uptake.SqliteStore(path)  # create it before the race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:  # a start barrier: both set up before either tracks, so they overlap
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    fired: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        fired += [u for u in out.strip().split(",") if u]
    assert sorted(fired) == sorted(f"user-{u}" for u in range(25))  # each user exactly once


# ---------------------------------------------------------------- found in review


def test_an_account_milestone_reaches_every_member_seen_afterwards() -> None:
    team = uptake.Milestone("team", features=2, scope="account")
    client, _ = make(uptake.Nudge("team_ready", trigger=uptake.Reached("team")), milestones=[team])
    got: list[str] = []
    client.on_nudge()(lambda n: got.append(n.user_id))
    client.feature_used("a", "reports", account_id="acme", timestamp=T0)
    client.feature_used("b", "alerts", account_id="acme", timestamp=at(HOUR))
    client.track("a", "Page Viewed", account_id="acme", timestamp=at(DAY))
    client.track("c", "Page Viewed", account_id="acme", timestamp=at(2 * DAY))
    assert got == ["b", "a", "c"]
    client.track("a", "Page Viewed", account_id="acme", timestamp=at(3 * DAY))  # once each
    assert got == ["b", "a", "c"]
    assert client.pending_nudges("d", account_id="acme", at=at(3 * DAY)) == []  # never seen


def test_declining_is_looked_at_in_a_new_week_after_a_late_sunday_event() -> None:
    client, fired = make(uptake.Nudge("miss_you", trigger=uptake.Declining()))
    for n in range(4, 8):
        for d in range(4):
            client.track("u", "Work", timestamp=weeks_ago(n) + d * DAY)
    for n in (3, 2, 1):
        client.track("u", "Work", timestamp=weeks_ago(n))
    client.track("u", "Work", timestamp=T0 - DAY + 2 * HOUR)  # Sunday 11:00 UTC
    assert fired == []
    client.track("u", "Work", timestamp=T0)  # Monday: three quiet weeks complete
    assert fired == ["miss_you"]


def test_a_new_nudge_set_looks_at_every_user_again(tmp_path: Path) -> None:
    path = tmp_path / "rules.db"
    old = uptake.Nudge("login", trigger=uptake.EventCount("Login", 1))
    first, _ = make(old, store=uptake.SqliteStore(path))
    first.track("u", "Login", timestamp=T0)
    late = uptake.Nudge("finish_setup", trigger=uptake.NotReached("activated", after=2 * DAY))
    second, fired = make(old, late, store=uptake.SqliteStore(path))  # the next deploy
    second.track("u", "Page Viewed", timestamp=at(5 * DAY))
    assert fired == ["finish_setup"]


def test_a_changed_trait_lets_a_waiting_nudge_through() -> None:
    nudge = uptake.Nudge("pro_tip", trigger=uptake.Reached("activated"), audience={"plan": "pro"})
    client, fired = make(nudge)
    client.identify("u", {"plan": "free"})
    client.track("u", "Project Created", timestamp=T0)
    client.track("u", "Page Viewed", timestamp=at(DAY))
    assert fired == []
    client.identify("u", {"plan": "pro"})
    client.track("u", "Page Viewed", timestamp=at(2 * DAY))
    assert fired == ["pro_tip"]


def test_inactive_fires_from_pending_nudges_too() -> None:
    client, fired = make(uptake.Nudge("welcome_back", trigger=uptake.Inactive(after=7 * DAY)))
    client.track("u", "Page Viewed", timestamp=T0)
    assert client.pending_nudges("u", at=at(3 * DAY)) == []
    assert [p.name for p in client.pending_nudges("u", at=at(10 * DAY))] == ["welcome_back"]
    assert fired == ["welcome_back"]


def test_a_late_first_event_brings_a_deadline_forward() -> None:
    nudge = uptake.Nudge("finish_setup", trigger=uptake.NotReached("activated", after=2 * DAY))
    client, fired = make(nudge)
    client.track("u", "Page Viewed", timestamp=at(10 * DAY))  # deadline: day 12
    client.track("u", "Signed Up", timestamp=T0)  # arrives late: first seen is day 0
    assert fired == []  # at day 0 the deadline (day 2) was still ahead
    client.track("u", "Page Viewed", timestamp=at(11 * DAY))
    assert fired == ["finish_setup"]


def test_held_out_users_use_up_the_rate_limit_like_the_others() -> None:
    a = uptake.Nudge("a", trigger=uptake.EventCount("Login", 1), priority=10, holdout=0.5)
    b = uptake.Nudge("b", trigger=uptake.EventCount("Login", 1))
    client, fired = make(a, b)
    with capture_events(client) as events:
        for u in range(200):
            client.track(f"user-{u}", "Login", timestamp=T0)
    assert "b" not in fired  # neither group gets b within the hour
    held = {e["userId"] for e in events if e["event"] == "Nudge Held Out"}
    suppressed = {e["userId"] for e in events if e["event"] == "Nudge Suppressed"}
    assert held and suppressed == {f"user-{u}" for u in range(200)}


def test_pending_nudges_for_unknown_visitors_stores_nothing() -> None:
    store = uptake.MemoryStore(max_users=3)
    client, _ = make(uptake.Nudge("tip", trigger=uptake.EventCount("Login", 1)), store=store)
    client.track("real", "Login", timestamp=T0)
    for n in range(10):
        assert client.pending_nudges(anonymous_id=f"visitor-{n}", at=T0) == []
    assert len(store) == 1 and client.state("real") is not None


def test_explain_survives_a_snooze_far_in_the_future() -> None:
    client, _ = make(uptake.Nudge("tip", trigger=uptake.EventCount("Login", 1), max_shows=2))
    client.track("u", "Login", timestamp=T0)
    client.nudge_dismissed("u", "tip", snooze=3650 * DAY, timestamp=T0)
    assert client.explain_nudges("u", at=at(DAY))[0].status == "snoozed"
    with pytest.raises(uptake.InvalidEventError, match="10 years"):
        client.nudge_dismissed("u", "tip", snooze=dt.timedelta(days=999_999))


def test_simulate_reads_traits_and_outcomes() -> None:
    client, _ = make()
    nudge = uptake.Nudge(
        "upgrade",
        trigger=uptake.EventCount("Limit Hit", 1),
        audience={"plan": "free"},
        max_shows=5,
        cooldown=HOUR,
    )
    history: list[dict[str, Any]] = [
        {"type": "identify", "userId": "free", "traits": {"plan": "free"}},
        {"type": "identify", "userId": "pro", "traits": {"plan": "pro"}},
    ]
    for user in ("free", "pro"):
        history.append({"type": "track", "userId": user, "event": "Limit Hit", "timestamp": T0})
    dismissed = {"nudge": "upgrade"}
    history.append(
        {
            "type": "track",
            "userId": "free",
            "event": "Nudge Dismissed",
            "properties": dismissed,
            "timestamp": at(MINUTE),
        }
    )
    history.append({"type": "track", "userId": "free", "event": "Limit Hit", "timestamp": at(DAY)})
    result = client.simulate(history, nudges=[nudge])
    assert (result.nudges["upgrade"].users, result.nudges["upgrade"].fires) == (1, 1)


class OneKeyAtATime(uptake.MemoryStore):
    """A store that, like Redis Cluster, changes one key per step."""

    atomic_many = False


def test_a_store_changing_one_key_at_a_time_decides_the_same() -> None:
    seen: list[str | None] = []

    def in_acme(a: uptake.Audience) -> bool:
        seen.append(a.account_id)
        return a.account_id == "acme"

    team = uptake.Milestone("team", features=2, scope="account")
    nudges = [
        uptake.Nudge("acme_tip", trigger=uptake.EventCount("Login", 1), audience=in_acme),
        uptake.Nudge("team_ready", trigger=uptake.Reached("team")),
    ]
    results = []
    for store in (uptake.MemoryStore(), OneKeyAtATime()):
        client, fired = make(*nudges, milestones=[team], store=store, nudge_rate_limit=None)
        client.track("a", "Login", account_id="acme", timestamp=T0)
        client.feature_used("a", "reports", account_id="acme", timestamp=at(HOUR))
        client.feature_used("b", "alerts", account_id="acme", timestamp=at(2 * HOUR))
        results.append(fired)
    assert results[0] == results[1] == ["acme_tip", "team_ready"]
    assert seen == ["acme", "acme"]


def test_pending_nudges_with_a_broken_store_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(uptake.MemoryStore):
        def get(self, key: str) -> Any:
            raise uptake.StoreUnavailable("down")

    client, _ = make(uptake.Nudge("tip", trigger=uptake.EventCount("Login", 1)), store=Broken())
    with caplog.at_level(logging.WARNING, logger="uptake"):
        for _ in range(20):
            assert client.pending_nudges("u", at=T0) == []
    assert caplog.text.count("pending nudges") == 1
    assert client.stats.rules_skipped == 0  # reads failed; no event was left out


def test_replay_keeps_traits_and_seats() -> None:
    nudge = uptake.Nudge("pro", trigger=uptake.EventCount("Login", 1), audience={"plan": "pro"})
    client, fired = make(nudge)
    result = client.replay(
        [
            {"type": "identify", "userId": "u", "traits": {"plan": "pro"}},
            {"type": "group", "userId": "u", "groupId": "acme", "traits": {"seats": 7}},
        ]
    )
    assert (result.applied, result.skipped) == (2, 0)
    client.track("u", "Login", account_id="acme", timestamp=T0)
    assert fired == ["pro"]
    assert client.engagement(account_id="acme", at=T0).seats == 7
