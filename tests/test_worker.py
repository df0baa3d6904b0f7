"""The delivery thread on its own: a buffer, a transport and a reporter, no client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from uptake.buffer import MemoryBuffer
from uptake.errors import DeliveryError
from uptake.stats import Reporter
from uptake.testing import MockTransport
from uptake.transport import SendOutcome, Transport
from uptake.worker import Worker


def event(n: int) -> bytes:
    return b'{"type":"track","event":"E%d"}' % n


class Parts:
    def __init__(self, transport: Transport, *, flush_at: int = 10, max_batch_bytes: int = 500_000):
        self.errors: list[tuple[DeliveryError, str]] = []
        self.reporter = Reporter(
            lambda error: self.errors.append((error, threading.current_thread().name))
        )
        self.buffer = MemoryBuffer()
        self.buffer.configure(max_events=1000, max_bytes=1 << 20, on_drop=_no_drop, lease=60)
        self.worker = Worker(
            buffer=self.buffer,
            transport=transport,
            reporter=self.reporter,
            flush_at=flush_at,
            flush_interval=60.0,  # long: only a full batch, flush() or stop() send
            max_batch_bytes=max_batch_bytes,
        )

    def put(self, count: int) -> None:
        for n in range(count):
            with self.reporter.counters.lock:
                assert self.reporter.count_put(self.buffer.put(event(n)))


def _no_drop(reason: str, count: int, oldest: int) -> None:
    raise AssertionError("a memory buffer never drops on its own")


@pytest.fixture
def parts() -> Iterator[Parts]:
    made = Parts(MockTransport())
    yield made
    made.worker.stop(time.monotonic() + 5)


def test_flush_sends_everything_queued_and_counts_it(parts: Parts) -> None:
    parts.put(25)
    assert parts.worker.flush(5.0)
    transport = parts.worker.transport
    assert isinstance(transport, MockTransport)
    assert [e["event"] for e in transport.events] == [f"E{n}" for n in range(25)]
    stats = parts.reporter.counters.snapshot(parts.buffer)
    assert (stats.tracked, stats.delivered, stats.queued, stats.failed) == (25, 25, 0, 0)


def test_a_full_batch_is_sent_when_the_worker_is_woken() -> None:
    sent = threading.Event()
    transport = MockTransport(lambda batch: sent.set())
    parts = Parts(transport, flush_at=10)
    try:
        parts.put(10)
        parts.worker.ensure_started()
        parts.worker.wake()
        assert sent.wait(5.0)  # no flush(): the full batch alone made it go
        assert len(transport.batches[0]) == 10
    finally:
        parts.worker.stop(time.monotonic() + 5)


def test_batches_respect_the_byte_limit() -> None:
    transport = MockTransport()
    parts = Parts(transport, max_batch_bytes=64 + 3 * (len(event(0)) + 1))
    try:
        parts.put(9)
        assert parts.worker.flush(5.0)
        assert [len(b) for b in transport.batches] == [3, 3, 3]
    finally:
        parts.worker.stop(time.monotonic() + 5)


def test_refused_events_fail_and_reach_on_error_on_the_delivery_thread() -> None:
    parts = Parts(MockTransport(lambda batch: 400))
    try:
        parts.put(3)
        assert not parts.worker.flush(5.0)
        stats = parts.reporter.counters.snapshot(parts.buffer)
        assert (stats.failed, stats.delivered, dict(stats.failed_by_reason)) == (
            3,
            0,
            {"http_400": 3},
        )
        [(error, thread)] = parts.errors
        assert (error.status, error.count, thread) == (400, 3, "uptake-worker")
    finally:
        parts.worker.stop(time.monotonic() + 5)


def test_a_transport_that_raises_fails_the_batch_without_losing_count() -> None:
    class Broken:
        def send(self, messages: Sequence[bytes]) -> SendOutcome:
            raise RuntimeError("bug")

    parts = Parts(Broken())
    try:
        parts.put(4)
        assert not parts.worker.flush(5.0)
        stats = parts.reporter.counters.snapshot(parts.buffer)
        assert stats.failed == 4 and stats.queued == 0
    finally:
        parts.worker.stop(time.monotonic() + 5)


def test_stop_drains_then_closes_the_transport() -> None:
    class Closing(MockTransport):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    transport = Closing()
    parts = Parts(transport)
    parts.put(5)
    parts.worker.ensure_started()
    assert parts.worker.stop(time.monotonic() + 5)
    assert len(transport.events) == 5 and transport.closed == 1


def test_stop_without_a_thread_counts_what_is_left_as_dropped() -> None:
    parts = Parts(MockTransport())
    parts.put(2)
    parts.worker._stopping = True  # as if the thread could not start (interpreter exit)
    assert parts.worker.stop(time.monotonic() + 1)
    stats = parts.reporter.counters.snapshot(parts.buffer)
    assert dict(stats.dropped_by_reason) == {"shutdown": 2}
    assert [e.count for e, _ in parts.errors] == [2]


def test_drops_counted_by_the_caller_are_reported_by_the_worker(parts: Parts) -> None:
    parts.reporter.dropped("too_large", 2)
    parts.put(1)
    assert parts.worker.flush(5.0)
    assert [(e.count, thread) for e, thread in parts.errors] == [(2, "uptake-worker")]
    assert "larger than" in parts.errors[0][0].reason


def test_flush_from_the_delivery_thread_does_not_wait_on_itself() -> None:
    answers: list[bool] = []
    parts: Parts

    def handler(batch: object) -> None:
        answers.append(parts.worker.flush(5.0))

    parts = Parts(MockTransport(handler))
    try:
        parts.put(1)
        assert parts.worker.flush(5.0)
        assert answers == [False]
    finally:
        parts.worker.stop(time.monotonic() + 5)
