"""A store outage does not skew the rules: skipped events are applied, once, when it is back."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import uptake

from .redis_server import RedisServer

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)
USERS = 30


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it freezes."""
    s = RedisServer()
    yield s
    s.stop()


def ts(user: int, step: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=step, seconds=user)


def counting_client(store: uptake.Store) -> tuple[uptake.Client, Counter[str]]:
    client = uptake.Client(
        send=False, store=store, milestones=[uptake.Milestone("activated", counts={"Go": 3})]
    )
    fired: Counter[str] = Counter()
    client.on_milestone()(lambda r: fired.update([r.user_id or ""]))
    return client, fired


def catch_up(client: uptake.Client, replayed: int) -> None:
    """Flush until the waiting events are applied (the store may still be resting)."""
    deadline = time.monotonic() + 10
    while client.stats.rules_replayed < replayed and time.monotonic() < deadline:
        client.flush(timeout=0.05)


def test_a_frozen_redis_loses_no_milestone_and_fires_none_twice(server: RedisServer) -> None:
    # A timeout long enough for a loaded machine's healthy round trips; the frozen Redis
    # costs one such wait, then the store fails fast for a second.
    store = uptake.RedisStore(
        server.url, prefix=f"o-{uuid.uuid4().hex[:8]}:", timeout=0.3, retry_interval=1.0
    )
    client, fired = counting_client(store)
    for step in range(2):
        for u in range(USERS):
            client.track(f"u{u}", "Go", timestamp=ts(u, step))
    server.pause()  # SIGSTOP: the write in flight reaches Redis only once it resumes
    try:
        for u in range(USERS):  # the third "Go" of every user: each earns the milestone
            client.track(f"u{u}", "Go", timestamp=ts(u, 2))
        client.track("late", "Go", timestamp=ts(0, 3))
        assert not fired
        stats = client.stats
        assert (stats.rules_skipped, stats.rules_replayed) == (USERS + 1, 0)
    finally:
        server.resume()
    catch_up(client, USERS + 1)
    assert fired == Counter({f"u{u}": 1 for u in range(USERS)})
    stats = client.stats
    assert (stats.rules_skipped, stats.rules_replayed, stats.rules_overflowed) == (31, 31, 0)
    for u in range(USERS):  # each event applied exactly once: three distinct times
        state = store.get(f"user:u{u}")
        assert state is not None and state.events is not None
        assert state.events["Go"] == [ts(u, step).timestamp() for step in range(3)]
    assert store.get("user:late") is not None
    for u in range(USERS):
        client.track(f"u{u}", "Go", timestamp=ts(u, 4))
    assert sum(fired.values()) == USERS  # and never again
    client.shutdown()
    store.close()


def test_a_locked_sqlite_file_defers_events_and_overflow_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "rules.db"
    store = uptake.SqliteStore(path, timeout=0.05)
    client, fired = counting_client(store)
    client._rules.backlog.limit = 4  # a small bound, to see it overflow
    client.track("a", "Go", timestamp=ts(0, 0))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        for step in range(1, 3):
            client.track("a", "Go", timestamp=ts(0, step))
        client.alias("visitor", "a", timestamp=ts(0, 3))  # waits in order too
        for step in range(4, 7):
            client.track("b", "Go", timestamp=ts(1, step))
        stats = client.stats
        assert (stats.rules_skipped, stats.rules_overflowed) == (6, 2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    client.flush(timeout=1)
    assert fired == Counter({"a": 1})  # b lost two of its events to the bound
    stats = client.stats
    assert (stats.rules_skipped, stats.rules_replayed, stats.rules_overflowed) == (6, 4, 2)
    client.track("c", "Go", timestamp=ts(2, 0))  # the hot path again
    assert client.stats.rules_replayed == 4
    client.shutdown()
