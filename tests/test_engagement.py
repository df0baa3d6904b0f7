"""The engagement snapshot: each component at the edges of its window, accounts, declining."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import uptake
from uptake.rules.calendar import count_days, days_in, mark_day, week_of

from .conftest import MakeStore

DAY = dt.timedelta(days=1)
# A Wednesday noon: the current ISO week began on Monday 2026-06-15.
NOW = dt.datetime(2026, 6, 17, 12, 0, tzinfo=dt.timezone.utc)


def client(**options: Any) -> uptake.Client:
    options.setdefault("engagement", True)
    return uptake.Client(send=False, **options)


def active_on(c: uptake.Client, user: str, days_ago: list[int], **kw: Any) -> None:
    for n in days_ago:
        c.track(user, "Page Viewed", timestamp=NOW - n * DAY, **kw)


# ---------------------------------------------------------------- day masks


def test_day_masks_hold_the_latest_days_and_ignore_older_ones() -> None:
    packed = 0
    for day in (100, 98, 130, 164):  # a 64-day mask ending on 164 starts on 101
        packed = mark_day(packed, day, 64)
    assert days_in(packed, 64) == [130, 164]
    assert mark_day(packed, 100, 64) == packed  # older than the mask covers: ignored
    assert days_in(mark_day(packed, 101, 64), 64) == [101, 130, 164]
    assert count_days(packed, 130, 164, 64) == 2
    assert count_days(packed, 131, 163, 64) == 0
    assert count_days(packed, 0, 10_000, 64) == 2
    assert count_days(0, 0, 10, 64) == 0
    assert week_of(dt.date(2026, 6, 15).toordinal() - dt.date(1970, 1, 1).toordinal()) == week_of(
        dt.date(2026, 6, 21).toordinal() - dt.date(1970, 1, 1).toordinal()
    )  # Monday and Sunday of one ISO week


# ---------------------------------------------------------------- user components


@pytest.mark.parametrize(
    ("days_ago", "active_28", "active_7"),
    [
        ([], 0, 0),
        ([0], 1, 1),
        ([6], 1, 1),  # the 7 days are today and the 6 before
        ([7], 1, 0),
        ([27], 1, 0),  # the 28 days are today and the 27 before
        ([28], 0, 0),
        ([0, 0, 0, 0], 1, 1),  # distinct days, not events
        (list(range(28)), 28, 7),
        (list(range(40)), 28, 7),
    ],
)
def test_frequency_counts_distinct_days_in_the_window(
    days_ago: list[int], active_28: int, active_7: int
) -> None:
    c = client()
    c.track("seed", "Seed", timestamp=NOW)  # so that an empty case still has a store entry
    active_on(c, "u", days_ago)
    snap = c.engagement("u", at=NOW)
    assert (snap.active_days_28, snap.active_days_7) == (active_28, active_7)
    assert snap.frequency == round(active_28 / 28, 4)


def test_breadth_and_depth_from_feature_days() -> None:
    c = client(engagement=uptake.Engagement(core_features=["reports", "dashboards", "alerts"]))
    for n in range(10):  # reports on 10 distinct days: capped at the target of 8
        c.feature_used("u", "reports", timestamp=NOW - n * DAY)
    for _ in range(50):  # a burst on one day is one day
        c.feature_used("u", "dashboards", timestamp=NOW - 2 * DAY)
    c.feature_used("u", "exports", timestamp=NOW - DAY)  # not core: depth counts it
    c.feature_used("u", "alerts", timestamp=NOW - 28 * DAY)  # outside the window
    snap = c.engagement("u", at=NOW)
    assert dict(snap.feature_days) == {"reports": 10, "dashboards": 1, "exports": 1}
    assert snap.breadth == round(2 / 3, 4)
    assert snap.depth == round((8 + 1 + 1) / 3 / 8, 4)


def test_breadth_without_core_features_is_over_the_features_seen() -> None:
    c = client()
    for name in ("a", "b", "c"):
        c.feature_used("u", name, timestamp=NOW - DAY)
    c.feature_used("u", "old", timestamp=NOW - 40 * DAY)
    assert c.engagement("u", at=NOW).breadth == 0.75


def test_score_weights_and_tiers() -> None:
    # Active every day with 4 features used on 8+ days: every component is 1.
    c = client()
    for n in range(28):
        for feature in ("a", "b", "c", "d"):
            c.feature_used("full", feature, timestamp=NOW - n * DAY)
    full = c.engagement("full", at=NOW)
    assert (full.score, full.tier) == (100, "high")
    # Active on 14 of 28 days, no features: frequency 0.5 only, worth 0.4 * 0.5.
    active_on(c, "half", list(range(0, 28, 2)))
    half = c.engagement("half", at=NOW)
    assert (half.frequency, half.breadth, half.depth) == (0.5, 0.0, 0.0)
    assert (half.score, half.tier) == (20, "low")
    # The same user under other weights and tiers.
    weighted = client(engagement=uptake.Engagement(weights={"frequency": 1}, high=90, medium=50))
    active_on(weighted, "half", list(range(0, 28, 2)))
    snap = weighted.engagement("half", at=NOW)
    assert (snap.score, snap.tier) == (50, "medium")


@pytest.mark.parametrize(
    ("score", "tier"), [(100, "high"), (70, "high"), (69, "medium"), (40, "medium"), (39, "low")]
)
def test_tier_thresholds(score: int, tier: str) -> None:
    assert uptake.Engagement().tier(score) == tier


# ---------------------------------------------------------------- declining


def weeks_ago(n: int, weekday: int) -> dt.datetime:
    """Noon on a weekday (0 = Monday) of the ISO week n weeks before NOW's."""
    monday = NOW - dt.timedelta(days=NOW.weekday())
    return monday - n * 7 * DAY + weekday * DAY


