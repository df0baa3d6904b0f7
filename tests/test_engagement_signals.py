"""Engagement signals: tier changes and declines on event time, once per change."""

from __future__ import annotations

import ast
import datetime as dt
import random
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import uptake
from uptake._rulestate import SubjectState
from uptake.testing import capture_events

from .redis_server import RedisServer

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)  # a Monday morning
# Score = active days in the last 28 / 28 * 100: 3 days (11) are medium, 6 (21) high.
BY_DAYS = uptake.Engagement(
    weights={"frequency": 1}, account_weights={"frequency": 1}, high=20, medium=10
)


def make(**options: Any) -> tuple[uptake.Client, list[uptake.EngagementChange]]:
    options.setdefault("engagement", BY_DAYS)
    c = uptake.Client(send=False, **options)
    seen: list[uptake.EngagementChange] = []
    c.on_engagement_change()(seen.append)
    return c, seen


def on_days(c: uptake.Client, user: str, days: list[int], **kw: Any) -> None:
    for n in days:
        c.track(user, "Page Viewed", timestamp=T0 + n * DAY, **kw)


def brief(changes: list[uptake.EngagementChange]) -> list[tuple[Any, ...]]:
    return [
        (c.scope, c.kind, c.change, c.previous_tier, c.tier, c.score, c.timestamp) for c in changes
    ]


def test_a_tier_rises_and_drops_on_event_time() -> None:
    c, seen = make()
    with capture_events(c) as events:
        on_days(c, "u1", [0, 1, 2, 3, 4, 5])  # 3 days: medium; 6 days: high
        on_days(c, "u1", [30])  # days 3, 4, 5 and 30 in the window: medium
        on_days(c, "u1", [60])  # day 60 alone: low
    assert brief(seen) == [
        ("user", "tier", "rose", "low", "medium", 11, T0 + 2 * DAY),
        ("user", "tier", "rose", "medium", "high", 21, T0 + 5 * DAY),
        ("user", "tier", "dropped", "high", "medium", 14, T0 + 30 * DAY),
        ("user", "tier", "dropped", "medium", "low", 4, T0 + 60 * DAY),
    ]
    assert all(s.user_id == "u1" and s.account_id is None for s in seen)
    tiers = [e for e in events if e["event"] == "Engagement Tier Changed"]
    assert [e["properties"] for e in tiers][2] == {
        "scope": "user",
        "change": "dropped",
        "from": "high",
        "to": "medium",
        "score": 14,
        "declining": False,
    }
    assert [e["timestamp"][:10] for e in tiers] == [
        "2026-03-04",
        "2026-03-07",
        "2026-04-01",
        "2026-05-01",
    ]
    assert all(e["userId"] == "u1" for e in tiers)
    # uptake's own events are never activity: the signals changed no one's days.
    assert c.engagement("u1", at=T0 + 60 * DAY).active_days_28 == 1


def test_a_decline_starts_and_ends() -> None:
    c, _ = make(engagement=uptake.Engagement())
    declines: list[uptake.EngagementChange] = []
    c.on_engagement_change("user", kind="declining")(declines.append)
    with capture_events(c) as events:
        for week in range(4):  # 3 active days a week for 4 weeks: a baseline of 3
            on_days(c, "u1", [week * 7, week * 7 + 1, week * 7 + 2])
        on_days(c, "u1", [28, 35, 42])  # then 1 a week for three weeks
        on_days(c, "u1", [49, 50, 51])  # the next Monday: declining; back to 3 days
        on_days(c, "u1", [56])  # a week of 3 days among the last three: it ended
    assert [(d.change, d.declining, d.timestamp) for d in declines] == [
        ("started", True, T0 + 49 * DAY),
        ("ended", False, T0 + 56 * DAY),
    ]
    declining = [e["properties"] for e in events if e["event"] == "Engagement Declining"]
    assert [(p["scope"], p["change"], p["declining"]) for p in declining] == [
        ("user", "started", True),
        ("user", "ended", False),
    ]
    assert c.engagement("u1", at=T0 + 49 * DAY).declining


def test_each_change_is_signalled_once() -> None:
    c, seen = make()
    on_days(c, "u1", [0, 1, 2])
    for _ in range(5):  # the same day again and again: still medium, nothing new
        c.track("u1", "Page Viewed", timestamp=T0 + 2 * DAY + dt.timedelta(hours=1))
    c.feature_used("u1", "reports", timestamp=T0 + 2 * DAY + dt.timedelta(hours=2))
    assert c.check_engagement("u1", at=T0 + 2 * DAY + dt.timedelta(hours=3)) == []
    assert [s.tier for s in seen] == ["medium"]
    assert c.state("u1")["signalled"] != 0  # kept with the subject's state


