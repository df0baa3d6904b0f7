"""Nudge fatigue: a budget per user and channel, quiet hours in the user's time zone."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import uptake
from uptake.rules.nudges import NudgeRules
from uptake.rules.state import SubjectState
from uptake.testing import capture_events

from .conftest import MakeStore

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)  # a Monday
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(days=7)
NIGHT = (dt.time(21), dt.time(8))


def tip(name: str, event: str, **kwargs: Any) -> uptake.Nudge:
    return uptake.Nudge(name, trigger=uptake.EventCount(event, 1), **kwargs)


def recorder(client: uptake.Client) -> list[tuple[str, dt.datetime]]:
    fired: list[tuple[str, dt.datetime]] = []
    client.on_nudge()(lambda n: fired.append((n.name, n.timestamp)))
    return fired


def statuses(client: uptake.Client, user: str, at: dt.datetime) -> dict[str, str]:
    return {e.name: e.status for e in client.explain_nudges(user, at=at)}


# ---------------------------------------------------------------- budgets


def test_a_budget_caps_nudges_across_nudges_in_a_rolling_window() -> None:
    nudges = [tip("a", "A", priority=3), tip("b", "B", priority=2), tip("c", "C", priority=1)]
    client = uptake.Client(
        send=False, nudges=nudges, nudge_rate_limit=None, nudge_budget=uptake.NudgeBudget(2, WEEK)
    )
    fired = recorder(client)
    with capture_events(client) as events:
        client.track("u", "A", timestamp=T0)
        client.track("u", "B", timestamp=T0 + DAY)
        client.track("u", "C", timestamp=T0 + 2 * DAY)  # spent: held back, recorded
        client.track("u", "C", timestamp=T0 + 3 * DAY)  # ...once per spent budget
    assert [name for name, _ in fired] == ["a", "b"]
    suppressed = [e["properties"] for e in events if e["event"] == "Nudge Suppressed"]
    assert suppressed == [{"nudge": "c", "reason": "over_budget"}]
    (why,) = [e for e in client.explain_nudges("u", at=T0 + 3 * DAY) if e.name == "c"]
    assert why.status == "over_budget"
    assert why.until == T0 + WEEK  # when the first fire leaves the window
    assert "2 in_app nudges per 7 days" in why.detail
    # Time alone frees the budget: c fires when the user is next seen after it.
    assert [n.name for n in client.pending_nudges("u", at=T0 + WEEK - MINUTE)] == ["a", "b"]
    assert [n.name for n in client.pending_nudges("u", at=T0 + WEEK)] == ["a", "b", "c"]
    assert fired[-1] == ("c", T0 + WEEK)


def test_channels_have_budgets_and_rate_limits_of_their_own() -> None:
    nudges = [
        tip("tooltip", "Login", priority=2),
        tip("banner", "Login", priority=1),
        tip("digest", "Login", channel="email", priority=3),
        tip("reminder", "Login", channel="email"),
    ]
    budgets = [uptake.NudgeBudget(1, DAY), uptake.NudgeBudget(1, WEEK, channel="email")]
    client = uptake.Client(send=False, nudges=nudges, nudge_budget=budgets)
    fired = recorder(client)
    client.track("u", "Login", timestamp=T0)
    # One of each channel at once: the email did not use up the in-product budget (nor
    # the hourly rate limit, which is per channel too).
    assert [name for name, _ in fired] == ["digest", "tooltip"]
    later = T0 + DAY + HOUR
    assert statuses(client, "u", later) == {
        "digest": "pending",  # fired once (max_shows), not shown yet
        "tooltip": "pending",
        "banner": "would_fire",  # the in-app day is over
        "reminder": "over_budget",  # one email a week, and its own daily budget
    }
    client.track("u", "Page Viewed", timestamp=later)
    assert [name for name, _ in fired] == ["digest", "tooltip", "banner"]
    # Callbacks and pending nudges say where each goes; a page renders its own channel.
    pending = client.pending_nudges("u", at=later)
    assert [(n.name, n.channel) for n in pending] == [
        ("digest", "email"),
        ("tooltip", "in_app"),
        ("banner", "in_app"),
    ]
    in_app = client.pending_nudges("u", at=later, channel="in_app")
    assert [n.name for n in in_app] == ["tooltip", "banner"]
    with pytest.raises(uptake.InvalidEventError, match="channel"):
        client.pending_nudges("u", channel=1)  # type: ignore[arg-type]


def test_held_out_fires_spend_the_budget_like_fires() -> None:
    held = uptake.Nudge("held", trigger=uptake.EventCount("A", 1), holdout=0.5, priority=1)
    user = next(f"user-{i}" for i in range(100) if held.held_out(f"user-{i}"))
    client = uptake.Client(
        send=False,
        nudges=[held, tip("other", "B")],
        nudge_rate_limit=None,
        nudge_budget=uptake.NudgeBudget(1, DAY),
    )
    with capture_events(client) as events:
        client.track(user, "A", timestamp=T0)
        client.track(user, "B", timestamp=T0 + HOUR)
    assert [(e["event"], e["properties"]["nudge"]) for e in events if "Nudge" in e["event"]] == [
        ("Nudge Held Out", "held"),
        ("Nudge Suppressed", "other"),
    ]


def test_budgets_of_a_visitor_and_their_user_add_up_when_they_merge() -> None:
    client = uptake.Client(
        send=False,
        nudges=[tip("a", "A"), tip("b", "B"), tip("c", "C")],
        nudge_rate_limit=None,
        nudge_budget=uptake.NudgeBudget(2, WEEK),
    )
    fired = recorder(client)
    client.track(None, "A", anonymous_id="visitor", timestamp=T0)
    client.track("u", "B", timestamp=T0 + HOUR)
    client.alias("visitor", "u", timestamp=T0 + 2 * HOUR)
    client.track("u", "C", timestamp=T0 + 3 * HOUR)
    assert [name for name, _ in fired] == ["a", "b"]
    assert statuses(client, "u", T0 + 3 * HOUR)["c"] == "over_budget"


def test_simulate_counts_what_the_budget_and_quiet_hours_hold_back() -> None:
    client = uptake.Client(
        send=False,
        nudges=[tip("a", "A")],
        nudge_rate_limit=None,
        nudge_budget=uptake.NudgeBudget(1, WEEK),
        quiet_hours=NIGHT,
    )
    history = [
        {"type": "track", "userId": "u", "event": "B", "timestamp": t.isoformat()}
        for t in (T0 + 13 * HOUR, T0 + 14 * HOUR, T0 + DAY, T0 + DAY + 2 * HOUR)
    ]
    result = client.simulate(history, [tip("b", "B", max_shows=5, cooldown=HOUR)])
    b = result.nudges["b"]
    # 22:00 and 23:00 UTC: deferred (recorded once a night); 09:00 fires; 11:00 the
    # week's budget is spent.
    assert (b.fires, b.quiet_hours, b.over_budget, b.rate_limited) == (1, 1, 1, 0)


# ---------------------------------------------------------------- quiet hours

NEW_YORK = ZoneInfo("America/New_York")  # clocks go forward on 2026-03-08, back on 11-01


@pytest.mark.parametrize("day", [dt.date(2026, 3, 8), dt.date(2026, 11, 1)])
def test_quiet_hours_follow_the_users_time_zone_across_a_dst_change(day: dt.date) -> None:
    back = uptake.Nudge("welcome_back", trigger=uptake.Inactive(after=3 * DAY))
    client = uptake.Client(send=False, nudges=[back], quiet_hours=NIGHT)
    fired = recorder(client)
    client.identify("u", {"timezone": "America/New_York"})
    client.track("u", "Login", timestamp=dt.datetime(2026, 2, 1, 12, tzinfo=dt.timezone.utc))
    # Back after weeks away at 23:00 the evening before the clocks change: deferred (an
    # Inactive trigger is a moment: it no longer holds at the next event).
    evening = dt.datetime.combine(day - DAY, dt.time(23), tzinfo=NEW_YORK)
    eight = dt.datetime.combine(day, dt.time(8), tzinfo=NEW_YORK)
    assert evening.utcoffset() != eight.utcoffset()  # the night crosses the change
    with capture_events(client) as events:
        client.track("u", "Login", timestamp=evening)
    assert fired == []
    assert [e["properties"]["reason"] for e in events if e["event"] == "Nudge Suppressed"] == [
        "quiet_hours"
    ]
    (why,) = client.explain_nudges("u", at=evening + MINUTE)
    assert (why.status, why.until) == ("quiet_hours", eight)
    assert "America/New_York" in why.detail
    # 07:59 in New York is day in UTC: still quiet for this user. 08:00 on the new offset
    # (not the old one) ends it, and the deferred nudge fires when the user is next seen.
    assert client.pending_nudges("u", at=eight - MINUTE) == []
    (deferred,) = client.explain_nudges("u", at=eight)
    assert deferred.status == "would_fire" and "quiet hours" in deferred.detail
    assert [n.name for n in client.pending_nudges("u", at=eight)] == ["welcome_back"]
    assert fired == [("welcome_back", eight)]


def test_a_deferred_nudge_not_seen_before_the_next_quiet_hours_is_skipped() -> None:
    back = uptake.Nudge("welcome_back", trigger=uptake.Inactive(after=3 * DAY))
    client = uptake.Client(send=False, nudges=[back], quiet_hours=NIGHT)  # UTC: no tz trait
    fired = recorder(client)
    client.track("u", "Login", timestamp=T0)
    client.track("u", "Login", timestamp=T0 + 4 * DAY + 13 * HOUR)  # 22:00 UTC
    assert statuses(client, "u", T0 + 5 * DAY - 2 * HOUR)["welcome_back"] == "quiet_hours"
    assert statuses(client, "u", T0 + 5 * DAY + 11 * HOUR)["welcome_back"] == "would_fire"
    # Not seen during the next day: at 21:00 the deferral lapses.
    assert statuses(client, "u", T0 + 5 * DAY + 12 * HOUR)["welcome_back"] == "trigger_not_met"
    client.track("u", "Login", timestamp=T0 + 6 * DAY)
    assert fired == []


def test_quiet_hours_of_one_channel_leave_the_others_alone() -> None:
    nudges = [tip("tooltip", "Login"), tip("digest", "Login", channel="email", priority=1)]
    quiet = uptake.QuietHours(dt.time(22), dt.time(7), channel="email")
    client = uptake.Client(send=False, nudges=nudges, quiet_hours=quiet, timezone=NEW_YORK)
    fired = recorder(client)
    late = dt.datetime.combine(dt.date(2026, 6, 1), dt.time(23), tzinfo=NEW_YORK)
    client.track("u", "Login", timestamp=late)  # the client's time zone (no trait)
    assert fired == [("tooltip", late)]
    seven = dt.datetime.combine(dt.date(2026, 6, 2), dt.time(7), tzinfo=NEW_YORK)
    client.track("u", "Page Viewed", timestamp=seven - MINUTE)
    assert len(fired) == 1
    client.track("u", "Page Viewed", timestamp=seven)  # a state trigger: still holds
    assert fired == [("tooltip", late), ("digest", seven)]


def test_a_time_zone_trait_that_is_not_a_zone_falls_back_to_the_clients(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = uptake.Client(send=False, nudges=[tip("a", "A")], quiet_hours=NIGHT)
    client.identify("u", {"timezone": "Mars/Olympus_Mons", "plan": "pro"})
    with caplog.at_level(logging.WARNING, logger="uptake"):
        client.track("u", "A", timestamp=T0 + 13 * HOUR)  # 22:00 UTC
    assert "Mars/Olympus_Mons" in caplog.text
    assert statuses(client, "u", T0 + 13 * HOUR) == {"a": "quiet_hours"}
    state = client.state("u")  # only the trait quiet hours read is kept
    assert state is not None and state["traits"] == {"timezone": "Mars/Olympus_Mons"}


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nudge_budget": 3}, "nudge_budget must be"),
        ({"nudge_budget": [uptake.NudgeBudget(1, DAY), "x"]}, "must hold uptake.NudgeBudget"),
        ({"nudge_budget": uptake.NudgeBudget(1, DAY, channel="sms")}, "no nudge uses it"),
        ({"quiet_hours": (dt.time(21),)}, "must hold uptake.QuietHours"),
        ({"quiet_hours": "21-8"}, "quiet_hours must be"),
        ({"quiet_hours": [uptake.QuietHours(*NIGHT)] * 2}, "given twice"),
        ({"quiet_hours": uptake.QuietHours(*NIGHT, channel="push")}, "no nudge uses it"),
    ],
)
def test_bad_fatigue_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.Client(send=False, nudges=[tip("a", "A")], **kwargs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: uptake.NudgeBudget(0, DAY), "positive int"),
        (lambda: uptake.NudgeBudget(True, DAY), "positive int"),
        (lambda: uptake.NudgeBudget(1, dt.timedelta(0)), "positive timedelta"),
        (lambda: uptake.NudgeBudget(1, DAY, channel=""), "channel"),
        (lambda: uptake.QuietHours(dt.time(8), dt.time(8)), "another time"),
        (lambda: uptake.QuietHours(dt.time(21, tzinfo=dt.timezone.utc), dt.time(8)), "tzinfo"),
        (lambda: uptake.QuietHours(21, 8), "datetime.time"),
        (lambda: uptake.QuietHours(*NIGHT, trait=""), "trait"),
        (lambda: tip("a", "A", channel=""), "channel"),
    ],
)
def test_bad_fatigue_values_are_refused(build: Any, message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        build()


def test_without_fatigue_a_nudge_set_keeps_its_fingerprint() -> None:
    """Stored users are not all looked at afresh after an upgrade that changes nothing."""
    nudges = [tip("a", "A", cooldown=HOUR), uptake.Nudge("b", trigger=uptake.Inactive(DAY))]
    rules = NudgeRules(nudges, rate_limit=None, declining=None)
    before = hashlib.blake2b(
        repr([(n.name, n.trigger, n.start, n.end, n.cooldown) for n in rules.nudges]).encode(),
        digest_size=6,
    ).hexdigest()
    assert rules.fingerprint == before
    email = NudgeRules([tip("a", "A", channel="email")], rate_limit=None, declining=None)
    assert (
        email.fingerprint
        != NudgeRules([tip("a", "A")], rate_limit=None, declining=None).fingerprint
    )


# ---------------------------------------------------------------- stores


def _restore(state: SubjectState, old: dict[str, Any]) -> None:
    saved = SubjectState.from_json(old)
    for slot in ("first", "last", "due", "nudges"):
        setattr(state, slot, getattr(saved, slot))


def test_state_written_before_budgets_existed_is_read(make_store: MakeStore) -> None:
    store = make_store()
    t0 = T0.timestamp()
    old = {  # one fire of "a" at T0, as the version before channels and budgets wrote it
        "first": t0,
        "last": t0,
        "due": None,
        "nudges": {"\x00last": t0, "\x00cfg": "0ld", "a": [1, t0, False, None, None]},
    }
    store.update("user:u", _restore, old)
    client = uptake.Client(
        send=False,
        store=store,
        nudges=[tip("a", "A"), tip("b", "B"), tip("c", "C")],
        nudge_budget=uptake.NudgeBudget(1, DAY),
    )
    fired = recorder(client)
    client.track("u", "B", timestamp=T0 + 30 * MINUTE)  # the old fire's rate limit holds
    assert statuses(client, "u", T0 + 30 * MINUTE)["b"] == "rate_limited"
    client.track("u", "B", timestamp=T0 + 2 * HOUR)  # budgets count from the upgrade on
    client.track("u", "C", timestamp=T0 + 3 * HOUR)
    assert [name for name, _ in fired] == ["b"]
    assert statuses(client, "u", T0 + 3 * HOUR) == {
        "a": "trigger_not_met",  # (counts start from the upgrade too)
        "b": "pending",
        "c": "over_budget",
    }


def test_budgets_and_quiet_hours_hold_on_every_store(make_store: MakeStore) -> None:
    store = make_store()
    settings: dict[str, Any] = {
        "nudges": [tip("a", "A"), tip("b", "B"), tip("mail", "A", channel="email")],
        "nudge_budget": uptake.NudgeBudget(1, WEEK),
        "quiet_hours": uptake.QuietHours(*NIGHT, channel="email"),
        "nudge_rate_limit": None,
    }
    first = uptake.Client(send=False, store=store, **settings)
    second = uptake.Client(send=False, store=store, **settings)  # as another process's
    first_fired, second_fired = recorder(first), recorder(second)
    first.identify("u", {"timezone": "Asia/Tokyo"})
    first.track("u", "A", timestamp=T0 + 4 * HOUR)  # 22:00 in Tokyo: the email waits
    second.track("u", "B", timestamp=T0 + 5 * HOUR)  # the budget is spent, in the store
    assert [n for n, _ in first_fired] == ["a"] and second_fired == []
    assert statuses(second, "u", T0 + 5 * HOUR) == {
        "a": "pending",
        "b": "over_budget",
        "mail": "quiet_hours",
    }
    morning = dt.datetime(2026, 6, 2, 8, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert [n.name for n in second.pending_nudges("u", at=morning)] == ["a", "mail"]
    assert [n for n, _ in second_fired] == ["mail"]


SCRIPT = """
import sys, datetime as dt, uptake
store = uptake.SqliteStore(sys.argv[1])
events = sys.argv[2].split(",")
nudges = [uptake.Nudge(e, trigger=uptake.EventCount(e, 1)) for e in "ABCD"]
client = uptake.Client(send=False, store=store, nudges=nudges, nudge_rate_limit=None,
                       nudge_budget=uptake.NudgeBudget(2, dt.timedelta(days=7)))
client.on_nudge()(lambda n: print(n.user_id, n.name, flush=True))
t0 = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
for user in range(20):
    for i, event in enumerate(events):
        client.track(f"user-{user}", event, timestamp=t0 + dt.timedelta(minutes=i))
"""


def test_two_processes_sharing_a_store_keep_one_budget(tmp_path: Path) -> None:
    path = str(tmp_path / "rules.db")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, path, order], stdout=subprocess.PIPE, text=True
        )
        for order in ("A,B,C,D", "D,C,B,A")
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    fires = Counter(line.split()[0] for out in outputs for line in out.splitlines())
    assert fires == {f"user-{u}": 2 for u in range(20)}
