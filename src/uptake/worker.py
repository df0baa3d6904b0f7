"""The background thread that drains the buffer into batches and hands them to the transport.

Batching: the worker wakes when ``flush_at`` events are queued, every ``flush_interval``
seconds, on ``flush()`` and at shutdown. Woken early by a full batch it sends full batches
only; on the interval, a flush or shutdown it sends everything queued. A batch holds as many
queued events as fit in ``max_batch_bytes``, so a backlog drains in few, large requests.

Settling: events the collector refused for good are failed. Events it could not take for
now (no answer, 429, 5xx after the retry budget, or shutdown first) are failed too with a
memory buffer, but kept for a later attempt with a durable one.

The worker never calls up into the client: it depends on a :class:`~uptake.buffer.Buffer`,
a :class:`~uptake.transport.Transport` and a :class:`~uptake.stats.Reporter`, and it runs
no host code but ``on_error`` (through the reporter).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .buffer import Batch, Buffer
from .errors import DeliveryError
from .stats import Reporter
from .transport import Failure, SendOutcome, Transport

logger = logging.getLogger("uptake")

# How often flush() re-checks a durable buffer, which other processes may drain too.
_SHARED_POLL_S = 0.05
# Room left in a request body for {"batch":[...],"sentAt":"..."} around the events.
_ENVELOPE_BYTES = 64
# Longest the thread sleeps without running its chores (reporting drops).
_CHORES_EVERY_S = 1.0


def _no_wait() -> float:
    return 0.0


def _nothing(_deadline: float) -> None:
    return None


class _Waiter:
    __slots__ = ("mark", "ok")

    def __init__(self, mark: int) -> None:
        self.mark = mark
        self.ok = True


class Worker:
    """Owns the sending thread of one client (internal)."""

    def __init__(
        self,
        *,
        buffer: Buffer,
        transport: Transport,
        reporter: Reporter,
        flush_at: int,
        flush_interval: float,
        max_batch_bytes: int,
    ) -> None:
        self.buffer = buffer
        self.transport = transport
        self.reporter = reporter
        self.counters = reporter.counters
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_batch_bytes = max_batch_bytes
        # The optional parts of a transport, looked up once.
        ready_in: Callable[[], float] = getattr(transport, "ready_in", _no_wait)
        abort_after: Callable[[float], None] = getattr(transport, "abort_after", _nothing)
        self._ready_in = ready_in
        self.abort_after = abort_after
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._waiters: list[_Waiter] = []
        self._stopping = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # ------------------------------------------------------------------ control

    def wake(self) -> None:
        """Ask the thread to look at the buffer now (a full batch is waiting)."""
        self._wake.set()

    @property
    def started(self) -> bool:
        """True once the delivery thread has been started (it may have stopped since)."""
        return self._thread is not None

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
        """Wait until every event accepted before this call is settled; True if delivered."""
        if threading.current_thread() is self._thread:
            # Called from a hook running on the delivery thread: waiting would wait on itself.
            logger.warning("flush() called on the delivery thread (from a hook); not waiting")
            return False
        buffer = self.buffer
        deadline = time.monotonic() + timeout
        mark = buffer.mark()
        if buffer.drained(mark):
            return True
        waiter = _Waiter(mark)
        with self._cond:
            self._waiters.append(waiter)
        self.ensure_started()
        self._wake.set()
        poll = _SHARED_POLL_S if buffer.durable else None
        try:
            with self._cond:
                while not buffer.drained(mark):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining if poll is None else min(poll, remaining))
                return waiter.ok
        finally:
            with self._cond:
                self._waiters.remove(waiter)

    def stop(self, deadline: float) -> bool:
        """Drain what is queued until ``deadline`` (monotonic), then stop the thread.

        What a memory buffer still holds at the deadline is dropped and counted; a durable
        buffer keeps it for the next process. Returns False when the thread is still stuck
        in a request at the deadline (its batch stays in flight).
        """
        # Stop sending a little before the deadline, so the thread can settle and exit in time.
        grace = min(0.5, max(0.0, deadline - time.monotonic()) / 4)
        with self._cond:
            self._stopping = True
            self._deadline = deadline - grace
        self.abort_after(deadline - grace)
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # hung on a request that outlived the deadline
                logger.warning(
                    "shutdown deadline passed with %d events queued or in flight",
                    len(self.buffer),
                )
                self._close_buffer()  # commit or count what waits; the request stays in flight
                return False
        self._close_buffer()
        close: Callable[[], object] | None = getattr(self.transport, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.exception("error while closing the transport")
        return True

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        next_due = time.monotonic() + self.flush_interval
        while True:
            try:
                wait = next_due - time.monotonic()
                if self._deadline is not None:
                    wait = min(wait, self._deadline - time.monotonic())
                held_back = self._ready_in()
                if held_back > 0:  # Retry-After: sleep through it, but keep the chores going
                    wait = min(max(wait, held_back), _CHORES_EVERY_S)
                self._wake.wait(max(0.0, wait))
                self._wake.clear()
                now = time.monotonic()
                due = now >= next_due
                if due:
                    next_due = now + self.flush_interval
                # Drops first: a flush() woken by this drain finds them reported.
                self.reporter.report_drops()
                self._drain(force=due or bool(self._waiters) or self._stopping)
                if self._stopping and (not len(self.buffer) or self._past_deadline()):
                    self._close_buffer()
                    return
            except Exception:  # never let a bug end delivery silently
                logger.exception("unexpected error in the delivery thread")

    def _drain(self, force: bool) -> None:
        while not self._past_deadline():
            if self._ready_in() > 0:
                return  # the collector asked us to wait (Retry-After); _run wakes us then
            if not force and len(self.buffer) < self.flush_at:
                return
            batch = self.buffer.take(self.max_batch_bytes - _ENVELOPE_BYTES)
            if batch is None:
                return
            with self.counters.lock:
                self.counters.in_flight = len(batch)
            try:
                outcome = self.transport.send(batch.messages)
            except Exception as exc:  # a bug, not a delivery problem: fail, never lose
                logger.exception("unexpected error while sending a batch")
                error = DeliveryError(f"internal error: {exc!r}", count=len(batch))
                outcome = SendOutcome(failures=(Failure(error, 0, len(batch), False),))
            kept = self._settle(batch, outcome)
            if kept:
                return  # the collector is unavailable: the kept events wait for next time
            force = force or bool(self._waiters)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _settle(self, batch: Batch, outcome: SendOutcome) -> int:
        """Account for a sent batch; return how many events a durable buffer kept."""
        durable = self.buffer.durable
        keep = [(f.start, f.stop) for f in outcome.failures if durable and f.retryable]
        lost = [f for f in outcome.failures if not (durable and f.retryable)]
        if durable:  # file I/O: not under the counters lock, which track() takes
            self.buffer.settle(batch, keep)
        with self.counters.lock:
            if not durable:  # in the same step as the counters, so stats add up exactly
                self.buffer.settle(batch)
            self.counters.in_flight = 0
            self.counters.delivered += outcome.delivered
            for failure in lost:
                self.counters.failed[_reason_key(failure.error)] += failure.error.count
        for failure in lost:  # before waking flush(), so on_error has run
            self.reporter.report(failure.error)
        kept = sum(stop - start for start, stop in keep)
        if kept:
            logger.warning(
                "collector unavailable (%s); %d events kept in the outbox for a later attempt",
                outcome.failures[0].error.reason,
                kept,
            )
        with self._cond:
            if lost:
                for waiter in self._waiters:
                    if waiter.mark >= batch.low:
                        waiter.ok = False
            self._cond.notify_all()
        return kept

    def note_dropped(self, oldest: int) -> None:
        """Tell flush() waiters that events from number ``oldest`` on were dropped."""
        with self._cond:
            for waiter in self._waiters:
                if waiter.mark >= oldest:
                    waiter.ok = False
            self._cond.notify_all()

    def _close_buffer(self) -> None:
        lost = self.buffer.close()
        with self._cond:
            if lost:
                for waiter in self._waiters:
                    waiter.ok = False
            self._cond.notify_all()
        if lost:
            with self.counters.lock:
                self.counters.dropped["shutdown"] += lost
            self.reporter.report(DeliveryError("client shut down before delivery", count=lost))


def _reason_key(failure: DeliveryError) -> str:
    if failure.status is not None:
        return f"http_{failure.status}"
    if failure.reason.startswith("client shut down"):
        return "shutdown"
    return "unreachable"
