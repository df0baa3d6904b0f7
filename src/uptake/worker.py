"""The background thread that drains the buffer into batches and hands them to the transport.

Batching: the worker wakes when ``flush_at`` events are queued, every ``flush_interval``
seconds, on ``flush()`` and at shutdown. Woken early by a full batch it sends full batches
only; on the interval, a flush or shutdown it sends everything queued. A batch holds as many
queued events as fit in ``max_batch_bytes``, so a backlog drains in few, large requests.

Accounting: events get consecutive positions when they are queued. The worker settles them
in order (delivered, failed or dropped), so ``flush()`` only has to wait until the settled
position reaches the one queued last before it was called.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .buffer import Buffer
from .errors import DeliveryError
from .stats import Counters
from .transport import HttpTransport, SendOutcome

logger = logging.getLogger("uptake")

_NO_LIMIT = 1 << 62


class _Waiter:
    __slots__ = ("ok", "target")

    def __init__(self, target: int) -> None:
        self.target = target
        self.ok = True


class Worker:
    """Owns the sending thread of one client (internal).

    ``counters.lock`` guards the buffer, the counters and the positions below; the client
    takes it to enqueue.
    """

    def __init__(
        self,
        *,
        buffer: Buffer,
        counters: Counters,
        transport: HttpTransport,
        flush_at: int,
        flush_interval: float,
        max_batch_bytes: int,
        report: Callable[[DeliveryError], None],
        on_tick: Callable[[], None],
    ) -> None:
        self.buffer = buffer
        self.counters = counters
        self.transport = transport
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_batch_bytes = max_batch_bytes
        self._report = report
        self._on_tick = on_tick
        self._cond = threading.Condition(counters.lock)
        self._wake = threading.Event()
        self._settled = 0  # positions settled; counters.enqueued is the next position
        self._waiters: list[_Waiter] = []
        self._stopping = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # ------------------------------------------------------------------ control

    def wake(self) -> None:
        """Ask the thread to look at the buffer now (a full batch is waiting)."""
        self._wake.set()

    def ensure_started(self) -> None:
        """Start the thread if it is not running. Thread-safe."""
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is not None or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="uptake-worker", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: no new threads
                logger.warning("cannot start the delivery thread at interpreter exit")
                return
            self._thread = thread

    def flush(self, timeout: float) -> bool:
        """Wait until every event queued before this call is settled; True if all delivered."""
        if threading.current_thread() is self._thread:
            # Called from a hook running on the delivery thread: waiting would wait on itself.
            logger.warning("flush() called on the delivery thread (from a hook); not waiting")
            return False
        with self._cond:
            target = self.counters.enqueued
            if self._settled >= target:
                return True
            waiter = _Waiter(target)
            self._waiters.append(waiter)
        self.ensure_started()
        self._wake.set()
        with self._cond:
            try:
                done = self._cond.wait_for(lambda: self._settled >= target, timeout)
            finally:
                self._waiters.remove(waiter)
            return done and waiter.ok

    def stop(self, deadline: float) -> bool:
        """Drain what is queued until ``deadline`` (monotonic), then stop the thread.

        Events still queued at the deadline are dropped and counted. Returns False when the
        thread is still stuck in a request at the deadline (its batch stays in flight).
        """
        with self._cond:
            self._stopping = True
            self._deadline = deadline
        self.transport.abort_after(deadline)
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # hung on a request that outlived the deadline
                with self._cond:
                    queued, in_flight = len(self.buffer), self.counters.in_flight
                logger.warning(
                    "shutdown deadline passed with %d events queued and %d in flight",
                    queued,
                    in_flight,
                )
                return False
        self._drop_queued("client shut down before delivery")
        self.transport.close()
        return True

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        next_due = time.monotonic() + self.flush_interval
        while True:
            try:
                self._wake.wait(max(0.0, next_due - time.monotonic()))
                self._wake.clear()
                now = time.monotonic()
                due = now >= next_due
                if due:
                    next_due = now + self.flush_interval
                self._drain(force=due or bool(self._waiters) or self._stopping)
                self._on_tick()
                if self._stopping:
                    with self._cond:
                        finished = not len(self.buffer) or self._past_deadline()
                    if finished:
                        self._drop_queued("client shut down before delivery")
                        return
            except Exception:  # never let a bug end delivery silently
                logger.exception("unexpected error in the delivery thread")

    def _drain(self, force: bool) -> None:
        while True:
            with self._cond:
                queued = len(self.buffer)
                if not queued or (not force and queued < self.flush_at):
                    return
                if self._past_deadline():
                    return
                batch = self.buffer.take(_NO_LIMIT, self.max_batch_bytes)
                start = self._settled
                self.counters.in_flight = len(batch)
            outcome = self.transport.send(batch)
            self._settle(start, len(batch), outcome)
            force = force or bool(self._waiters)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _settle(self, start: int, count: int, outcome: SendOutcome) -> None:
        with self._cond:
            self.counters.in_flight = 0
            self.counters.delivered += outcome.delivered
            for failure in outcome.failures:
                self.counters.failed[_reason_key(failure)] += failure.count
        for failure in outcome.failures:  # before waking flush(), so on_error has run
            self._report(failure)
        with self._cond:
            self._settled = start + count
            if outcome.failures:
                for waiter in self._waiters:
                    if waiter.target > start:
                        waiter.ok = False
            self._cond.notify_all()

    def _drop_queued(self, reason: str) -> None:
        with self._cond:
            count = self.buffer.clear()
            if not count:
                return
            self.counters.dropped["shutdown"] += count
            start = self._settled
            self._settled += count
            for waiter in self._waiters:
                if waiter.target > start:
                    waiter.ok = False
            self._cond.notify_all()
        self._report(DeliveryError(reason, count=count))


def _reason_key(failure: DeliveryError) -> str:
    if failure.status is not None:
        return f"http_{failure.status}"
    if failure.reason.startswith("client shut down"):
        return "shutdown"
    return "unreachable"
