"""Automatic sessionization, on event time: idle timeout, duration cap, explicit sessions."""

from __future__ import annotations

import datetime as dt
import time
from types import SimpleNamespace
from typing import Any

import pytest

import uptake
from uptake.sessions import Sessionizer
from uptake.testing import capture_events

MIN = 60.0
T0 = 1_800_000_000.0


@pytest.fixture
def s() -> Sessionizer:
    return Sessionizer(idle_timeout=30 * MIN, max_duration=24 * 3600.0, max_users=3)


def touch(s: Sessionizer, t: float, key: str = "u1") -> Any:
    session_id, started, ended = s.touch(key, t, user_id=key, anonymous_id=None, account_id=None)
    return SimpleNamespace(session_id=session_id, started=started, ended=ended)


def test_first_event_starts_a_session(s: Sessionizer) -> None:
    first = touch(s, T0)
    assert first.session_id and first.started is not None and first.ended is None
    assert first.started.started == T0


@pytest.mark.parametrize(
    ("gap_min", "same"),
    [(1, True), (29.99, True), (30, True), (30.01, False), (120, False)],
)
def test_idle_timeout_edge(s: Sessionizer, gap_min: float, same: bool) -> None:
    first = touch(s, T0)
    second = touch(s, T0 + gap_min * MIN)
    assert (second.session_id == first.session_id) is same
    if not same:
        assert second.ended is not None and second.ended.session_id == first.session_id
        assert second.ended.last == T0


def test_activity_keeps_a_session_alive_up_to_the_cap(s: Sessionizer) -> None:
    first = touch(s, T0)
    t = T0
    while t < T0 + 24 * 3600 - 20 * MIN:
        t += 20 * MIN
        assert touch(s, t).session_id == first.session_id
    capped = touch(s, T0 + 24 * 3600 + 1)
    assert capped.session_id != first.session_id
    assert capped.ended is not None and capped.ended.duration_s > 23 * 3600


def test_late_event_within_the_window_joins_the_session(s: Sessionizer) -> None:
    first = touch(s, T0)
    touch(s, T0 + 10 * MIN)
    late = touch(s, T0 - 5 * MIN)  # arrives late, belongs before the first event
    assert late.session_id == first.session_id and late.started is None


def test_backfill_far_older_than_the_session_gets_no_session(s: Sessionizer) -> None:
    first = touch(s, T0)
    old = touch(s, T0 - 5 * 3600)
    assert old.session_id is None and old.ended is None
    assert touch(s, T0 + 1).session_id == first.session_id


def test_users_are_independent_and_bounded(s: Sessionizer) -> None:
    a, b, c = (touch(s, T0, key) for key in ("a", "b", "c"))
    assert len({a.session_id, b.session_id, c.session_id}) == 3
    d = touch(s, T0, "d")  # over max_users=3: the least recent ("a") is ended
    assert d.ended is not None and d.ended.user_id == "a"
    assert len(s) == 3


def test_expire_ends_idle_sessions_only(s: Sessionizer) -> None:
    touch(s, T0, "idle")
    touch(s, T0 + 40 * MIN, "busy")
    ended = s.expire(T0 + 45 * MIN)
    assert [span.user_id for span in ended] == ["idle"]
    assert s.current("busy") is not None and s.current("idle") is None


def test_explicit_sessions_do_not_idle_out(s: Sessionizer) -> None:
    span, ended = s.start("u1", T0, user_id="u1", anonymous_id=None, account_id=None)
    assert ended is None and span.explicit
    assert touch(s, T0 + 5 * 3600).session_id == span.session_id
    assert s.expire(T0 + 6 * 3600) == []
    closed = s.end("u1", T0 + 7 * 3600)
    assert closed is not None and closed.duration_s == 7 * 3600


# ---------------------------------------------------------------- through the client


def at(minutes: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + minutes * MIN, tz=dt.timezone.utc)


def test_client_emits_session_events_and_tags_every_event() -> None:
    client = uptake.Client(send=False)
    with capture_events(client) as captured:
        client.track("u1", "A", timestamp=at(0), account_id="acme")
        client.track("u1", "B", timestamp=at(10), account_id="acme")
        client.identify("u1", {"plan": "pro"}, timestamp=at(11))
        client.track("u1", "C", timestamp=at(55))
    names = [e.get("event", e["type"]) for e in captured]
    assert names == [
        "Session Started",
        "A",
        "B",
        "identify",
        "Session Ended",
        "Session Started",
        "C",
    ]
    first, second = captured[0]["context"]["sessionId"], captured[5]["context"]["sessionId"]
    assert first != second
    assert [e["context"]["sessionId"] for e in captured[:4]] == [first] * 4
    ended = captured[4]
    assert ended["context"]["sessionId"] == first
    assert ended["properties"] == {"duration_s": 600.0}
    assert ended["timestamp"] == captured[2]["timestamp"]  # the last activity, not "now"
    assert captured[0]["context"]["groupId"] == "acme"


