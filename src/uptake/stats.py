"""Delivery counters and the frozen :class:`Stats` snapshot that ``Client.stats`` returns."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

import attrs

__all__ = ["Stats"]


@attrs.frozen
class Stats:
    """A snapshot of what happened to the events a client was given.

    Every event accepted by a tracking call ends up in exactly one of ``delivered``,
    ``dropped`` or ``failed``, or is still ``queued`` / ``in_flight``; so
    ``tracked == delivered + dropped + failed + queued + in_flight`` at any moment, and
    ``tracked == delivered + dropped + failed`` once the queue is drained.

    Attributes:
        tracked: Events accepted by ``track``/``identify``/``group``/session calls,
            including uptake's own session events.
        enqueued: Events put in the buffer for delivery.
        delivered: Events the collector acknowledged with a 2xx response.
        dropped: Events never sent because of a limit or a choice: queue full, over the
            size limit, removed by ``before_send``, sending disabled, client shut down.
        failed: Events sent and given up: refused by the collector, or out of retries.
        retried: Retry attempts made (a batch retried three times counts three).
        queued: Events waiting in the buffer now.
        in_flight: Events being sent now.
        dropped_by_reason: ``dropped`` broken down by reason.
        failed_by_reason: ``failed`` broken down by reason.
    """

    tracked: int = 0
    enqueued: int = 0
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    retried: int = 0
    queued: int = 0
    in_flight: int = 0
    dropped_by_reason: Mapping[str, int] = attrs.field(factory=dict)
    failed_by_reason: Mapping[str, int] = attrs.field(factory=dict)


class Counters:
    """The mutable, thread-safe counters behind :class:`Stats` (internal)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracked = 0
        self.enqueued = 0
        self.delivered = 0
        self.retried = 0
        self.in_flight = 0
        self.dropped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def add_dropped(self, reason: str, count: int = 1) -> None:
        """Count events dropped for ``reason``; ``count`` may be 0."""
        with self.lock:
            self.dropped[reason] += count

    def add_failed(self, reason: str, count: int) -> None:
        """Count events given up after sending, for ``reason``."""
        with self.lock:
            self.failed[reason] += count

    def snapshot(self, held: int) -> Stats:
        """Return a frozen copy of the counters; ``held`` counts queued plus in-flight events."""
        with self.lock:
            return Stats(
                tracked=self.tracked,
                enqueued=self.enqueued,
                delivered=self.delivered,
                dropped=sum(self.dropped.values()),
                failed=sum(self.failed.values()),
                retried=self.retried,
                queued=max(0, held - self.in_flight),
                in_flight=self.in_flight,
                dropped_by_reason=MappingProxyType(dict(+self.dropped)),
                failed_by_reason=MappingProxyType(dict(+self.failed)),
            )
