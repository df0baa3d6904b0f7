"""RedisStore against a real redis-server: exactly once across processes, faults, expiry.

The behaviour every store must have runs on RedisStore through the ``make_store`` fixture
(test_stores.py, test_engagement.py); these are RedisStore's own.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import uptake
from uptake.rules.state import SubjectState
from uptake.testing import LoopbackCollector, capture_events

from .conftest import WRITE_KEY
from .redis_server import RedisCluster, RedisServer

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill, restart or freeze."""
    s = RedisServer()
    yield s
    s.stop()


def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}:"


def bump(state: SubjectState, by: float) -> float:
    state.first = (state.first or 0.0) + by
    return state.first


SCRIPT = """
import sys, datetime as dt, uptake
store = uptake.RedisStore(sys.argv[1], prefix=sys.argv[2], timeout=5.0)
nudge = uptake.Nudge("once", trigger=uptake.EventCount("Go", 1), max_shows=1)
client = uptake.Client(send=False, store=store, nudge_rate_limit=None, nudges=[nudge],
                       milestones=[uptake.Milestone("go", counts={"Go": 2})])
client.on_milestone("go")(lambda r: print("milestone", r.user_id, flush=True))
client.on_nudge("once")(lambda n: print("nudge", n.user_id, flush=True))
t0 = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
for round_ in range(3):
    for user in range(40):
        client.track(f"user-{user}", "Go", timestamp=t0 + dt.timedelta(seconds=round_))
print("conflicts", store.conflicts, file=sys.stderr)
"""


def test_four_processes_fire_each_milestone_and_capped_nudge_exactly_once(
    redis_server: RedisServer,
) -> None:
    keys = prefix()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, redis_server.url, keys],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    lines = Counter(line for out in outputs for line in out.splitlines())
    expected = {f"milestone user-{u}": 1 for u in range(40)}
    expected.update({f"nudge user-{u}": 1 for u in range(40)})
    assert lines == Counter(expected)


def test_a_stale_cached_copy_is_detected_and_the_change_runs_again(
    redis_server: RedisServer,
) -> None:
    keys = prefix()
    first = uptake.RedisStore(redis_server.url, prefix=keys, timeout=2.0)
    second = uptake.RedisStore(redis_server.url, prefix=keys, timeout=2.0)
    assert first.update("user:u", bump, 1.0) == 1.0  # first caches version 1
    assert second.update("user:u", bump, 10.0) == 11.0  # another process writes version 2
    assert first.update("user:u", bump, 100.0) == 111.0  # stale cache: refused, run again
    assert first.conflicts == 1
    assert second.get("user:u").first == 111.0  # type: ignore[union-attr]


def test_keys_carry_the_prefix_and_expire_when_idle(redis_server: RedisServer) -> None:
    keys = prefix()
    store = uptake.RedisStore(redis_server.url, prefix=keys, ttl=dt.timedelta(days=30))
    store.update("user:u", bump, 1.0)
    raw = redis.Redis.from_url(redis_server.url)
    assert raw.keys(f"{keys}*") == [f"{keys}user:u".encode()]
    assert 29 * 86400_000 < raw.pttl(f"{keys}user:u") <= 30 * 86400_000
    forever = uptake.RedisStore(redis_server.url, prefix=keys, ttl=None)
    forever.update("user:v", bump, 1.0)
    assert raw.pttl(f"{keys}user:v") == -1
    usage = store.memory_usage("user:u")
    assert usage is not None and usage > 0


def test_redis_killed_mid_run_never_blocks_track_and_rules_resume(
    server: RedisServer, collector: LoopbackCollector, caplog: pytest.LogCaptureFixture
) -> None:
    store = uptake.RedisStore(server.url, prefix=prefix(), timeout=0.05, retry_interval=0.2)
    client = uptake.Client(
        write_key=WRITE_KEY,
        endpoint=collector.url,
        store=store,
        milestones=[uptake.Milestone("twice", counts={"Go": 2})],
    )
    reached: list[str] = []
    client.on_milestone()(lambda r: reached.append(r.user_id or ""))
    client.track("a", "Go")
    server.stop()
    with caplog.at_level(logging.WARNING, logger="uptake"):
        worst = 0.0
        for _ in range(50):
            start = time.perf_counter()
            client.track("a", "During Outage")
            worst = max(worst, time.perf_counter() - start)
    assert worst < 0.5  # one connection attempt of 50 ms, then fast failure
    assert client.stats.rules_skipped == 50
    assert "rule store unavailable" in caplog.text
    assert "Traceback" not in caplog.text
    server.start()  # a fresh, empty Redis on the same port
    deadline = time.monotonic() + 10
    while not reached and time.monotonic() < deadline:  # the store retries every 0.2 s
        client.track("b", "Go")
    assert reached == ["b"]
    assert client.flush(timeout=10)
    assert [e["event"] for e in collector.events].count("During Outage") == 50
    client.shutdown()