def user_with_weeks(active_per_week: list[int]) -> uptake.EngagementSnapshot:
    """A user active on the given days per complete week (oldest first, latest last week)."""
    c = client()
    for i, days in enumerate(active_per_week):
        for weekday in range(days):
            c.track("u", "Page Viewed", timestamp=weeks_ago(len(active_per_week) - i, weekday))
    c.track("u", "Page Viewed", timestamp=NOW)  # the current week never counts
    return c.engagement("u", at=NOW)


@pytest.mark.parametrize(
    ("weeks", "declining"),
    [
        ([4, 4, 4, 4, 3, 3, 3], True),  # 3 is 75% of 4: at the bound
        ([4, 4, 4, 4, 2, 1, 0], True),
        ([4, 4, 4, 4, 3, 3, 4], False),  # the latest week recovered
        ([4, 4, 4, 4, 4, 3, 3], False),  # only two weeks down
        ([2, 2, 2, 2, 1, 1, 1], True),  # a baseline of 2 is enough
        ([2, 2, 2, 1, 0, 0, 0], False),  # a baseline under 2 is not
        ([7, 7, 7, 7, 5, 5, 5], True),
        ([7, 7, 7, 7, 6, 5, 5], False),
    ],
)
def test_declining_compares_three_weeks_with_the_four_before(
    weeks: list[int], declining: bool
) -> None:
    snap = user_with_weeks(weeks)
    assert snap.weekly_activity[-7:] == tuple(weeks)
    assert snap.declining is declining


def test_the_current_week_does_not_count_towards_declining() -> None:
    c = client()
    for n in range(4, 8):
        for weekday in range(4):
            c.track("u", "Page Viewed", timestamp=weeks_ago(n, weekday))
    for n in range(1, 4):
        c.track("u", "Page Viewed", timestamp=weeks_ago(n, 0))
    assert c.engagement("u", at=NOW).declining
    # Busy days this week change nothing until the week is complete.
    for weekday in range(3):
        c.track("u", "Page Viewed", timestamp=weeks_ago(0, weekday))
    assert c.engagement("u", at=NOW).declining
    # A week later the busy week is one of the three.
    assert not c.engagement("u", at=NOW + 7 * DAY).declining


# ---------------------------------------------------------------- accounts


