"""flush(timeout) keeps to its timeout, catching up on the rules included."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from typing import Any

import uptake
from uptake.errors import StoreUnavailable
from uptake.testing import MockTransport

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)


class _BackAfterOutage(uptake.MemoryStore):
    """Down until ``down`` is cleared, then a remote store's pace: 2 ms a round trip."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def update(self, key: str, change: Any, *args: Any) -> Any:
        if self.down:
            raise StoreUnavailable("down")
        time.sleep(0.002)
        return super().update(key, change, *args)


class _Held(MockTransport):
    """A collector that answers nothing until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send(self, messages: Sequence[Any]) -> Any:
        self.release.wait(30)
        return super().send(messages)


def test_flush_waits_at_most_its_timeout_with_rules_to_catch_up() -> None:
    store = _BackAfterOutage()
    transport = _Held()
    client = uptake.Client(
        store=store,
        transport=transport,
        milestones=[uptake.Milestone("went", counts={"Go": 1})],
        flush_interval=3600,
    )
    try:
        for i in range(2_000):  # 2,000 events waiting for the rules: 4 s of round trips
            client.track(f"u{i}", "Go", timestamp=T0)
        store.down = False
        started = time.monotonic()
        assert client.flush(timeout=1.0) is False  # neither the rules nor delivery are done
        took = time.monotonic() - started
        # Catching up and waiting for delivery share the one timeout (each took all of it
        # before: 2 s).
        assert took < 1.6, f"flush(timeout=1.0) took {took:.2f} s"
        assert client.stats.rules_replayed > 0
    finally:
        transport.release.set()
        client.shutdown(timeout=5)