def test_features_used_within_a_day_are_signalled_as_they_change_the_score() -> None:
    by_breadth = uptake.Engagement(weights={"breadth": 1}, core_features=["a", "b", "c"])
    c, seen = make(engagement=by_breadth)
    c.track("u1", "Page Viewed", timestamp=T0)
    for minute, feature in enumerate(["a", "a", "b", "b", "c"], start=1):
        c.feature_used("u1", feature, timestamp=T0 + dt.timedelta(minutes=minute))
    assert [(s.tier, s.score) for s in seen] == [("medium", 67), ("high", 100)]


def test_an_inactive_event_on_a_later_day_finds_the_time_passed() -> None:
    c, seen = make(
        inactive_events=["Email Opened"],
        milestones=[uptake.Milestone("reader", counts={"Email Opened": 100})],
    )
    on_days(c, "u1", [0, 1, 2])
    c.track("u1", "Email Opened", timestamp=T0 + 2 * DAY)  # same day, nothing new
    c.track("u1", "Email Opened", timestamp=T0 + 40 * DAY)  # counted, not activity
    assert [(s.change, s.tier, s.timestamp) for s in seen] == [
        ("rose", "medium", T0 + 2 * DAY),
        ("dropped", "low", T0 + 40 * DAY),
    ]


@pytest.mark.parametrize("scope", ["user", "account"])
def test_the_signals_follow_the_snapshot_at_every_event(scope: str) -> None:
    rng = random.Random(7)
    c, _ = make(engagement=uptake.Engagement(core_features=["a", "b", "c", "d"]))
    seen: list[uptake.EngagementChange] = []
    c.on_engagement_change(scope)(seen.append)  # type: ignore[arg-type]
    subject: dict[str, Any] = {"account_id": "acme"} if scope == "account" else {}
    expected: list[tuple[str, bool, dt.datetime]] = []
    where = ("low", False)
    day = 0
    t = T0
    while day < 150:
        for _ in range(rng.choice([1, 1, 2, 4])):  # a few events in a day
            t = max(t, T0 + day * DAY + dt.timedelta(minutes=rng.randrange(600)))
            user = f"u{rng.randrange(3)}" if scope == "account" else "u1"
            if rng.random() < 0.5:
                c.feature_used(user, rng.choice("abcd"), account_id="acme", timestamp=t)
            else:
                c.track(user, "Page Viewed", account_id="acme", timestamp=t)
            snap = c.engagement(**subject, at=t) if subject else c.engagement("u1", at=t)
            if (snap.tier, snap.declining) != where:
                where = (snap.tier, snap.declining)
                expected.append((*where, t))
            if scope == "account" and rng.random() < 0.2:  # seats change user breadth:
                c.group(user, "acme", {"seats": rng.choice([1, 3, 6])})  # found next event
        day += rng.choice([1, 1, 1, 2, 3] if day < 60 or day > 110 else [4, 6, 8])
    # One callback per kind that changed: merge a tier and a decline found together.
    got: list[tuple[str, bool, dt.datetime]] = []
    for s in seen:
        if got and got[-1][2] == s.timestamp:
            got.pop()
        got.append((s.tier, s.declining, s.timestamp))
    assert got == expected
    assert {s.kind for s in seen} == {"tier", "declining"}  # the timeline has both


def test_members_and_seats_change_an_account_within_a_day() -> None:
    by_members = uptake.Engagement(account_weights={"user_breadth": 1})
    c, seen = make(engagement=by_members)
    c.group("u0", "acme", {"seats": 3})
    for minute, user in enumerate(["u0", "u0", "u1", "u1", "u2"]):  # one day: 1, 2, 3 of 3
        c.track(
            user,
            "Page Viewed",
            account_id="acme",
            timestamp=T0 + minute * 60 * dt.timedelta(seconds=1),
        )
    c.group("u0", "acme", {"seats": 6})  # half the seats now: medium, found at the next event
    c.track("u0", "Page Viewed", account_id="acme", timestamp=T0 + dt.timedelta(hours=1))
    assert [(s.change, s.tier, s.score) for s in seen if s.scope == "account"] == [
        ("rose", "medium", 67),
        ("rose", "high", 100),
        ("dropped", "medium", 50),
    ]


