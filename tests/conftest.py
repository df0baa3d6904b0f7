"""Shared fixtures: a real loopback collector and clients that are always shut down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import uptake
from uptake.testing import LoopbackCollector

WRITE_KEY = "wk_test_secret"


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
