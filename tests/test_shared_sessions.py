"""Sessions kept in a shared store (SQLite, Redis): one visit is one session everywhere."""

from __future__ import annotations

import ast
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import uptake
from uptake._sessionstate import SessionRecord
from uptake._shared_sessions import SharedSessions
from uptake.sessions import Sessionizer
from uptake.testing import capture_events

from .redis_server import RedisServer

USERS = 30
STEPS = 8

# Two worker processes (forked, as gunicorn does) share one SqliteStore. Released together
# by a barrier, each tracks every user's first visit (its events at alternate seconds,
# 15 s in all), then, after a second barrier, the second visit a minute later. Then both
# flush, which ends the idle sessions. Each prints what it captured.
SCRIPT = """
import datetime as dt, multiprocessing as mp, sys, time, uptake
from uptake.testing import MockTransport, capture_events
kind, where, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
users, steps = int(sys.argv[4]), int(sys.argv[5])
BASE = time.time() - 300  # both visits are over: a sweep ends the second

def ts(s):
    return dt.datetime.fromtimestamp(BASE + s, dt.timezone.utc)

def run(worker, barrier, out):
    if kind == "sqlite":
        store = uptake.SqliteStore(where, timeout=10.0)
    else:
        store = uptake.RedisStore(where, prefix=prefix, timeout=5.0)
    c = uptake.Client(transport=MockTransport(), session_timeout=20.0, store=store)
    with capture_events() as events:
        for visit in (0, 60):
            barrier.wait()
            for u in range(users):
                for i in range(steps):
                    c.track(f"u{u}", "Page Viewed", timestamp=ts(visit + 2 * i + worker))
        barrier.wait()
        c.flush(timeout=5.0)
    out.put([(e["event"], e["userId"], e["timestamp"], e["context"].get("sessionId"),
              e["properties"].get("duration_s")) for e in events])

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=run, args=(w, barrier, out)) for w in (0, 1)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    print(repr(results))
"""