def test_a_merge_is_evaluated_at_the_next_event() -> None:
    c, seen = make()
    on_days(c, "u1", [0, 3])
    for day in (1, 2):
        c.track(None, "Page Viewed", anonymous_id="v1", timestamp=T0 + day * DAY)
    c.alias("v1", "u1", timestamp=T0 + 3 * DAY)  # four days together: medium
    c.track("u1", "Page Viewed", timestamp=T0 + 3 * DAY + dt.timedelta(hours=1))
    assert [(s.user_id, s.change, s.tier) for s in seen] == [("u1", "rose", "medium")]


def test_account_changes_are_signalled_for_the_account() -> None:
    c, everything = make()
    accounts: list[uptake.EngagementChange] = []
    c.on_engagement_change("account")(accounts.append)
    for day, user in enumerate(["a", "b", "c"]):  # three days of the account, one each
        c.track(user, "Page Viewed", account_id="acme", timestamp=T0 + day * DAY)
    assert [(s.scope, s.tier, s.user_id, s.account_id) for s in accounts] == [
        ("account", "medium", "c", "acme")
    ]
    assert everything == accounts  # one active day each: every user is still low
    with pytest.raises(uptake.ConfigurationError, match="scope"):
        c.on_engagement_change("team")  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="never"):
        c.on_engagement_change(kind="tier", change="started")


def test_time_alone_is_found_by_an_explicit_check() -> None:
    c, seen = make()
    on_days(c, "u1", [0, 1, 2, 3, 4, 5])
    assert [s.tier for s in seen] == ["medium", "high"]
    with capture_events(c) as events:
        found = c.check_engagement("u1", at=T0 + 40 * DAY)  # no event for a month
        again = c.check_engagement("u1", at=T0 + 41 * DAY)
        account = c.check_engagement(account_id="nobody", at=T0 + 41 * DAY)
    assert brief(found) == [("user", "tier", "dropped", "high", "low", 0, T0 + 40 * DAY)]
    assert seen[-1] == found[0]  # called back too
    assert again == [] and account == []
    assert [e["event"] for e in events] == ["Engagement Tier Changed"]
    assert c.state(account_id="nobody") is None  # a check gives no one a state


def test_a_check_of_an_account_alone_is_sent_under_the_account() -> None:
    c, _ = make()
    on_days(c, "u1", [0, 1, 2, 3, 4, 5], account_id="acme")
    with capture_events(c) as events:
        [found] = c.check_engagement(account_id="acme", at=T0 + 40 * DAY)
    assert (found.scope, found.change, found.user_id, found.account_id) == (
        "account",
        "dropped",
        None,
        "acme",
    )
    [event] = events
    assert event["anonymousId"] == "account:acme"
    assert event["context"]["groupId"] == "acme"


def test_replay_then_tracking_gives_the_signals_of_tracking_it_all() -> None:
    history = [(d, 0) for d in (0, 1, 2, 3, 4, 5)] + [(30, 1), (31, 1), (60, 2)]
    live, live_seen = make()
    for day, _ in history:
        on_days(live, "u1", [day])
    replayed, replayed_seen = make()
    with capture_events(replayed) as events:
        result = replayed.replay(
            {
                "type": "track",
                "userId": "u1",
                "event": "Page Viewed",
                "timestamp": (T0 + day * DAY).isoformat(),
            }
            for day, part in history
            if part == 0
        )
    assert result.applied == 6 and replayed_seen == [] and events == []  # history is quiet
    for day, part in history:
        if part:
            on_days(replayed, "u1", [day])
    assert brief(replayed_seen) == brief(live_seen[2:])
    assert [s.change for s in live_seen] == ["rose", "rose", "dropped", "dropped"]


def test_state_kept_before_signals_is_read_and_gets_a_quiet_baseline() -> None:
    assert SubjectState.from_json({"first": 1.0, "last": 2.0}).signalled == 0
    store = uptake.MemoryStore()
    before = uptake.Client(send=False, store=store, engagement=BY_DAYS)
    on_days(before, "u1", [0, 1, 2, 3, 4, 5])  # high, with no signals on
    c, seen = make(store=store)
    on_days(c, "u1", [6])  # the first evaluation only records where u1 stands
    on_days(c, "u1", [40])  # then a drop is a change
    assert brief(seen) == [("user", "tier", "dropped", "high", "low", 4, T0 + 40 * DAY)]


