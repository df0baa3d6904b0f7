"""Delivery counters and the frozen :class:`Stats` snapshot that ``Client.stats`` returns."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from .buffer import Buffer

__all__ = ["Stats"]

#: Drop reasons that are the host's choice, not a loss (flush() still returns True).
INTENTIONAL_DROPS = frozenset({"before_send", "send_disabled"})


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
        rules_skipped: Events left out of the rules (milestones, engagement, nudges)
            because the store failed or was unreachable; they were still sent.
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
    rules_skipped: int = 0


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

    def losses(self) -> int:
        """Events lost so far: failed, or dropped other than on purpose (call with the lock)."""
        dropped = sum(n for reason, n in self.dropped.items() if reason not in INTENTIONAL_DROPS)
        return dropped + sum(self.failed.values())

    def snapshot(self, buffer: Buffer) -> Stats:
        """Return a frozen copy of the counters; ``len(buffer)`` counts queued and in flight.

        A memory buffer is read under the lock, so the numbers add up exactly; a durable
        one is read before it (it may wait on the disk, and track() takes this lock).
        """
        held = len(buffer) if buffer.durable else -1
        with self.lock:
            if held < 0:
                held = len(buffer)
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
