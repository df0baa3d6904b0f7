"""Milestones: validation, every rule kind at the edges of its window, scopes, callbacks."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

import uptake
from uptake.rules.milestones import MilestoneRules
from uptake.rules.state import SubjectState
from uptake.testing import capture_events

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)  # a Monday morning


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no criterion"),
        ({"all_of": "Project Created"}, "all_of must be a list"),
        ({"any_of": ["ok", ""]}, "non-empty event names"),
        ({"counts": {"Report Created": 0}}, "positive int"),
        ({"counts": {"Report Created": -2}}, "positive int"),
        ({"counts": [("Report Created", 3)]}, "counts must map"),
        ({"features": -1}, "features must be a non-negative int"),
        ({"active_days": 3}, "active_days needs within"),
        ({"active_days": 8, "within": 7 * DAY}, "cannot fit"),
        ({"all_of": ["A"], "within": dt.timedelta(0)}, "positive timedelta"),
        ({"all_of": ["A"], "scope": "team"}, "scope must be"),
    ],
)
def test_bad_milestones_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.Milestone("m", **kwargs)


def test_unknown_events_are_fine_but_names_must_be_unique() -> None:
    ok = uptake.Milestone("a", all_of=["Never Tracked Anywhere"])
    with pytest.raises(uptake.ConfigurationError, match=r"unique.*'a'"):
        uptake.Client(send=False, milestones=[ok, uptake.Milestone("a", any_of=["X"])])
    with pytest.raises(uptake.ConfigurationError, match=r"uptake\.Milestone"):
        uptake.Client(send=False, milestones=["activated"])  # type: ignore[list-item]


def test_on_milestone_refuses_unknown_names() -> None:
    client = uptake.Client(send=False, milestones=[uptake.Milestone("a", all_of=["X"])])
    with pytest.raises(uptake.ConfigurationError, match="no milestone named 'b'"):
        client.on_milestone("b")


# ---------------------------------------------------------------- the rules, table-driven


def run(milestone: uptake.Milestone, events: list[tuple[str, dt.datetime, str | None]]) -> Any:
    """Apply (event, time, feature) triples; return (reached {name: time}, state)."""
    rules = MilestoneRules([milestone])
    state = SubjectState()
    reached: dict[str, float] = {}
    for name, when, feature in events:
        for m, at, _ in rules.apply(state, name, when.timestamp(), True, feature):
            assert m.name not in reached, "a milestone is reached once"
            reached[m.name] = at
    return reached, state, rules


def ev(name: str, offset: dt.timedelta, feature: str | None = None) -> Any:
    return (name, T0 + offset, feature)


ACTIVATED = uptake.Milestone("m", all_of=["Project Created", "Teammate Invited"], within=14 * DAY)


@pytest.mark.parametrize(
    ("milestone", "events", "reached_at"),
    [
        # all_of within 14 days: at the deadline counts, a second later is missed
        (ACTIVATED, [ev("Project Created", 0 * DAY), ev("Teammate Invited", 14 * DAY)], 14 * DAY),
        (
            ACTIVATED,
            [
                ev("Project Created", 0 * DAY),
                ev("Teammate Invited", 14 * DAY + dt.timedelta(seconds=1)),
            ],
            None,
        ),
        (ACTIVATED, [ev("Project Created", 0 * DAY), ev("Project Created", 1 * DAY)], None),
        # any_of: the first of them
        (
            uptake.Milestone("m", any_of=["Export CSV", "Export PDF"]),
            [ev("Viewed", 0 * DAY), ev("Export PDF", 2 * DAY), ev("Export CSV", 3 * DAY)],
            2 * DAY,
        ),
        # counts: n-1 is not enough; the n-th occurrence reaches it
        (
            uptake.Milestone("m", counts={"Report Created": 3}),
            [ev("Report Created", d * DAY) for d in range(2)],
            None,
        ),
        (
            uptake.Milestone("m", counts={"Report Created": 3}),
            [ev("Report Created", d * DAY) for d in range(3)],
            2 * DAY,
        ),
        # features: distinct ones; using the same twice does not count twice
        (
            uptake.Milestone("m", features=2),
            [ev("Feature Used", 0 * DAY, "reports"), ev("Feature Used", 1 * DAY, "reports")],
            None,
        ),
        (
            uptake.Milestone("m", features=2),
            [ev("Feature Used", 0 * DAY, "reports"), ev("Feature Used", 1 * DAY, "alerts")],
            1 * DAY,
        ),
        # active_days=3 within 7 days: days 0, 3, 6 fit; days 0, 3, 7 do not
        (
            uptake.Milestone("m", active_days=3, within=7 * DAY),
            [ev("Any", 0 * DAY), ev("Any", 3 * DAY), ev("Any", 6 * DAY)],
            6 * DAY,
        ),
        (
            uptake.Milestone("m", active_days=3, within=7 * DAY),
            [ev("Any", 0 * DAY), ev("Any", 3 * DAY), ev("Any", 7 * DAY)],
            None,
        ),
        # ...but a later window can still complete it
        (
            uptake.Milestone("m", active_days=3, within=7 * DAY),
            [ev("Any", 0 * DAY), ev("Any", 3 * DAY), ev("Any", 7 * DAY), ev("Any", 8 * DAY)],
            8 * DAY,
        ),
        # the same day twice is one day
        (
            uptake.Milestone("m", active_days=2, within=7 * DAY),
            [ev("Any", 0 * DAY), ev("Any", dt.timedelta(hours=5))],
            None,
        ),
        # criteria combine: all must hold
        (
            uptake.Milestone("m", all_of=["Signed Up"], counts={"Report Created": 2}),
            [
                ev("Report Created", 0 * DAY),
                ev("Report Created", 1 * DAY),
                ev("Signed Up", 2 * DAY),
            ],
            2 * DAY,
        ),
    ],
)
def test_rules_at_their_edges(
    milestone: uptake.Milestone,
    events: list[tuple[str, dt.datetime, str | None]],
    reached_at: dt.timedelta | None,
) -> None:
    reached, _, _ = run(milestone, events)
    if reached_at is None:
        assert reached == {}
    else:
        assert reached == {"m": (T0 + reached_at).timestamp()}


def test_a_late_event_within_the_window_still_counts() -> None:
    # The invite happened on day 3 but arrives after a day-20 event: it still activates.
    events = [
        ev("Project Created", 0 * DAY),
        ev("Dashboard Viewed", 20 * DAY),
        ev("Teammate Invited", 3 * DAY),
    ]
    reached, _, _ = run(ACTIVATED, events)
    assert reached == {"m": (T0 + 3 * DAY).timestamp()}


def test_missed_after_the_deadline() -> None:
    _, state, rules = run(ACTIVATED, [ev("Project Created", 0 * DAY)])
    assert rules.missed_by(state, (T0 + 13 * DAY).timestamp()) == []
    assert rules.missed_by(state, (T0 + 15 * DAY).timestamp()) == ["m"]


def test_state_keeps_only_what_the_rules_need() -> None:
    milestone = uptake.Milestone("m", counts={"Report Created": 3}, active_days=2, within=7 * DAY)
    events = [ev("Report Created", d * DAY) for d in range(30)] + [ev("Ignored", 31 * DAY)]
    _, state, _ = run(milestone, events)
    assert state.to_json()["events"] == {
        "Report Created": [(T0 + d * DAY).timestamp() for d in range(3)]
    }
    assert state.reached == {"m": (T0 + 2 * DAY).timestamp()}
    assert state.days is not None and len(state.days) <= 2 * 7 - 1  # two windows, for late days


# ---------------------------------------------------------------- through the client


def make(*milestones: uptake.Milestone, **options: Any) -> uptake.Client:
    return uptake.Client(send=False, milestones=list(milestones), **options)


def test_callbacks_events_and_exactly_once() -> None:
    client = make(ACTIVATED)
    got: list[uptake.MilestoneReached] = []
    everything: list[str] = []
    client.on_milestone("m")(got.append)
    client.on_milestone()(lambda r: everything.append(r.milestone))
    with capture_events(client) as events:
        client.track("u1", "Project Created", timestamp=T0, account_id="acme")
        client.track("u1", "Teammate Invited", timestamp=T0 + 2 * DAY, account_id="acme")
        client.track("u1", "Teammate Invited", timestamp=T0 + 3 * DAY)
    assert everything == ["m"]
    (reached,) = got
    assert reached == uptake.MilestoneReached(
        milestone="m",
        user_id="u1",
        account_id="acme",
        timestamp=T0 + 2 * DAY,
        time_to_reach=2 * DAY,
    )
    sent = [e for e in events if e["event"] == "Milestone Reached"]
    assert len(sent) == 1
    assert sent[0]["properties"] == {"milestone": "m", "scope": "user", "time_to_reach_s": 172800.0}
    assert sent[0]["timestamp"] == "2026-03-04T09:00:00.000Z"
    names = [e["event"] for e in events]
    assert names.index("Milestone Reached") == names.index("Teammate Invited") + 1


def test_a_raising_callback_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    client = make(uptake.Milestone("m", any_of=["Go"]))
    later: list[str] = []

    @client.on_milestone("m")
    def broken(reached: uptake.MilestoneReached) -> None:
        raise RuntimeError("callback bug")

    client.on_milestone()(lambda r: later.append(r.milestone))
    with caplog.at_level(logging.ERROR, logger="uptake"):
        client.track("u1", "Go")  # returns normally
    assert later == ["m"]
    assert "callback" in caplog.text and "raised" in caplog.text


def test_uptakes_own_events_are_not_activity() -> None:
    client = make(uptake.Milestone("habit", active_days=2, within=7 * DAY))
    reached: list[str] = []
    client.on_milestone()(lambda r: reached.append(r.milestone))
    client.track("u1", "Real Work", timestamp=T0)
    client.track("u1", "Milestone Reached", timestamp=T0 + DAY)  # never activity
    client.track("u1", "Nudge Shown", timestamp=T0 + 2 * DAY)
    assert reached == []
    client.track("u1", "More Work", timestamp=T0 + 2 * DAY)
    assert reached == ["habit"]


def test_host_declared_inactive_events() -> None:
    client = make(
        uptake.Milestone("habit", active_days=2, within=7 * DAY), inactive_events=["Heartbeat"]
    )
    reached: list[str] = []
    client.on_milestone()(lambda r: reached.append(r.milestone))
    client.track("u1", "Real Work", timestamp=T0)
    client.track("u1", "Heartbeat", timestamp=T0 + DAY)
    assert reached == []


def test_account_scope_combines_users_and_fires_once() -> None:
    client = make(uptake.Milestone("team", features=2, scope="account"))
    reached: list[uptake.MilestoneReached] = []
    client.on_milestone("team")(reached.append)
    client.feature_used("ann", "reports", account_id="acme", timestamp=T0)
    client.feature_used("bob", "reports", account_id="acme", timestamp=T0 + DAY)
    assert reached == []
    client.feature_used("bob", "alerts", account_id="acme", timestamp=T0 + 2 * DAY)
    client.feature_used("cyd", "billing", account_id="acme", timestamp=T0 + 3 * DAY)
    client.feature_used("dan", "alerts", timestamp=T0 + 3 * DAY)  # no account: not counted
    assert [(r.user_id, r.account_id, r.time_to_reach) for r in reached] == [
        ("bob", "acme", 2 * DAY)
    ]


def test_anonymous_users_have_state_too() -> None:
    client = make(uptake.Milestone("m", any_of=["Go"]))
    reached: list[uptake.MilestoneReached] = []
    client.on_milestone()(reached.append)
    client.track(None, "Go", anonymous_id="visitor-7")
    assert reached[0].user_id == "visitor-7"


def test_memory_store_is_bounded_and_counts_evictions() -> None:
    store = uptake.MemoryStore(max_users=3)
    client = make(uptake.Milestone("m", counts={"Go": 2}), store=store)
    for user in ("a", "b", "c", "d"):
        client.track(user, "Go")
    assert len(store) == 3 and store.evicted == 1
    assert store.get("user:a") is None and store.get("user:d") is not None
    with pytest.raises(uptake.ConfigurationError, match="max_users"):
        uptake.MemoryStore(max_users=0)


def test_a_broken_store_never_breaks_track(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenStore(uptake.MemoryStore):
        def update(self, key: str, change: Any, *args: Any) -> Any:
            raise OSError("store unavailable")

        def update_many(self, keys: Any, change: Any, *args: Any) -> Any:
            raise OSError("store unavailable")

    client = make(uptake.Milestone("m", any_of=["Go"]), store=BrokenStore())
    with capture_events(client) as events, caplog.at_level(logging.ERROR, logger="uptake"):
        client.track("u1", "Go")
    assert [e["event"] for e in events] == ["Session Started", "Go"]
    assert "evaluating milestones" in caplog.text


def test_active_days_are_calendar_days_of_the_configured_zone() -> None:
    from zoneinfo import ZoneInfo

    # 23:30 and 00:30 UTC: one day apart in UTC, the same day in New York (18:30, 19:30).
    late = dt.datetime(2026, 3, 2, 23, 30, tzinfo=dt.timezone.utc)
    habit = uptake.Milestone("habit", active_days=2, within=7 * DAY)
    for zone, expected in ((None, ["habit"]), (ZoneInfo("America/New_York"), [])):
        client = make(habit, timezone=zone)
        reached: list[str] = []
        client.on_milestone()(lambda r, reached=reached: reached.append(r.milestone))
        client.track("u1", "Work", timestamp=late)
        client.track("u1", "Work", timestamp=late + dt.timedelta(hours=1))
        assert reached == expected, zone
    with pytest.raises(uptake.ConfigurationError, match="tzinfo"):
        make(habit, timezone="Europe/Paris")


# ---------------------------------------------------------------- edges found in review


def test_time_to_reach_counts_from_the_first_event_of_any_kind() -> None:
    client = make(uptake.Milestone("m", all_of=["Report Created"]))
    got: list[uptake.MilestoneReached] = []
    client.on_milestone()(got.append)
    client.track("u1", "Signed Up", timestamp=T0)  # not named by any milestone
    client.track("u1", "Report Created", timestamp=T0 + 3 * DAY)
    assert got[0].time_to_reach == 3 * DAY


def test_a_late_event_inside_the_deadline_still_reaches_it() -> None:
    milestone = uptake.Milestone("m", counts={"R": 2}, within=7 * DAY)
    events = [
        ev("R", 0 * DAY),
        ev("R", 7 * DAY + dt.timedelta(minutes=1)),  # too late...
        ev("R", 7 * DAY - dt.timedelta(minutes=1)),  # ...but this one, arriving late, is not
    ]
    reached, _, _ = run(milestone, events)
    assert reached == {"m": (T0 + 7 * DAY - dt.timedelta(minutes=1)).timestamp()}


def test_late_active_days_complete_an_earlier_window() -> None:
    milestone = uptake.Milestone("m", active_days=4, within=7 * DAY)
    order = [1, 2, 9, 5, 7]  # days 1, 2, 5 and 7 fit one 7-day window
    reached, _, _ = run(milestone, [ev("Any", d * DAY) for d in order])
    assert "m" in reached


def test_events_from_the_future_stay_out_of_the_rules() -> None:
    client = make(uptake.Milestone("habit", active_days=2, within=7 * DAY))
    reached: list[str] = []
    client.on_milestone()(lambda r: reached.append(r.milestone))
    now = dt.datetime.now(dt.timezone.utc)
    client.track("u1", "Clock Gone Wrong", timestamp=now + 400 * DAY)
    client.track("u1", "Work", timestamp=now - DAY)
    client.track("u1", "Work", timestamp=now)
    assert reached == ["habit"]


def test_a_count_added_to_the_rules_later_still_counts() -> None:
    first_rules = MilestoneRules([uptake.Milestone("a", all_of=["R"])])
    state = SubjectState()
    first_rules.apply(state, "R", T0.timestamp(), True, None)
    assert state.to_json()["events"] == {"R": T0.timestamp()}  # only the first time needed
    later_rules = MilestoneRules([uptake.Milestone("b", counts={"R": 3})])
    fired = []
    for d in range(1, 4):
        fired += later_rules.apply(state, "R", (T0 + d * DAY).timestamp(), True, None)
    assert [m.name for m, _, _ in fired] == ["b"]


def test_milestones_differing_only_in_counts_are_different() -> None:
    assert uptake.Milestone("m", counts={"R": 2}) != uptake.Milestone("m", counts={"R": 3})
    assert uptake.Milestone("m", counts={"R": 2}) == uptake.Milestone("m", counts={"R": 2})
