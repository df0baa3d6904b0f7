"""The delivery part of the public Client API: flush, shutdown and the counters.

:class:`DeliveryApi` is a base of :class:`~uptake.Client`. The work is the worker's and
the reporter's; these methods decide what to wait for and what to answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import _lifecycle
from ._config import Delivery, check_timeout
from ._lifecycle import ClientState
from .buffer import Buffer
from .pipeline import Pipeline
from .rules.facade import RulesFacade
from .sessions import Sessionizer
from .stats import Reporter, Stats
from .worker import Worker

__all__ = ["DeliveryApi"]


class DeliveryApi:
    """Delivery methods of the client (a base class of :class:`~uptake.Client`)."""

    _buffer: Buffer
    _delivery: Delivery
    _flush_checkpoint: int
    _pipeline: Pipeline
    _reporter: Reporter
    _rules: RulesFacade
    _sessions: Sessionizer
    _shutdown_result: bool
    _state: ClientState
    _worker: Worker
    _stop_lanes: Callable[[], None]

    # ------------------------------------------------------------------ delivery

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is queued now and wait for it, at most ``timeout`` seconds.

        Returns:
            True when every event queued before the call was delivered; False when some
            were given up, or the timeout passed first. Thread-safe.
        """
        check_timeout(timeout)
        deadline = time.monotonic() + timeout
        # Events the rules could not apply while their store was down: at most half the
        # time (delivering what is queued matters more), and the whole call within it.
        self._rules.catch_up(until=deadline - timeout / 2)
        if self._state is ClientState.CLOSED or not self._delivery.send:
            return self._nothing_lost() and not len(self._buffer)
        self._pipeline.sweep()
        return self._flush(max(0.0, deadline - time.monotonic()))

    def _flush(self, timeout: float) -> bool:
        clean = self._nothing_lost()
        delivered = self._worker.flush(timeout)
        self._nothing_lost()  # losses seen while waiting are this call's answer, not the next's
        return delivered and clean

    def _nothing_lost(self) -> bool:
        """True if no event was lost since the previous call (flush() asks this)."""
        counters = self._reporter.counters
        with counters.lock:
            losses = counters.losses()
            clean = losses == self._flush_checkpoint
            self._flush_checkpoint = losses
        return clean

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued (for at most ``timeout`` seconds) and stop the worker.

        Events still queued at the deadline are dropped, counted and reported (a durable
        buffer keeps them on disk instead). Later tracking calls drop their events (counted
        as ``"closed"``). Safe to call twice: the second call returns the first's result.

        Returns:
            True when everything tracked since the last flush() was delivered.
        """
        check_timeout(timeout)
        deadline = time.monotonic() + timeout
        with self._reporter.counters.lock:
            if self._state is ClientState.CLOSED:
                return self._shutdown_result
            self._state = ClientState.CLOSED
            self._pipeline.closed = True
        _lifecycle.unregister(self)
        # Open sessions are not ended: a process exit is not the user leaving.
        self._sessions.clear()
        # Leave a fifth of the time (at most a second) to stop the thread cleanly, and make
        # retries give up by then rather than sleep past it.
        grace = min(1.0, timeout / 5)
        self._worker.abort_after(deadline - grace / 2)
        delivered = self._flush(timeout - grace) if self._delivery.send else self._nothing_lost()
        stopped = self._worker.stop(deadline)
        self._stop_lanes()
        self._reporter.report_drops(rate_limited=True)
        self._shutdown_result = delivered and stopped
        return self._shutdown_result

    @property
    def stats(self) -> Stats:
        """A snapshot of the delivery counters (see :class:`~uptake.Stats`). Thread-safe."""
        return self._rules.stats(self._reporter.counters.snapshot(self._buffer))

    def _buffer_dropped(self, reason: str, count: int, oldest: int) -> None:
        """A buffer dropped events it had accepted (a full outbox discards its oldest)."""
        self._reporter.dropped(reason, count, tracked=False)
        self._worker.note_dropped(oldest)
