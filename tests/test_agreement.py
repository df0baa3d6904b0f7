"""The SDK and the report share one set of definitions: they must agree on every account.

Random weight sets (a single component, zero weights, only ``user_breadth``) and an
export with Segment ``page`` and ``screen`` calls, replayed into a client and read by the
report: every account's score, tier and components are equal.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

import uptake
from uptake.collector.metrics import compute
from uptake.collector.sources import from_events
from uptake.definitions import PAGE_EVENT, activity_name, compose_score, parse_track
from uptake.rules.engagement import ACCOUNT_COMPONENTS, Engagement

START = dt.datetime(2026, 2, 2, tzinfo=dt.timezone.utc)
END = dt.date(2026, 3, 31)


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def export(seed: int) -> list[dict[str, Any]]:
    """A Segment-style export: track, page and screen calls, groups with seats."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(40):
        account = f"acct{u % 6}"
        for day in range(rng.randrange(0, 40), 58):
            if rng.random() < 0.5:
                continue
            t = START + dt.timedelta(days=day, minutes=rng.uniform(0, 1439))
            roll = rng.random()
            base = {"userId": f"u{u}", "timestamp": iso(t), "context": {"groupId": account}}
            if roll < 0.3:
                events.append({"type": "page", "name": "Pricing", **base})
            elif roll < 0.4:
                events.append({"type": "screen", "name": "Home", **base})
            elif roll < 0.8:
                feature = rng.choice(["reports", "alerts", "exports"])
                props = {"feature": feature}
                events.append(
                    {"type": "track", "event": "Feature Used", "properties": props, **base}
                )
            else:
                events.append({"type": "track", "event": "QBR Attended", **base})
    for a in range(6):
        if a % 3:  # some accounts with seats, some without
            events.append(
                {
                    "type": "group",
                    "userId": f"u{a}",
                    "groupId": f"acct{a}",
                    "timestamp": iso(START),
                    "traits": {"seats": 2 + a},
                }
            )
    return sorted(events, key=lambda e: e["timestamp"])


def weight_sets(seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    sets: list[dict[str, float]] = [{"user_breadth": 1.0}, {"touchpoints": 2.0}]
    sets += [{name: 1.0} for name in ACCOUNT_COMPONENTS]
    for _ in range(6):
        chosen = rng.sample(ACCOUNT_COMPONENTS, rng.randint(1, len(ACCOUNT_COMPONENTS)))
        weights = {name: rng.choice([0.0, 0.1, 0.25, 1.0, 3.0]) for name in chosen}
        if not any(weights.values()):
            weights[chosen[0]] = 1.0
        sets.append(weights)
    return sets


@pytest.mark.parametrize("weights", weight_sets(5), ids=lambda w: ",".join(sorted(w)))
def test_sdk_snapshot_and_report_agree_on_every_account(weights: dict[str, float]) -> None:
    events = export(3)
    config = Engagement(account_weights=weights, touchpoints=["QBR Attended"])
    client = uptake.Client(send=False, engagement=config)
    result = client.replay(events)
    assert result.skipped == 0  # page and screen calls are activity, not skipped
    report = compute(from_events(events), engagement=config, until=END)
    at = dt.datetime.combine(END, dt.time(23, 59, 59), dt.timezone.utc)
    assert len(report.accounts_engagement) == 6
    for a in report.accounts_engagement:
        snap = client.engagement(account_id=a.account, at=at)
        assert (a.score, a.tier, a.active_users_28, a.declining) == (
            snap.score,
            snap.tier,
            snap.active_users_28,
            snap.declining,
        ), a.account
        assert (a.frequency, a.breadth, a.depth) == (snap.frequency, snap.breadth, snap.depth)
        assert (a.user_breadth, a.touchpoints) == (snap.user_breadth, snap.touchpoints)
    client.shutdown()


def test_page_and_screen_calls_count_as_activity_everywhere() -> None:
    pages = [
        {"type": "page", "userId": "u1", "timestamp": "2026-03-02T10:00:00Z", "name": "Home"},
        {"type": "screen", "userId": "u1", "timestamp": "2026-03-03T10:00:00Z"},
    ]
    client = uptake.Client(
        send=False,
        milestones=[uptake.Milestone("browsed", all_of=[PAGE_EVENT, "Screen Viewed"])],
    )
    assert client.replay(pages).reached == 1
    snap = client.engagement("u1", at=dt.datetime(2026, 3, 3, 12, tzinfo=dt.timezone.utc))
    assert snap.active_days_28 == 2
    report = compute(from_events(pages))
    assert report.users == 1 and report.daily[-1].dau == 1
    # A host that does not want page views as activity marks them inactive, in both.
    quiet = uptake.Client(send=False, engagement=True, inactive_events=[PAGE_EVENT])
    quiet.replay(pages)
    at = dt.datetime(2026, 3, 3, 12, tzinfo=dt.timezone.utc)
    assert quiet.engagement("u1", at=at).active_days_28 == 1
    assert compute(from_events(pages), inactive=[PAGE_EVENT]).users == 1
    client.shutdown()
    quiet.shutdown()


def test_the_activity_rule() -> None:
    assert activity_name("track", "Go") == "Go"
    assert activity_name("track", "") is None
    assert activity_name("page", None) == "Page Viewed"
    assert activity_name("screen", "x") == "Screen Viewed"
    assert activity_name("identify", None) is None
    assert parse_track({"type": "alias", "userId": "u", "timestamp": 0}) is None


def test_compose_score_is_total_over_weight_sets() -> None:
    assert compose_score({"frequency": 0.5}, {"user_breadth": 1.0}) == 0
    assert compose_score({}, {"frequency": 1.0}) == 0
    assert compose_score({"frequency": 2.0, "depth": -1.0}, {"frequency": 1, "depth": 1}) == 50
    assert compose_score({"frequency": 0.5, "breadth": 1.0}, {"frequency": 3, "breadth": 1}) == 62
