"""The global holdout: a stable share of users no nudge ever fires for, recorded as such,
explained, and measured by the report against everyone else."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import uptake
from uptake.collector.metrics import compute
from uptake.collector.sources import from_events
from uptake.testing import capture_events

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
TIP = uptake.Nudge("tip", trigger=uptake.EventCount("Login", 1), holdout=0.2, goal="Report Created")
OTHER = uptake.Nudge("other", trigger=uptake.EventCount("Login", 1), priority=5)


def make(fraction: float, *nudges: uptake.Nudge) -> tuple[uptake.Client, list[tuple[str, str]]]:
    client = uptake.Client(
        send=False, nudges=list(nudges or (TIP,)), global_holdout=fraction, nudge_rate_limit=None
    )
    fired: list[tuple[str, str]] = []
    client.on_nudge()(lambda n: fired.append((n.user_id, n.name)))
    return client, fired


@pytest.mark.parametrize(
    ("value", "message"),
    [(True, "fraction"), ("0.1", "fraction"), (-0.01, "at least 0"), (1.0, "below 1")],
)
def test_a_bad_global_holdout_is_refused(value: Any, message: str) -> None:
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.Client(send=False, global_holdout=value)


def test_the_global_holdout_is_a_read_only_setting() -> None:
    client, _ = make(0.05)
    assert client.global_holdout == 0.05
    assert uptake.Client(send=False).global_holdout == 0.0
    with pytest.raises(AttributeError):
        client.global_holdout = 0.2  # type: ignore[misc]


def test_no_nudge_fires_for_a_stable_share_of_users_recorded_as_global() -> None:
    decisions: list[dict[str, set[str]]] = []
    for _ in range(2):
        client, fired = make(0.1, TIP, OTHER)
        with capture_events(client) as events:
            for u in range(1000):
                client.track(f"user-{u}", "Login", timestamp=T0)
        globally = {
            e["userId"]
            for e in events
            if e["event"] == "Nudge Held Out" and e["properties"].get("global_holdout") == 0.1
        }
        tip_held = {
            e["userId"]
            for e in events
            if e["event"] == "Nudge Held Out"
            and e["properties"]["nudge"] == "tip"
            and "global_holdout" not in e["properties"]
        }
        nudged = {user for user, _ in fired}
        assert not globally & nudged  # no nudge at all fires for them
        assert not globally & tip_held
        # Held out of every nudge, at the decision point, with the nudge's goal.
        per_user = [
            e for e in events if e["userId"] == min(globally) and e["event"].startswith("Nudge ")
        ]
        assert sorted(e["properties"]["nudge"] for e in per_user) == ["other", "tip"]
        assert all(e["properties"].get("goal") in (None, "Report Created") for e in per_user)
        assert 70 <= len(globally) <= 130  # 10% of 1,000 (binomial sd 9.5)
        decisions.append({"global": globally, "tip": tip_held})
        client.shutdown()
    assert decisions[0] == decisions[1]  # the same users, whichever client decides


def test_the_global_and_the_nudge_holdouts_are_independent() -> None:
    client, _ = make(0.5)
    with capture_events(client) as events:
        for u in range(2000):
            client.track(f"user-{u}", "Login", timestamp=T0)
    globally = sum(1 for e in events if e["properties"].get("global_holdout"))
    assert all(
        e["event"] == "Nudge Held Out" for e in events if "global_holdout" in e["properties"]
    )
    held = sum(
        1
        for e in events
        if e["event"] == "Nudge Held Out" and not e["properties"].get("global_holdout")
    )
    # Half of the users are in the global holdout; 20% of the other half in the tip's.
    assert 900 <= globally <= 1100
    assert 0.15 <= held / (2000 - globally) <= 0.25


def test_explain_nudges_names_the_global_holdout() -> None:
    client, fired = make(0.999)
    client.track("u1", "Login", timestamp=T0)
    assert fired == []
    (why,) = client.explain_nudges("u1", at=T0 + 2 * DAY)
    assert why.status == "max_shows"  # held out once: caps count it like a fire
    assert why.detail.endswith("in the 100% global holdout: no nudge ever fires")
    fresh = uptake.Client(
        send=False, nudges=[uptake.Nudge("tip", trigger=uptake.Inactive(DAY))], global_holdout=0.999
    )
    fresh.track("u2", "Login", timestamp=T0)
    (why,) = fresh.explain_nudges("u2", at=T0 + 2 * DAY)
    assert why.status == "global_holdout"
    assert "global holdout" in why.detail and "no nudge" in why.detail


def test_the_report_measures_the_programme_against_the_global_holdout() -> None:
    client, _ = make(0.3)
    with capture_events(client) as events:
        for u in range(200):
            user = f"user-{u}"
            client.track(user, "Login", timestamp=T0)
            client.track(user, "Login", timestamp=T0 + 30 * DAY)  # everyone comes back
        client.track("user-0", "Login", timestamp=T0 + 36 * DAY)  # the window has ended
    data = [dict(e) for e in events]
    report = compute(from_events(data), engine="python")
    sql = compute(from_events(data), engine="duckdb")
    assert report.programme == sql.programme
    (programme,) = report.programme
    globally = sum(1 for e in data if e["properties"].get("global_holdout"))
    assert programme.control == globally > 0
    assert programme.treated == 200 - globally
    assert programme.treated_rate == programme.control_rate == 1.0  # all came back
    (tip,) = report.nudges
    # The tip's own arms leave the global holdout out.
    assert tip.global_held_out == globally
    assert tip.treated + tip.control + tip.pending == 200 - globally


def test_simulate_counts_the_global_holdout_as_held_out() -> None:
    client, _ = make(0.5)
    history = [
        {"type": "track", "userId": f"user-{u}", "event": "Login", "timestamp": T0.isoformat()}
        for u in range(400)
    ]
    result = client.simulate(history)
    tip = result.nudges["tip"]
    assert tip.fires + tip.held_out == 400
    # Half of the users globally, a fifth of the rest by the nudge: 240 expected (sd ~11).
    assert 195 <= tip.held_out <= 285


def test_both_arms_are_recorded_by_the_same_decision_at_the_same_moment() -> None:
    nudge = uptake.Nudge(
        "tip", trigger=uptake.EventCount("Login", 2), holdout=0.5, goal="Report Created"
    )
    client, _ = make(0.0, nudge)
    with capture_events(client) as events:
        for u in range(200):
            client.track(f"user-{u}", "Login", timestamp=T0)
            client.track(f"user-{u}", "Login", timestamp=T0 + DAY)  # the trigger holds here
    decisions = [e for e in events if e["event"] in ("Nudge Fired", "Nudge Held Out")]
    # One assignment per user, either arm, at the moment the trigger held, alike in all
    # but the event name: what the report's comparison by assignment counts on.
    assert sorted(e["userId"] for e in decisions) == sorted(f"user-{u}" for u in range(200))
    assert {e["timestamp"] for e in decisions} == {"2026-06-02T09:00:00.000Z"}  # T0 + DAY
    assert len({tuple(sorted(e["properties"].items())) for e in decisions}) == 1
    assert {e["event"] for e in decisions} == {"Nudge Fired", "Nudge Held Out"}