def test_identify_alone_starts_no_session() -> None:
    client = uptake.Client(send=False)
    with capture_events(client) as captured:
        client.identify("u9", {"plan": "pro"})
    assert [e["type"] for e in captured] == ["identify"]
    assert "sessionId" not in captured[0]["context"]


def test_context_session_id_wins() -> None:
    client = uptake.Client(send=False)
    with capture_events(client) as captured:
        client.track("u1", "A", context={"sessionId": "from-the-browser"})
    assert [e["event"] for e in captured] == ["A"]
    assert captured[0]["context"]["sessionId"] == "from-the-browser"


def test_session_context_manager() -> None:
    client = uptake.Client(send=False)
    with capture_events(client) as captured, client.session("u1") as session_id:
        client.track("u1", "Work")
    assert [e["event"] for e in captured] == ["Session Started", "Work", "Session Ended"]
    assert {e["context"]["sessionId"] for e in captured} == {session_id}


def test_session_start_replaces_the_open_session() -> None:
    client = uptake.Client(send=False)
    with capture_events(client) as captured:
        client.track("u1", "A")
        explicit = client.session_start("u1")
        client.session_end("u1")
        client.session_end("u1")  # nothing open: no event
    names = [e["event"] for e in captured]
    assert names == ["Session Started", "A", "Session Ended", "Session Started", "Session Ended"]
    assert captured[3]["context"]["sessionId"] == explicit


def test_custom_session_timeout() -> None:
    client = uptake.Client(send=False, session_timeout=60.0)
    with capture_events(client) as captured:
        client.track("u1", "A", timestamp=at(0))
        client.track("u1", "B", timestamp=at(2))
    assert [e["event"] for e in captured].count("Session Started") == 2


def test_expire_follows_event_time_for_old_events() -> None:
    s = Sessionizer(idle_timeout=30 * MIN, max_duration=24 * 3600.0, max_users=10)
    old = 1_500_000_000.0  # 2017: a replay of old events, the wall clock is years later
    touch(s, old, "a")
    touch(s, old + 1 * MIN, "b")
    assert s.expire() == []  # on the replay's clock nobody has been idle for 30 minutes
    touch(s, old + 40 * MIN, "c")
    assert [span.user_id for span in s.expire()] == ["a", "b"]


def test_expire_uses_the_wall_clock_for_live_events() -> None:
    s = Sessionizer(idle_timeout=30 * MIN, max_duration=24 * 3600.0, max_users=10)
    now = time.time()
    touch(s, now - 45 * MIN, "gone")
    touch(s, now - 5 * MIN, "here")
    assert [span.user_id for span in s.expire()] == ["gone"]


def test_expire_stops_at_the_first_live_session() -> None:
    s = Sessionizer(idle_timeout=30 * MIN, max_duration=24 * 3600.0, max_users=100_000)
    for n in range(50_000):
        touch(s, T0 + n * 0.01, f"u{n}")
    assert s.expire(T0 + 600) == []
    ended = s.expire(T0 + 30 * MIN + 100)  # only the first ~10,000 users are idle
    assert 9_000 < len(ended) < 11_000
    assert len(s) == 50_000 - len(ended)


def test_session_events_off_keeps_session_ids_and_sends_no_session_events() -> None:
    client = uptake.Client(send=False, session_events=False)
    with capture_events(client) as captured:
        client.track("u1", "A", timestamp=at(0), account_id="acme")
        client.track("u1", "B", timestamp=at(10))
        client.track("u1", "C", timestamp=at(55))  # a new session, silently
        with client.session("u2") as explicit:
            client.track("u2", "D")
        client.track("u3", "E", timestamp=at(0))
        client.flush()  # sweeps idle sessions: u3's ends without an event
    assert [e["event"] for e in captured] == ["A", "B", "C", "D", "E"]
    ids = [e["context"]["sessionId"] for e in captured]
    assert ids[0] == ids[1] != ids[2] and ids[3] == explicit and len(set(ids)) == 4


def test_session_events_must_be_a_bool() -> None:
    with pytest.raises(uptake.ConfigurationError, match="session_events"):
        uptake.Client(send=False, session_events="no")  # type: ignore[arg-type]
