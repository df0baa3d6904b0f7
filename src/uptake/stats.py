"""Delivery counters, the frozen :class:`Stats` snapshot ``Client.stats`` returns, and the
reporter that counts outcomes and tells the host about losses."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType

import attrs

from .buffer import Buffer
from .errors import DeliveryError

logger = logging.getLogger("uptake")

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
        rules_skipped: Events the rules (milestones, engagement, nudges) could not
            apply when they were tracked, because the store failed or was unreachable;
            they were still sent. Each is counted once: it is replayed later, left out
            for good (``rules_overflowed``, or an error that is not an outage), or is
            still waiting.
        rules_replayed: Of ``rules_skipped``, events applied later, in order, once the
            store answered again (each exactly once).
        rules_overflowed: Of ``rules_skipped``, events left out of the rules for good
            because 10,000 were already waiting for the store.
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
    rules_replayed: int = 0
    rules_overflowed: int = 0


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
        #: Events a ``send=False`` client was given: tracked and dropped ("send_disabled"),
        #: kept apart so that counting one is a single increment under the lock.
        self.disabled = 0

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
            dropped = self.dropped
            if self.disabled:
                dropped = dropped.copy()
                dropped["send_disabled"] += self.disabled
            return Stats(
                tracked=self.tracked + self.disabled,
                enqueued=self.enqueued,
                delivered=self.delivered,
                dropped=sum(dropped.values()),
                failed=sum(self.failed.values()),
                retried=self.retried,
                queued=max(0, held - self.in_flight),
                in_flight=self.in_flight,
                dropped_by_reason=MappingProxyType(dict(+dropped)),
                failed_by_reason=MappingProxyType(dict(+self.failed)),
            )


#: What the log and ``on_error`` say for each drop reason.
DROP_REASONS = {
    "queue_full": "queue full (max_queue_size / max_queue_bytes reached); new events dropped",
    "outbox_full": "outbox full (SqliteBuffer max_events / max_bytes reached); oldest dropped",
    "too_large": "event larger than the size limit once encoded; dropped",
    "closed": "event tracked after shutdown(); dropped",
    "unencodable": "event could not be encoded as JSON; dropped",
    "before_send_error": "before_send failed; event dropped",
}


class Reporter:
    """Counts what becomes of events and tells the host about losses (internal).

    The one place the caller side (drops) and the delivery thread (deliveries, failures,
    retries) record outcomes. Losses counted on the caller side are reported to the log
    and ``on_error`` later, by :meth:`report_drops`, so a tracking call never runs the
    host's error hook.
    """

    def __init__(self, on_error: Callable[[DeliveryError], object] | None) -> None:
        self.counters = Counters()
        self._on_error = on_error
        self._unreported: Counter[str] = Counter()
        self._logged: Counter[str] = Counter()
        self._last_warning = 0.0

    def retried(self) -> None:
        """Count one retry attempt."""
        with self.counters.lock:
            self.counters.retried += 1

    def dropped(
        self,
        reason: str,
        count: int = 1,
        *,
        tracked: bool = True,
        log: bool = True,
        logged: bool = False,
    ) -> None:
        """Count events dropped for ``reason``; ``tracked`` when they were never counted.

        ``logged``: the caller already logged the drop, so :meth:`report_drops` tells
        ``on_error`` only (its own log line is at debug level).
        """
        with self.counters.lock:
            if tracked:
                self.counters.tracked += count
            self.counters.dropped[reason] += count
            if logged:
                self._logged[reason] += count
            elif log:
                self._unreported[reason] += count

    def count_put(self, accepted: bool) -> int:
        """Count one event offered to the buffer; call with ``counters.lock`` held.

        Returns how many events were accepted so far, or 0 if this one was refused.
        """
        counters = self.counters
        counters.tracked += 1
        if not accepted:
            counters.dropped["queue_full"] += 1
            self._unreported["queue_full"] += 1
            return 0
        counters.enqueued += 1
        return counters.enqueued

    def report(self, error: DeliveryError, *, quiet: bool = False) -> None:
        """Log a delivery problem and hand it to ``on_error``. Never raises."""
        logger.log(logging.DEBUG if quiet else logging.WARNING, "%s", error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                logger.exception("on_error hook raised")

    def report_drops(self, *, rate_limited: bool = False) -> None:
        """Report the drops counted since the last call, one error per reason.

        With ``rate_limited`` (no delivery thread any more: tracking calls after shutdown
        report their own drops) the log gets at most one warning a second; ``on_error``
        still hears of every drop.
        """
        with self.counters.lock:
            if not self._unreported and not self._logged:
                return
            unreported, self._unreported = self._unreported, Counter()
            logged, self._logged = self._logged, Counter()
            quiet = False
            if rate_limited:
                now = time.monotonic()
                quiet = now - self._last_warning < 1.0
                if not quiet:
                    self._last_warning = now
        for reason, count in unreported.items():
            self.report(DeliveryError(DROP_REASONS.get(reason, reason), count=count), quiet=quiet)
        for reason, count in logged.items():
            self.report(DeliveryError(DROP_REASONS.get(reason, reason), count=count), quiet=True)
