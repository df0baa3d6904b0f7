"""End to end over real sockets: a client against a loopback collector with faults."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import uptake
from uptake.testing import LoopbackCollector

from .conftest import track_names

MakeClient = Callable[..., uptake.Client]


def test_flaky_collector_loses_nothing_and_duplicates_nothing(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    collector.fail_every(3, 503)
    client = make_client()
    for round_ in range(10):  # ten flushes: at least ten requests, so a third fail
        for i in range(100):
            client.track(f"u{i % 7}", "E", {"i": round_ * 100 + i})
        assert client.flush(timeout=30)
    stats = client.stats
    assert stats.delivered == stats.tracked == 1_007
    assert stats.retried >= 3
    assert len(collector.message_ids) == 1_007 and collector.duplicates == 0


def test_rate_limited_collector_is_obeyed(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    collector.respond_with(429, headers={"Retry-After": "1"})
    client = make_client()
    client.track("u1", "E")
    started = time.monotonic()
    assert client.flush(timeout=10)
    assert time.monotonic() - started >= 1.0
    statuses = [r.status for r in collector.requests]
    assert statuses == [429, 200]
    assert client.stats.retried == 1


def test_collector_down_then_up(make_client: MakeClient) -> None:
    collector = LoopbackCollector(write_key="wk_test_secret")
    collector.start()
    url = collector.url
    collector.stop()  # down: connections refused
    try:
        client = make_client(endpoint=url, flush_at=10)
        for i in range(500):
            client.track("u1", "During Outage", {"i": i})
        assert client.flush(timeout=0.3) is False
        collector.start()  # back on the same port
        assert client.flush(timeout=30)
        assert track_names(collector.events).count("During Outage") == 500
        assert collector.duplicates == 0
    finally:
        collector.stop()


def test_413_splits_batches(collector: LoopbackCollector, make_client: MakeClient) -> None:
    collector.max_events_per_batch = 7
    client = make_client(flush_interval=60, flush_at=10_000)
    collector.hang()
    for i in range(100):
        client.track("u1", "E", {"i": i})
    collector.release()
    assert client.flush(timeout=10)
    assert [e["properties"]["i"] for e in collector.events if e["event"] == "E"] == list(range(100))
    assert any(r.status == 413 for r in collector.requests)
    assert client.stats.failed == 0


def test_400_fails_the_batch_without_retry(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    errors: list[uptake.DeliveryError] = []
    collector.respond_with(400)
    client = make_client(on_error=errors.append)
    client.track("u1", "Doomed")
    assert client.flush(timeout=5) is False
    assert [r.status for r in collector.requests] == [400]
    assert client.stats.failed == 2 and client.stats.failed_by_reason == {"http_400": 2}
    assert [(e.status, e.count) for e in errors] == [(400, 2)]
    client.track("u1", "Fine")  # the next batch is unaffected
    assert client.flush(timeout=5)


def test_wrong_write_key_is_reported(collector: LoopbackCollector, make_client: MakeClient) -> None:
    errors: list[uptake.DeliveryError] = []
    client = make_client(write_key="wrong", on_error=errors.append)
    client.track("u1", "E")
    assert client.flush(timeout=5) is False
    assert errors[0].status == 401 and "write key" in errors[0].reason


def test_hung_collector_flush_and_shutdown_return_on_time(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    collector.hang()  # accepts, reads, never answers
    client = make_client(timeout=30)
    for i in range(50):
        client.track("u1", "E", {"i": i})
    started = time.monotonic()
    assert client.flush(timeout=0.5) is False
    assert time.monotonic() - started < 3
    started = time.monotonic()
    assert client.shutdown(timeout=0.5) is False
    assert time.monotonic() - started < 3
    stats = client.stats
    assert stats.delivered == 0
    assert stats.tracked == stats.queued + stats.in_flight + stats.dropped + stats.failed


def test_track_never_waits_on_the_network(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    collector.hang()
    client = make_client(flush_at=1)
    done = []

    def burst() -> None:
        for i in range(2_000):
            client.track("u1", "E", {"i": i})
        done.append(True)

    import threading

    thread = threading.Thread(target=burst)
    thread.start()
    thread.join(timeout=10)  # would hang forever if track() waited on the collector
    assert done == [True]
    assert client.stats.queued + client.stats.in_flight == 2_001


def test_a_bug_in_sending_fails_the_batch_instead_of_losing_it(
    collector: LoopbackCollector, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[uptake.DeliveryError] = []
    client = make_client(on_error=errors.append)

    def broken(messages: object, offset: int = 0) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(client._worker.transport, "send", broken)
    client.track("u1", "E")
    assert client.flush(timeout=5) is False  # answered at once, not after a hang
    assert client.stats.failed == 2 and client.stats.in_flight == 0
    assert "internal error" in errors[0].reason
    monkeypatch.undo()
    client.track("u1", "After")
    assert client.flush(timeout=5)


def test_long_retry_after_holds_sending_but_not_the_client(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    errors: list[uptake.DeliveryError] = []
    collector.respond_with(503, headers={"Retry-After": "3600"})
    client = make_client(on_error=errors.append, retry_timeout=1)
    client.track("u1", "First")
    assert client.flush(timeout=5) is False  # given up: an hour is past the retry budget
    client.track("u1", "Second")
    assert client.flush(timeout=0.3) is False  # held back: nothing is sent before the hour
    assert [r.status for r in collector.requests] == [503]
    assert client._worker.transport.ready_in() > 3000
    assert errors and errors[0].status == 503