def test_account_components_seats_and_touchpoints() -> None:
    c = client(engagement=uptake.Engagement(touchpoints=["QBR Attended"], touchpoint_target=2))
    c.group("admin", "acme", {"seats": 10, "plan": "pro"})
    for n, user in enumerate(["a", "b", "c", "d"]):
        c.feature_used(user, "reports", account_id="acme", timestamp=NOW - n * DAY)
    c.track("e", "Page Viewed", account_id="acme", timestamp=NOW - 30 * DAY)  # not in 28
    c.track("csm", "QBR Attended", account_id="acme", timestamp=NOW - 60 * DAY)
    c.track("csm", "QBR Attended", account_id="acme", timestamp=NOW - 100 * DAY)  # too old
    snap = c.engagement(account_id="acme", at=NOW)
    assert snap.account_id == "acme" and snap.user_id is None
    assert snap.seats == 10
    assert snap.active_users_28 == 4  # a-d: e and the CSM were active earlier
    assert snap.user_breadth == 0.4
    assert snap.touchpoints == 0.5  # one touchpoint day in 90, of a target of 2
    assert snap.active_days_28 == 4
    assert dict(snap.feature_days) == {"reports": 4}
    weights = {"frequency": 0.2, "breadth": 0.15, "depth": 0.15, "user_breadth": 0.25}
    weights["touchpoints"] = 0.25
    parts = {
        "frequency": 4 / 28,
        "breadth": 1.0,
        "depth": 4 / 8,
        "user_breadth": 0.4,
        "touchpoints": 0.5,
    }
    assert snap.score == round(100 * sum(weights[k] * parts[k] for k in parts))


def test_account_components_without_data_are_left_out_of_the_score() -> None:
    c = client()  # no touchpoints declared
    for n in range(28):
        c.feature_used("a", "reports", account_id="acme", timestamp=NOW - n * DAY)
    snap = c.engagement(account_id="acme", at=NOW)
    assert snap.seats is None and snap.user_breadth is None and snap.touchpoints is None
    assert snap.score == 100  # frequency, breadth and depth all full, rescaled


def test_seats_that_are_not_a_count_are_ignored_quietly(caplog: pytest.LogCaptureFixture) -> None:
    c = client()
    c.feature_used("a", "reports", account_id="acme", timestamp=NOW)
    with caplog.at_level(logging.WARNING, logger="uptake"):
        for bad in (float("inf"), float("nan"), 0.5, -3, "ten", True):
            c.group("admin", "acme", {"seats": bad})
    assert caplog.records == []
    assert c.engagement(account_id="acme", at=NOW).seats is None
    c.group("admin", "acme", {"seats": 4.7})
    assert c.engagement(account_id="acme", at=NOW).seats == 4


def test_account_declining_uses_weekly_active_members() -> None:
    c = client()
    for n in range(4, 8):
        for user in ("a", "b", "c", "d"):
            c.track(user, "Page Viewed", account_id="acme", timestamp=weeks_ago(n, 2))
    for n in range(1, 4):
        for user in ("a", "b", "c"):  # three of four members: 75%
            c.track(user, "Page Viewed", account_id="acme", timestamp=weeks_ago(n, 2))
    snap = c.engagement(account_id="acme", at=NOW)
    assert snap.weekly_activity[-7:] == (4, 4, 4, 4, 3, 3, 3)
    assert snap.declining


# ---------------------------------------------------------------- the rest of the snapshot


def test_snapshot_carries_milestones_and_first_and_last_seen() -> None:
    c = client(
        milestones=[
            uptake.Milestone("activated", all_of=["Project Created"]),
            uptake.Milestone("invited", all_of=["Teammate Invited"], within=3 * DAY),
        ]
    )
    c.track("u", "Signed Up", timestamp=NOW - 10 * DAY)
    c.track("u", "Project Created", timestamp=NOW - 9 * DAY)
    c.track("u", "Session Started", timestamp=NOW)  # uptake's own: not activity
    snap = c.engagement("u", at=NOW)
    assert dict(snap.milestones_reached) == {"activated": NOW - 9 * DAY}
    assert snap.milestones_missed == ("invited",)
    assert (snap.first_seen, snap.last_seen) == (NOW - 10 * DAY, NOW - 9 * DAY)
    assert snap.at == NOW


