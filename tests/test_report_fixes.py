"""The report's account milestones and names follow docs/report.md to the letter."""

from __future__ import annotations

from typing import Any

import pytest

from uptake.collector.metrics import compute
from uptake.collector.sources import from_events


def track(user: str, event: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "timestamp": at, **extra}


def test_account_milestones_count_active_accounts_and_fall_back_to_first_activity() -> None:
    reached = {"milestone": "team", "scope": "account"}
    events = [
        track("u1", "Viewed", "2026-03-02T00:00:00Z", context={"groupId": "a"}),
        track("u2", "Viewed", "2026-03-03T00:00:00Z", context={"groupId": "b"}),
        # Seen only in a group call, or only in an uptake event: not active accounts.
        {"type": "group", "userId": "u3", "groupId": "c", "timestamp": "2026-03-02T00:00:00Z"},
        track("u4", "Session Started", "2026-03-02T00:00:00Z", context={"groupId": "d"}),
        # "a" reached it two days after its first activity, no time_to_reach_s given.
        track(
            "u1",
            "Milestone Reached",
            "2026-03-04T00:00:00Z",
            context={"groupId": "a"},
            properties=reached,
        ),
    ]
    report = compute(from_events(events))
    (m,) = report.milestones
    assert (m.scope, m.reached) == ("account", 1)
    assert m.share == pytest.approx(1 / 2)  # of the active accounts a and b
    assert m.median_days == pytest.approx(2.0) and m.p90_days == pytest.approx(2.0)
    assert report.accounts == 4  # every account named anywhere is still counted as seen


def test_a_lone_surrogate_becomes_one_replacement_character() -> None:
    events = [
        track(
            "u\ud800", "Feature Used", "2026-03-02T00:00:00Z", properties={"feature": "bad\udc00x"}
        ),
    ]
    report = compute(from_events(events))
    (feature,) = report.features
    assert feature.name == "bad\ufffdx"
