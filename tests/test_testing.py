"""uptake.testing: capture what a host app tracks, with no network."""

from __future__ import annotations

import uptake
from uptake.testing import LoopbackCollector, capture_events

from .conftest import WRITE_KEY


def test_capture_sees_events_as_they_would_be_sent(collector: LoopbackCollector) -> None:
    client = uptake.Client(write_key=WRITE_KEY, endpoint=collector.url)
    with capture_events() as events:
        client.track("u1", "Signed Up", {"plan": {"pro"}})
        client.identify("u1", {"email": "a@b.c"})
    client.shutdown(timeout=5)
    assert [e.get("event", e["type"]) for e in events] == [
        "Session Started",
        "Signed Up",
        "identify",
    ]
    assert events[1]["properties"] == {"plan": ["pro"]}  # coerced, as on the wire
    assert collector.requests == []  # nothing went out
    assert client.stats.tracked == 0


def test_capture_can_target_one_client() -> None:
    a, b = uptake.Client(send=False), uptake.Client(send=False)
    with capture_events(a) as only_a:
        a.track("u1", "From A")
        b.track("u1", "From B")
    assert [e["event"] for e in only_a if e["event"].startswith("From")] == ["From A"]
    assert b.stats.tracked == 2


def test_captures_nest_and_end() -> None:
    client = uptake.Client(send=False)
    with capture_events() as outer:
        client.track("u1", "One")
        with capture_events() as inner:
            client.track("u1", "Two")
        client.track("u1", "Three")
    client.track("u1", "Four")
    assert [e["event"] for e in outer] == ["Session Started", "One", "Three"]
    assert [e["event"] for e in inner] == ["Two"]
    assert client.stats.tracked == 1
