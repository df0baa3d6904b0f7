"""Shared fixtures: a real loopback collector and clients that are always shut down."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import uptake
from uptake.testing import LoopbackCollector

from .redis_server import RedisServer

WRITE_KEY = "wk_test_secret"
AnyStore = "uptake.MemoryStore | uptake.SqliteStore | uptake.RedisStore"
MakeStore = Callable[[], AnyStore]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Build each kind of rule store in turn: every store must behave the same."""
    made: list[uptake.RedisStore] = []

    def make() -> uptake.MemoryStore | uptake.SqliteStore | uptake.RedisStore:
        if request.param == "memory":
            return uptake.MemoryStore()
        if request.param == "sqlite":
            return uptake.SqliteStore(tmp_path / "rules.db")
        server = request.getfixturevalue("redis_server")
        store = uptake.RedisStore(server.url, prefix=f"test-{uuid.uuid4().hex}:", timeout=2.0)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def collector() -> Iterator[LoopbackCollector]:
    with LoopbackCollector(write_key=WRITE_KEY) as c:
        yield c


@pytest.fixture
def make_client(
    collector: LoopbackCollector,
) -> Iterator[Callable[..., uptake.Client]]:
    """Build clients pointed at the collector; each is shut down at the end of the test."""
    made: list[uptake.Client] = []

    def make(**options: Any) -> uptake.Client:
        options.setdefault("write_key", WRITE_KEY)
        options.setdefault("endpoint", collector.url)
        options.setdefault("max_backoff", 0.05)
        client = uptake.Client(**options)
        made.append(client)
        return client

    yield make
    collector.release()  # a test may have left the collector hung
    for client in made:
        client.shutdown(timeout=2.0)


def track_names(events: list[dict[str, Any]]) -> list[str]:
    """The event names of the track events, in order."""
    return [e["event"] for e in events if e.get("type") == "track"]
