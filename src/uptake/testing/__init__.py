"""Helpers for testing an application that uses uptake.

``capture_events`` records what your code tracks, exactly as it would be sent, and sends
nothing::

    from uptake.testing import capture_events

    def test_signup_is_tracked():
        with capture_events() as events:
            signup(client, "user-1")
        assert [e["event"] for e in events] == ["Session Started", "Signed Up"]

``MockTransport`` stands in for the network behind a real client: every batch the
delivery thread would send is recorded, and your handler decides the answer::

    transport = MockTransport()
    client = uptake.Client(transport=transport)
    client.track("user-1", "Signed Up")
    assert client.flush()
    assert transport.events[-1]["event"] == "Signed Up"

``LoopbackCollector`` is a real HTTP collector on 127.0.0.1 for end-to-end tests: point a
client at ``collector.url`` and inspect ``collector.events``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import _lifecycle
from ._collector import LoopbackCollector, RecordedRequest
from ._mock import MockTransport

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["LoopbackCollector", "MockTransport", "RecordedRequest", "capture_events"]


@contextlib.contextmanager
def capture_events(client: Client | None = None) -> Iterator[list[dict[str, Any]]]:
    """Capture the events tracked inside the block instead of sending them.

    Args:
        client: Capture only this client's events; by default, every client's (those
            created inside the block included).

    Yields:
        A list that fills with each event as a dict in the wire format (``type``,
        ``event``, ``userId``, ``properties``, ``context``, ``messageId``, ``timestamp``),
        after JSON coercion, exactly as it would be sent. ``before_send`` is not applied,
        and captured events do not count in ``client.stats``.

    Captures nest; the innermost matching one receives the event. Thread-safe for the
    events, but the block itself is process-wide: use it from one test at a time.
    """
    sink: list[dict[str, Any]] = []
    targets: list[Any] = [client] if client is not None else _lifecycle.live()
    if client is None:
        _lifecycle.global_captures.insert(0, sink)
    for target in targets:
        target._pipeline.capture(sink)
    try:
        yield sink
    finally:
        if client is None:
            _lifecycle.global_captures.remove(sink)
            targets = _lifecycle.live()
        for target in targets:
            target._pipeline.release(sink)
