"""Identity: alias and identify merge a visitor's rule state into the user's, on every store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import uptake
from uptake.integrations.wsgi import UptakeMiddleware
from uptake.rules.calendar import days_in
from uptake.rules.identity import ALIAS, Merger
from uptake.rules.milestones import MilestoneRules
from uptake.rules.nudge_eval import NudgeRules
from uptake.rules.state import SubjectState, feature_days, feature_first_use, pack_feature
from uptake.testing import LoopbackCollector, capture_events

from .conftest import WRITE_KEY, MakeStore
from .integrations_helpers import call_wsgi

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)
H = dt.timedelta(hours=1)


def at(hours: float) -> dt.datetime:
    return T0 + hours * H


def rules_client(store: Any) -> tuple[uptake.Client, list[tuple[str, str | None]]]:
    """A client with two milestones and a capped nudge; records what fires, in order."""
    client = uptake.Client(
        send=False,
        store=store,
        nudge_rate_limit=None,
        milestones=[
            uptake.Milestone("visited", any_of=["Landing"]),
            uptake.Milestone("activated", counts={"Step": 3}),
        ],
        nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Step", 1), max_shows=2, cooldown=H)],
    )
    fired: list[tuple[str, str | None]] = []
    client.on_milestone()(lambda r: fired.append((r.milestone, r.user_id)))
    client.on_nudge()(lambda n: fired.append((n.name, n.user_id)))
    return client, fired


def test_a_visitors_milestones_and_nudge_caps_carry_over_to_the_user(
    make_store: MakeStore,
) -> None:
    client, fired = rules_client(make_store())
    client.track(None, "Landing", anonymous_id="v1", timestamp=at(0))
    client.track(None, "Step", anonymous_id="v1", timestamp=at(0.1))  # tip: 1st fire
    client.track("u1", "Step", timestamp=at(2))  # the user, not yet known as v1: 1st fire
    assert fired == [("visited", "v1"), ("tip", "v1"), ("tip", "u1")]
    fired.clear()
    client.alias("v1", "u1", timestamp=at(3))
    state = client.state("u1")
    assert state is not None
    assert state["reached"] == {"visited": at(0).timestamp()}  # at the visitor's time
    assert state["first"] == at(0).timestamp()
    assert state["nudges"]["tip"][0] == 2  # fires added up
    client.track("u1", "Landing", timestamp=at(4))  # reached as the visitor: not again
    client.track("u1", "Step", timestamp=at(5))  # 3 steps in all; tip capped at 2 fires
    assert fired == [("activated", "u1")]
    assert client.engagement("u1", at=at(6)).active_days_28 == 1


def test_a_cooldown_started_as_a_visitor_holds_for_the_user(make_store: MakeStore) -> None:
    client, fired = rules_client(make_store())
    client.track(None, "Step", anonymous_id="v1", timestamp=at(0))
    client.identify("u1", anonymous_id="v1", timestamp=at(0.2))  # the middleware at sign-in
    client.track("u1", "Step", timestamp=at(0.5))  # inside the hour's cooldown
    assert fired == [("tip", "v1")]
    client.track("u1", "Step", timestamp=at(1.5))  # after it: the second and last fire
    assert fired == [("tip", "v1"), ("activated", "u1"), ("tip", "u1")]


def test_merging_into_a_user_with_state_unites_counts_and_days(make_store: MakeStore) -> None:
    client, fired = rules_client(make_store())
    client.track("u1", "Step", timestamp=at(0))
    client.track("u1", "Step", timestamp=at(24))
    client.track(None, "Step", anonymous_id="v1", timestamp=at(48))
    fired.clear()
    client.alias("v1", "u1", timestamp=at(49))  # 3 steps together: reached by the merge
    assert fired == [("activated", "u1")]
    state = client.state("u1")
    assert state is not None
    assert len(state["days"]) == 3
    assert client.engagement("u1", at=at(50)).active_days_28 == 3


def test_merging_twice_and_merging_an_unknown_visitor_change_nothing(
    make_store: MakeStore,
) -> None:
    store = make_store()
    client, _ = rules_client(store)
    client.track(None, "Step", anonymous_id="v1", timestamp=at(0))
    client.track("u1", "Step", timestamp=at(2))
    client.alias("v1", "u1", timestamp=at(3))
    once = client.state("u1")
    client.alias("v1", "u1", timestamp=at(4))
    client.identify("u1", anonymous_id="v1", timestamp=at(5))
    other, _ = rules_client(store)  # another client (a process) on the same store
    other.alias("v1", "u1", timestamp=at(6))
    assert client.state("u1") == once
    assert once is not None and once["nudges"]["tip"][0] == 2
    client.alias("v1", "u2", timestamp=at(7))  # merged already: the first link wins
    assert client.state("u2") is None
    client.alias("nobody", "u3", timestamp=at(8))
    assert store.get("anon:nobody") is None and store.get("user:u3") is None
    assert client.stats.rules_skipped == 0


def test_a_visitors_later_events_are_applied_to_the_user(make_store: MakeStore) -> None:
    store = make_store()
    client, fired = rules_client(store)
    client.track(None, "Step", anonymous_id="v1", timestamp=at(0), account_id="acme")
    client.alias("v1", "u1", timestamp=at(1))
    fired.clear()
    # A request still in flight, or another process, tracks the visitor after the merge.
    client.track(None, "Step", anonymous_id="v1", timestamp=at(2))
    client.track(None, "Step", anonymous_id="v1", timestamp=at(3), account_id="acme")
    assert fired == [("tip", "u1"), ("activated", "u1")]
    visitor = store.get("anon:v1")
    assert visitor is not None and visitor.nudges == {ALIAS: "u1"} and visitor.first is None
    assert client.state(None, account_id="acme") is not None
    assert client.state("v1") == client.state("u1")  # the visitor's id reads the user


def test_alias_sends_the_segment_message_and_the_collector_accepts_it() -> None:
    with LoopbackCollector(write_key=WRITE_KEY) as collector:
        client = uptake.Client(write_key=WRITE_KEY, endpoint=collector.url)
        with capture_events(client) as events:
            client.alias("anon-1", "user-1", timestamp=T0)
        (message,) = events
        assert message["type"] == "alias"
        assert (message["previousId"], message["userId"]) == ("anon-1", "user-1")
        assert message["timestamp"].startswith("2026-06-01T09:00:00")
        assert "anonymousId" not in message and message["messageId"]
        client.alias("anon-2", 42)
        assert client.flush(timeout=10)
        (sent,) = collector.events
        assert (sent["type"], sent["previousId"], sent["userId"]) == ("alias", "anon-2", "42")
        client.shutdown()


@pytest.mark.parametrize(
    ("previous", "user", "message"),
    [("", "u", "must not be empty"), ("a", None, "user_id"), ("u", "u", "two different ids")],
)
def test_alias_refuses_bad_ids_at_the_call_site(previous: Any, user: Any, message: str) -> None:
    client = uptake.Client(send=False)
    with pytest.raises(uptake.InvalidEventError, match=message):
        client.alias(previous, user)


def test_replay_applies_past_aliases() -> None:
    client, fired = rules_client(uptake.MemoryStore())
    stamp = "2026-06-01T09:00:00Z"
    history = [
        {"type": "track", "event": "Step", "anonymousId": "v1", "timestamp": stamp},
        {"type": "track", "event": "Step", "userId": "u1", "timestamp": stamp},
        {"type": "alias", "previousId": "v1", "userId": "u1", "timestamp": stamp},
        {"type": "alias", "previousId": "v1", "timestamp": stamp},
    ]
    result = client.replay(history)
    assert (result.applied, result.skipped) == (3, 1)
    state = client.state("u1")
    assert state is not None and len(state["events"]["Step"]) == 2
    assert fired == []  # history: nothing reported


def test_the_merge_rules_field_by_field() -> None:
    day = 20_000
    milestones = MilestoneRules(
        [
            uptake.Milestone("m", counts={"Step": 2}),
            uptake.Milestone("d", active_days=2, within=dt.timedelta(days=9)),
        ],
        keep_days=0,
        feature_days=8,
    )
    nudges = NudgeRules(
        [
            uptake.Nudge("a", trigger=uptake.EventCount("Ping", 2, within=dt.timedelta(days=1))),
            uptake.Nudge("b", trigger=uptake.EventCount("Pong", 5)),
        ],
        rate_limit=None,
        declining=None,
    )
    user, visitor = SubjectState(), SubjectState()
    user.first, user.last, visitor.first, visitor.last = 10.0, 50.0, 5.0, 40.0
    user.events = {"Step": [30.0], "\x00reached:x": 30.0}
    visitor.events = {"Step": [7.0, 8.0], "\x00reached:x": 20.0, "Other": 3.0}
    from array import array

    user.days, visitor.days = array("i", [day, day + 2]), array("i", [day + 1, day + 2])
    user.features = {"f": pack_feature(20.0, 0)}
    visitor.features = {"f": pack_feature(9.0, 0), "g": pack_feature(11.0, 0)}
    user.features["f"] = pack_feature(20.0, (day + 2) << 8 | 1)
    visitor.features["f"] = pack_feature(9.0, (day + 1) << 8 | 1)
    user.nudges = {
        "a": [1, 100.0, False, None, None],
        "\x00n:Pong": 2,
        "\x00w:Ping": [90.0],
        "\x00pending": ["a"],
        "\x00last": 100.0,
        "\x00traits": {"plan": "pro"},
        "\x00cfg": "x",
    }
    visitor.nudges = {
        "a": [2, 60.0, True, 500.0, 70.0],
        "b": [1, 10.0, False, None, None],
        "\x00n:Pong": 3,
        "\x00w:Ping": [80.0, 95.0],
        "\x00pending": ["b", "a"],
        "\x00last": 60.0,
        "\x00traits": {"plan": "free", "lang": "fr"},
    }
    user.due = 1e12
    Merger(milestones, nudges).merge(user, visitor)
    assert (user.first, user.last) == (5.0, 50.0)
    assert user.events == {"Step": [7.0, 8.0], "\x00reached:x": 20.0, "Other": 3.0}
    assert list(user.days or ()) == [day, day + 1, day + 2]
    features = user.features or {}
    assert feature_first_use(features["f"]) == 9.0
    assert days_in(feature_days(features["f"]), 8) == [day + 1, day + 2]
    assert feature_first_use(features["g"]) == 11.0
    records = user.nudges or {}
    assert records["a"] == [3, 100.0, True, 500.0, 70.0]
    assert records["b"] == [1, 10.0, False, None, None]
    assert records["\x00n:Pong"] == 5
    assert records["\x00w:Ping"] == [90.0, 95.0]  # the latest two, as the window needs
    assert records["\x00pending"] == ["a", "b"]
    assert records["\x00last"] == 100.0
    assert records["\x00traits"] == {"plan": "pro", "lang": "fr"}
    assert "\x00cfg" not in records and user.due == 0.0


def test_the_web_middleware_merges_the_visitor_at_sign_in() -> None:
    def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = uptake.Client(
        send=False, milestones=[uptake.Milestone("explorer", all_of=["Feature Used"])]
    )
    fired: list[str | None] = []
    client.on_milestone()(lambda r: fired.append(r.user_id))
    app = UptakeMiddleware(
        page,
        client,
        user_id=lambda environ: environ.get("HTTP_X_USER"),
        features={"/reports/*": "reports"},
    )
    first = call_wsgi(app, "/reports/1")  # a visitor: reaches "explorer"
    anon = (first.header("Set-Cookie") or "").split(";")[0].split("=")[1]
    call_wsgi(app, "/reports/2", headers={"Cookie": f"uptake_anon={anon}", "X-User": "u1"})
    call_wsgi(app, "/reports/3", headers={"X-User": "u1"})
    assert fired == [anon]  # once, as the visitor; never again for the user
    state = client.state("u1")
    assert state is not None and state["reached"].keys() == {"explorer"}
    client.shutdown()