def test_unknown_subjects_get_a_zero_snapshot() -> None:
    snap = client().engagement("nobody", at=NOW)
    assert (snap.score, snap.tier, snap.first_seen, snap.active_days_28) == (0, "low", None, 0)
    assert snap.weekly_activity == (0,) * 8


def test_anonymous_visitors_are_found_by_their_id() -> None:
    c = client()
    c.track(None, "Page Viewed", anonymous_id="anon-1", timestamp=NOW)
    assert c.engagement("anon-1", at=NOW).active_days_28 == 1


def test_days_follow_the_client_timezone() -> None:
    paris = client(timezone=ZoneInfo("Europe/Paris"))
    utc = client()
    # 21:30 and 22:30 UTC on one day are 23:30 and 00:30 in Paris: two days there.
    evening = dt.datetime(2026, 6, 16, 21, 30, tzinfo=dt.timezone.utc)
    for c in (paris, utc):
        c.track("u", "A", timestamp=evening)
        c.track("u", "A", timestamp=evening + dt.timedelta(hours=1))
    assert paris.engagement("u", at=NOW).active_days_28 == 2
    assert utc.engagement("u", at=NOW).active_days_28 == 1


def test_engagement_must_be_on_and_needs_one_subject() -> None:
    with pytest.raises(uptake.ConfigurationError, match="engagement is off"):
        uptake.Client(send=False).engagement("u")
    c = client()
    with pytest.raises(uptake.InvalidEventError, match="either"):
        c.engagement("u", account_id="acme")
    with pytest.raises(uptake.InvalidEventError, match="either"):
        c.engagement()


def test_engagement_is_on_with_milestones_unless_turned_off() -> None:
    milestones = [uptake.Milestone("a", all_of=["A"])]
    uptake.Client(send=False, milestones=milestones).engagement("u")
    with pytest.raises(uptake.ConfigurationError):
        uptake.Client(send=False, milestones=milestones, engagement=False).engagement("u")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": {"frequency": -1}}, "must be a finite number >= 0"),
        ({"weights": {"frequency": float("nan")}}, "finite number"),
        ({"weights": {"loyalty": 1}}, "unknown component 'loyalty'"),
        ({"weights": {"frequency": 0}}, "above 0"),
        ({"account_weights": {"touchpoints": "high"}}, "must be a finite number"),
        ({"high": 40, "medium": 70}, "medium < high"),
        ({"high": 101}, "high <= 100"),
        ({"depth_target": 0}, "positive int"),
        ({"core_features": []}, "must not be empty"),
        ({"core_features": "reports"}, "list of names"),
        ({"touchpoint_window": dt.timedelta(days=400)}, "1 to 365 days"),
        ({"touchpoint_target": 0}, "positive int"),
    ],
)
def test_bad_engagement_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.Engagement(**kwargs)
    with pytest.raises(uptake.ConfigurationError, match=r"uptake\.Engagement or a bool"):
        uptake.Client(send=False, engagement="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- stores and replay


def test_every_store_gives_the_same_snapshot(make_store: MakeStore) -> None:
    reference = client()
    stored = client(store=make_store())
    for c in (reference, stored):
        c.group("a", "acme", {"seats": 4})
        for n in range(0, 60, 3):
            c.feature_used("a", f"f{n % 4}", account_id="acme", timestamp=NOW - n * DAY)
            c.track("b", "Page Viewed", account_id="acme", timestamp=NOW - n * DAY)
    assert stored.engagement("a", at=NOW) == reference.engagement("a", at=NOW)
    assert stored.engagement(account_id="acme", at=NOW) == reference.engagement(
        account_id="acme", at=NOW
    )


def test_replay_gives_the_snapshot_live_tracking_gives() -> None:
    live = client()
    with uptake.testing.capture_events(live) as events:
        for n in range(45):
            if n % 3:
                live.feature_used("u", f"f{n % 5}", account_id="acme", timestamp=NOW - n * DAY)
    replayed = client()
    replayed.replay(reversed(events))  # in any order
    assert replayed.engagement("u", at=NOW) == live.engagement("u", at=NOW)
    assert replayed.engagement(account_id="acme", at=NOW) == live.engagement(
        account_id="acme", at=NOW
    )