@pytest.fixture(params=["sqlite", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    """Where a shared store lives: (kind, file or URL, key prefix)."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "rules.db"), ""
    server: RedisServer = request.getfixturevalue("redis_server")
    return "redis", server.url, f"sessions-{uuid.uuid4().hex[:8]}:"


def open_store(shared: tuple[str, str, str]) -> uptake.SqliteStore | uptake.RedisStore:
    """A new store (its own connection, as another process has) on the shared place."""
    kind, where, prefix = shared
    if kind == "sqlite":
        return uptake.SqliteStore(where)
    return uptake.RedisStore(where, prefix=prefix, timeout=2.0)


def test_two_processes_tracking_the_same_users_share_their_sessions(
    shared: tuple[str, str, str],
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *shared, str(USERS), str(STEPS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert all(results)  # both workers tracked
    started: Counter[tuple[str, str]] = Counter()
    ended: dict[tuple[str, str], list[float]] = defaultdict(list)
    for events in results:
        for name, user, _, session, duration in events:
            if name == "Session Started":
                started[user, session] += 1
            elif name == "Session Ended":
                ended[user, session].append(duration)
    by_user: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for events in results:
        for name, user, stamp, session, _ in events:
            if name == "Page Viewed":
                second = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                by_user[user].append((second, session))
    assert len(by_user) == USERS
    for user, seen in by_user.items():
        seen.sort()
        first_visit = {session for _, session in seen[: 2 * STEPS]}
        second_visit = {session for _, session in seen[2 * STEPS :]}
        assert len(first_visit) == 1 and len(second_visit) == 1, user  # one id per visit
        (one,), (two,) = first_visit, second_visit
        assert one is not None and two is not None and one != two
        # One "Session Started" and one "Session Ended" per session, in whichever process.
        assert started[user, one] == 1 and started[user, two] == 1
        assert ended[user, one] == [15.0] and ended[user, two] == [15.0]
    assert sum(started.values()) == 2 * USERS
    assert sum(len(v) for v in ended.values()) == 2 * USERS


def two_clients(
    shared: tuple[str, str, str], **options: Any
) -> tuple[uptake.Client, uptake.Client]:
    """Two clients on one shared store (two connections, as two worker processes have)."""
    return (
        uptake.Client(send=False, store=open_store(shared), **options),
        uptake.Client(send=False, store=open_store(shared), **options),
    )


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, timezone.utc)


T0 = 1_780_000_000.0


def test_sessions_live_in_the_store_only_when_it_is_shared(
    shared: tuple[str, str, str],
) -> None:
    client = uptake.Client(send=False, store=open_store(shared))
    assert isinstance(client._sessions, SharedSessions)
    memory = uptake.Client(send=False)
    assert type(memory._sessions) is Sessionizer  # the in-process path is unchanged


def test_an_idle_gap_ends_the_session_once_whichever_client_sees_the_next_event(
    shared: tuple[str, str, str],
) -> None:
    a, b = two_clients(shared, session_timeout=60.0)
    with capture_events() as events:
        a.track("u1", "Page Viewed", timestamp=at(0))
        b.track("u1", "Page Viewed", timestamp=at(10))
        a.track("u1", "Page Viewed", timestamp=at(20))
        b.track("u1", "Page Viewed", timestamp=at(200))  # past the idle timeout
        a.track("u1", "Page Viewed", timestamp=at(210))
    sessions = [e["context"]["sessionId"] for e in events if e["event"] == "Page Viewed"]
    assert sessions[0] == sessions[1] == sessions[2] != sessions[3] == sessions[4]
    assert [(e["event"], e["properties"]) for e in events if e["event"] != "Page Viewed"] == [
        ("Session Started", {}),
        ("Session Ended", {"duration_s": 20.0}),
        ("Session Started", {}),
    ]


def test_an_explicit_session_started_in_one_client_is_joined_by_the_other(
    shared: tuple[str, str, str],
) -> None:
    a, b = two_clients(shared, session_timeout=60.0)
    with capture_events() as events:
        session_id = a.session_start("u1", timestamp=at(0))
        b.track("u1", "Report Created", timestamp=at(500))  # explicit: no idle end
        b.session_end("u1", timestamp=at(600))
        a.session_end("u1", timestamp=at(700))  # already ended: nothing
    assert [(e["event"], e["context"]["sessionId"]) for e in events] == [
        ("Session Started", session_id),
        ("Report Created", session_id),
        ("Session Ended", session_id),
    ]
    assert events[-1]["properties"] == {"duration_s": 600.0}


def test_a_sweep_in_either_client_ends_an_idle_session_once(
    shared: tuple[str, str, str],
) -> None:
    a, b = two_clients(shared, session_timeout=60.0)
    a.track("u1", "Page Viewed", timestamp=at(0))
    b.track("u2", "Page Viewed", timestamp=at(0))
    assert [s.user_id for s in b._sessions.expire(now=T0 + 30)] == []  # not idle yet
    ended = a._sessions.expire(now=T0 + 100) + b._sessions.expire(now=T0 + 100)
    assert sorted(s.user_id or "" for s in ended) == ["u1", "u2"]


class BrokenTable:
    """A session table whose store cannot be reached."""

    def session_update(self, key: str, change: Any) -> Any:
        raise TimeoutError("the store stayed busy")

    def session_get(self, key: str) -> SessionRecord | None:
        raise TimeoutError("the store stayed busy")

    def session_take(self, idle_before: float, started_before: float, limit: int) -> Any:
        raise TimeoutError("the store stayed busy")


def test_an_unreachable_store_leaves_the_event_without_a_session_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = SharedSessions(BrokenTable(), idle_timeout=60.0, max_duration=3600.0, emit=True)
    assert sessions.touch("u1", T0, "u1", None, None) == (None, None, None)
    assert sessions.current("u1") is None
    assert sessions.expire(now=T0) == []
    assert sessions.end("u1", T0) is None
    assert sessions.failed == 4
    assert len([r for r in caplog.records if "could not be reached" in r.message]) == 1


def test_events_less_than_a_second_apart_only_read_the_session(
    shared: tuple[str, str, str],
) -> None:
    store = open_store(shared)
    client = uptake.Client(send=False, store=store)
    client.track("u1", "Page Viewed", timestamp=at(0))
    client.track("u1", "Page Viewed", timestamp=at(0.5))  # a burst: nothing written
    record = store.session_get("u1")
    assert record is not None and record.last == T0
    client.track("u1", "Page Viewed", timestamp=at(1.5))
    record = store.session_get("u1")
    assert record is not None and record.last == T0 + 1.5