def test_a_frozen_redis_holds_track_for_the_timeout_at_most(server: RedisServer) -> None:
    store = uptake.RedisStore(server.url, prefix=prefix(), timeout=0.05, retry_interval=30)
    client = uptake.Client(
        send=False, store=store, milestones=[uptake.Milestone("m", any_of=["Go"])]
    )
    client.track("warm", "Page Viewed")
    server.pause()  # SIGSTOP: the socket accepts nothing, answers nothing
    try:
        timings = []
        with capture_events(client) as events:
            for _ in range(20):
                start = time.perf_counter()
                client.track("u", "Go")
                timings.append(time.perf_counter() - start)
        assert max(timings) < 0.5 and sorted(timings)[10] < 0.01  # one wait, then fast
        assert [e["event"] for e in events].count("Go") == 20  # still recorded
        assert client.stats.rules_skipped == 20
    finally:
        server.resume()


def test_bad_settings_are_refused() -> None:
    for kwargs, message in (
        ({"ttl": dt.timedelta(0)}, "ttl"),
        ({"timeout": 0}, "timeout"),
        ({"retry_interval": -1}, "retry_interval"),
        ({"cache_size": -1}, "cache_size"),
        ({"prefix": 3}, "prefix"),
    ):
        with pytest.raises(uptake.ConfigurationError, match=message):
            uptake.RedisStore("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="bad Redis url"):
        uptake.RedisStore("http://not-redis")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    c = RedisCluster(str(tmp_path_factory.mktemp("cluster")))
    yield c
    c.stop()


def test_a_redis_cluster_keeps_milestones_and_nudges_exact(cluster: RedisCluster) -> None:
    store = uptake.RedisStore(cluster.url, prefix=prefix(), timeout=2.0, cluster=True)
    assert store.atomic_many is False
    team = uptake.Milestone("team", features=2, scope="account")
    client = uptake.Client(
        send=False,
        store=store,
        milestones=[team, uptake.Milestone("go", counts={"Go": 2})],
        nudges=[uptake.Nudge("team_ready", trigger=uptake.Reached("team"))],
        nudge_rate_limit=None,
    )
    seen: list[tuple[str, str]] = []
    client.on_milestone()(lambda r: seen.append((r.milestone, r.user_id or "")))
    client.on_nudge()(lambda n: seen.append((n.name, n.user_id)))
    for u in range(30):  # users spread over the three nodes' slots
        client.track(f"user-{u}", "Go", account_id=f"acct-{u % 3}", timestamp=T0)
        client.track(f"user-{u}", "Go", account_id=f"acct-{u % 3}", timestamp=T0)
    client.feature_used("a", "reports", account_id="acct-0", timestamp=T0)
    client.feature_used("b", "alerts", account_id="acct-0", timestamp=T0)
    assert sorted(seen) == sorted(
        [("go", f"user-{u}") for u in range(30)] + [("team", "b"), ("team_ready", "b")]
    )
    assert client.stats.rules_skipped == 0
    assert client.engagement(account_id="acct-0", at=T0).active_users_28 == 12


def test_a_redis_cluster_keeps_sessions_shared_in_one_slot(cluster: RedisCluster) -> None:
    shared = prefix()
    stores = [
        uptake.RedisStore(cluster.url, prefix=shared, timeout=2.0, cluster=True) for _ in "ab"
    ]
    a, b = (uptake.Client(send=False, store=store, session_timeout=60.0) for store in stores)
    with capture_events() as events:
        for u in range(20):  # users spread over the slots; their sessions share one
            for i, client in enumerate((a, b, a)):
                client.track(f"user-{u}", "Go", timestamp=T0 + dt.timedelta(seconds=2 * i))
    ended = a._sessions.expire(now=T0.timestamp() + 100)
    sessions = {(e["userId"], e["context"].get("sessionId")) for e in events}
    assert len(sessions) == 20 and all(session for _, session in sessions)
    assert Counter(e["event"] for e in events) == {"Go": 60, "Session Started": 20}
    assert sorted((s.user_id, s.session_id) for s in ended) == sorted(sessions)
    assert sum(store.conflicts for store in stores) > 0  # a and b took turns


def test_a_redis_cluster_merges_a_visitor_in_two_steps(cluster: RedisCluster) -> None:
    store = uptake.RedisStore(cluster.url, prefix=prefix(), timeout=2.0, cluster=True)
    client = uptake.Client(
        send=False,
        store=store,
        milestones=[
            uptake.Milestone("visited", any_of=["Landing"]),
            uptake.Milestone("go", counts={"Go": 4}),
        ],
    )
    seen: list[tuple[str, str]] = []
    client.on_milestone()(lambda r: seen.append((r.milestone, r.user_id or "")))
    for v in range(10):  # visitors and users spread over the three nodes' slots
        client.track(None, "Landing", anonymous_id=f"v{v}", timestamp=T0)
        client.track(None, "Go", anonymous_id=f"v{v}", timestamp=T0, account_id="acme")
        client.track(f"u{v}", "Go", timestamp=T0)
        client.alias(f"v{v}", f"u{v}", timestamp=T0)
        client.alias(f"v{v}", f"u{v}", timestamp=T0)  # a second time: nothing
        client.track(f"u{v}", "Landing", timestamp=T0)
        client.track(None, "Go", anonymous_id=f"v{v}", timestamp=T0, account_id="acme")
        client.track(f"u{v}", "Go", timestamp=T0)
    expected = [("visited", f"v{v}") for v in range(10)] + [("go", f"u{v}") for v in range(10)]
    assert sorted(seen) == sorted(expected)
    assert client.stats.rules_skipped == 0
    state = client.state("u3")
    assert state is not None and len(state["events"]["Go"]) == 4


def test_a_redis_cluster_keeps_budgets_across_channels_and_merges(cluster: RedisCluster) -> None:
    store = uptake.RedisStore(cluster.url, prefix=prefix(), timeout=2.0, cluster=True)
    go = uptake.Nudge("go", trigger=uptake.EventCount("Go", 1))
    mail = uptake.Nudge("mail", trigger=uptake.EventCount("Go", 1), channel="email")
    later = uptake.Nudge("later", trigger=uptake.EventCount("Later", 1))
    settings: dict[str, Any] = {
        "nudges": [go, mail, later],
        "nudge_budget": uptake.NudgeBudget(1, dt.timedelta(days=7)),
        "quiet_hours": uptake.QuietHours(dt.time(21), dt.time(8), channel="email"),
    }
    first = uptake.Client(send=False, store=store, **settings)
    second = uptake.Client(send=False, store=store, **settings)
    seen: list[tuple[str, str]] = []
    for client in (first, second):
        client.on_nudge()(lambda n: seen.append((n.name, n.user_id)))
    night = T0 + dt.timedelta(hours=13)  # 22:00 UTC: the emails wait
    for v in range(10):  # visitors and users spread over the three nodes' slots
        first.track(None, "Go", anonymous_id=f"v{v}", timestamp=night)
        second.alias(f"v{v}", f"u{v}", timestamp=night)
        second.track(f"u{v}", "Later", timestamp=night)  # the visitor's fire counts
    assert sorted(seen) == sorted(("go", f"v{v}") for v in range(10))
    morning = T0 + dt.timedelta(days=1)
    for v in range(10):
        assert [n.name for n in first.pending_nudges(f"u{v}", at=morning)] == ["go", "mail"]
    assert sorted(seen)[10:] == sorted(("mail", f"u{v}") for v in range(10))
    assert first.stats.rules_skipped == second.stats.rules_skipped == 0


def test_a_deleted_subject_written_again_is_not_mistaken_for_the_cached_one(
    redis_server: RedisServer,
) -> None:
    keys = prefix()
    first = uptake.RedisStore(redis_server.url, prefix=keys, timeout=2.0)
    second = uptake.RedisStore(redis_server.url, prefix=keys, timeout=2.0)
    for _ in range(3):
        first.update("user:u", bump, 1.0)  # first caches the state after three writes
    assert second.delete("user:u")
    for _ in range(3):
        second.update("user:u", bump, 10.0)  # three writes again: a counter would repeat
    assert first.update("user:u", bump, 100.0) == 130.0  # the stale copy was refused
    assert first.conflicts == 1


def test_a_resent_write_is_not_applied_twice(redis_server: RedisServer) -> None:
    store = uptake.RedisStore(redis_server.url, prefix=prefix(), timeout=2.0)
    names = [store.prefix + "user:u"]
    value = 'tok1|{"first": 1.0}'
    assert store._eval(names, [0, "", value])[0] == 1
    assert store._eval(names, [0, "", value])[0] == 1  # the same write again: already there
    assert store.get("user:u").first == 1.0  # type: ignore[union-attr]


def test_one_odd_key_does_not_cut_the_store_off(redis_server: RedisServer) -> None:
    keys = prefix()
    redis.Redis.from_url(redis_server.url).hset(f"{keys}user:odd", "x", "1")
    store = uptake.RedisStore(redis_server.url, prefix=keys, timeout=2.0)
    with pytest.raises(uptake.StoreUnavailable, match="WRONGTYPE"):
        store.update("user:odd", bump, 1.0)
    assert store.update("user:fine", bump, 1.0) == 1.0  # no pause for the others


def test_a_store_that_is_not_a_store_is_refused() -> None:
    with pytest.raises(uptake.ConfigurationError, match="rule store"):
        uptake.Client(send=False, store="redis://127.0.0.1:6379/0")  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="url must be a string"):
        uptake.RedisStore(6379)  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="cluster must be"):
        uptake.RedisStore(cluster="yes")  # type: ignore[arg-type]