def test_signals_can_be_turned_on_without_a_callback() -> None:
    by_breadth = uptake.Engagement(signals=True, weights={"breadth": 1})
    c = uptake.Client(send=False, engagement=by_breadth)
    with capture_events(c) as events:
        c.track("u1", "Page Viewed", timestamp=T0)
        c.feature_used("u1", "reports", timestamp=T0)  # every feature seen is used
    assert [e["properties"]["to"] for e in events if e["event"].startswith("Engagement")] == [
        "high"
    ]
    off = uptake.Client(send=False, engagement=True)
    with pytest.raises(uptake.ConfigurationError, match="signals are off"):
        off.check_engagement("u1")
    with pytest.raises(uptake.ConfigurationError, match="engagement is off"):
        uptake.Client(send=False, engagement=False).on_engagement_change()
    with pytest.raises(uptake.ConfigurationError, match="signals"):
        uptake.Engagement(signals="yes")  # type: ignore[arg-type]


def test_the_callback_runs_on_the_thread_whose_event_found_the_change() -> None:
    c, _ = make()
    threads: list[int] = []
    c.on_engagement_change()(lambda change: threads.append(threading.get_ident()))

    def work() -> None:
        on_days(c, "u1", [0, 1, 2])

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert threads == [worker.ident]
    c.check_engagement("u1", at=T0 + 40 * DAY)
    assert threads == [worker.ident, threading.get_ident()]


USERS = 10

# The parent gives each user two active days (low). Released together by a barrier, two
# processes track the same next four days for every user: the first of the day-2 events
# to be applied makes 3 days (medium), the first day-5 one 6 days (high), whichever
# process it is in. Each of those two changes must be signalled exactly once.
SCRIPT = """
import datetime as dt, multiprocessing as mp, sys, uptake
kind, where, prefix, users = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)

def client():
    if kind == "sqlite":
        store = uptake.SqliteStore(where, timeout=10.0)
    else:
        store = uptake.RedisStore(where, prefix=prefix, timeout=5.0)
    engagement = uptake.Engagement(weights={"frequency": 1}, high=20, medium=10)
    c = uptake.Client(send=False, store=store, engagement=engagement)
    seen = []
    c.on_engagement_change()(lambda s: seen.append((s.user_id, s.previous_tier, s.tier)))
    return c, seen

def run(barrier, out):
    c, seen = client()
    barrier.wait()
    for day in range(2, 6):
        for u in range(users):
            c.track(f"u{u}", "Page Viewed", timestamp=T0 + dt.timedelta(days=day))
    out.put((seen, c.stats.rules_skipped))

if __name__ == "__main__":
    c, seen = client()
    for u in range(users):
        for day in range(2):
            c.track(f"u{u}", "Page Viewed", timestamp=T0 + dt.timedelta(days=day))
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=run, args=(barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for more, skipped in results:
        assert skipped == 0, skipped
    print(repr((seen, [more for more, _ in results])))
"""


def run_race(kind: str, where: str, prefix: str = "") -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, where, prefix, str(USERS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    parent, children = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert parent == []  # two days: still low
    together = Counter(signal for seen in children for signal in seen)
    expected = Counter()
    for u in range(USERS):
        expected.update({(f"u{u}", "low", "medium"): 1, (f"u{u}", "medium", "high"): 1})
    assert together == expected


def test_two_processes_sharing_a_sqlite_store_signal_each_change_once(tmp_path: Path) -> None:
    run_race("sqlite", str(tmp_path / "rules.db"))


def test_two_processes_sharing_a_redis_store_signal_each_change_once(
    redis_server: RedisServer,
) -> None:
    run_race("redis", redis_server.url, f"signals-{uuid.uuid4().hex[:8]}:")


FORKED = """
import datetime as dt, os, sys, uptake
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
engagement = uptake.Engagement(weights={"frequency": 1}, high=20, medium=10)
c = uptake.Client(send=False, store=uptake.SqliteStore(sys.argv[1]), engagement=engagement,
                  milestones=[uptake.Milestone("seen", any_of=["Page Viewed"])])
got = []
c.on_engagement_change()(lambda s: got.append(s.tier))
c.on_milestone()(lambda r: got.append(r.milestone))
pid = os.fork()  # as a pre-loading web server does, after the app registered its callbacks
if pid == 0:
    for day in range(3):
        c.track("u1", "Page Viewed", timestamp=T0 + dt.timedelta(days=day))
    print(repr(got), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_callbacks_registered_before_a_fork_run_in_the_child(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path / "rules.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert ast.literal_eval(done.stdout.strip().splitlines()[-1]) == ["seen", "medium"]
