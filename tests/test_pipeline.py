"""The event's path on the caller's thread, and which thread runs each host hook."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import uptake
from uptake.testing import MockTransport, capture_events


def test_before_send_and_callbacks_run_on_the_calling_thread() -> None:
    threads: dict[str, set[str]] = {"before_send": set(), "milestone": set(), "nudge": set()}

    def before_send(event: dict[str, Any]) -> dict[str, Any]:
        threads["before_send"].add(threading.current_thread().name)
        return event

    client = uptake.Client(
        transport=MockTransport(),
        before_send=before_send,
        milestones=[uptake.Milestone("first", any_of=["Go"])],
        nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Go", 1))],
    )
    client.on_milestone()(lambda r: threads["milestone"].add(threading.current_thread().name))
    client.on_nudge()(lambda n: threads["nudge"].add(threading.current_thread().name))

    def host() -> None:
        client.track("u1", "Go")

    worker = threading.Thread(target=host, name="host-request")
    worker.start()
    worker.join()
    assert client.flush(5.0)
    client.shutdown()
    assert threads == {k: {"host-request"} for k in threads}


def test_on_error_runs_on_the_delivery_thread() -> None:
    seen: list[str] = []
    client = uptake.Client(
        transport=MockTransport(lambda batch: 400),
        on_error=lambda error: seen.append(threading.current_thread().name),
    )
    client.track("u1", "Go")
    assert not client.flush(5.0)
    client.shutdown()
    assert seen == ["uptake-worker"]


def test_idle_sessions_end_on_the_callers_thread_not_the_delivery_thread() -> None:
    ended: list[str] = []

    def before_send(event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == "Session Ended":
            ended.append(threading.current_thread().name)
        return event

    client = uptake.Client(transport=MockTransport(), before_send=before_send)
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    client.track("u1", "Go", timestamp=an_hour_ago)  # idle for an hour by now
    assert client.flush(5.0)  # flush() looks for idle sessions, on this thread
    client.shutdown()
    assert ended == [threading.current_thread().name]


def test_settings_are_read_only_after_construction() -> None:
    client = uptake.Client(send=False)
    with pytest.raises(AttributeError):
        client.send = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        client.endpoint = "http://127.0.0.1:9"  # type: ignore[misc]
    assert client.send is False and client.flush_at == 100
    client.track("u1", "Go")
    assert client.stats.dropped_by_reason == {"send_disabled": 2}


def test_a_mock_transport_needs_no_key_or_endpoint_and_sees_every_batch() -> None:
    transport = MockTransport()
    client = uptake.Client(transport=transport)
    client.track("u1", "Signed Up", {"plan": "pro"})
    assert client.flush(5.0)
    client.shutdown()
    assert [e["event"] for e in transport.events] == ["Session Started", "Signed Up"]
    assert transport.events[1]["properties"] == {"plan": "pro"}
    assert client.stats.delivered == 2


def test_a_mock_transport_answer_decides_delivery() -> None:
    client = uptake.Client(transport=MockTransport(lambda batch: 503))
    client.track("u1", "Go")
    assert not client.flush(5.0)
    client.shutdown()
    assert client.stats.failed_by_reason == {"http_503": 2}


def test_a_transport_without_send_is_refused() -> None:
    with pytest.raises(uptake.ConfigurationError, match="send"):
        uptake.Client(transport=object())  # type: ignore[arg-type]


def test_before_send_gets_a_json_ready_copy_it_may_change() -> None:
    received: list[dict[str, Any]] = []

    def before_send(event: dict[str, Any]) -> dict[str, Any]:
        received.append(event)
        event["properties"]["added"] = True
        return event

    transport = MockTransport()
    client = uptake.Client(transport=transport, before_send=before_send)
    mine = {"tags": {"b"}, "nested": {"when": datetime(2026, 1, 1, tzinfo=timezone.utc)}}
    client.track("u1", "Go", mine)
    assert client.flush(5.0)
    client.shutdown()
    assert mine == {"tags": {"b"}, "nested": {"when": datetime(2026, 1, 1, tzinfo=timezone.utc)}}
    sent = transport.events[-1]["properties"]
    assert sent == {"tags": ["b"], "nested": {"when": "2026-01-01T00:00:00Z"}, "added": True}
    assert received[-1]["properties"] == sent


def test_a_capture_replaces_the_sink_of_clients_made_inside_it() -> None:
    with capture_events() as events:
        client = uptake.Client(send=False)
        client.track("u1", "Inside")
    client.track("u1", "Outside")
    assert [e["event"] for e in events] == ["Session Started", "Inside"]
    assert client.stats.tracked == 1


def test_tracking_after_shutdown_is_counted_and_reported() -> None:
    errors: list[uptake.DeliveryError] = []
    client = uptake.Client(transport=MockTransport(), on_error=errors.append)
    client.shutdown()
    started = time.monotonic()
    client.track("u1", "Late")
    assert time.monotonic() - started < 1.0
    assert client.stats.dropped_by_reason == {"closed": 1}
    assert [e.count for e in errors] == [1]


def test_a_burst_past_half_the_queue_yields_to_the_delivery_thread() -> None:
    transport = MockTransport()
    client = uptake.Client(transport=transport, max_queue_size=2_000, flush_interval=60)
    for i in range(30_000):  # fifteen times the queue, flat out
        client.track(f"u{i % 50}", "Burst", {"i": i})
    assert client.flush(10.0)
    client.shutdown()
    assert client.stats.dropped == 0 and client.stats.delivered == 30_050
    assert len(transport.events) == 30_050


def test_before_send_may_change_the_library_without_touching_other_events() -> None:
    from uptake.events import LIBRARY

    def before_send(event: dict[str, Any]) -> dict[str, Any]:
        event["context"]["library"]["name"] = "renamed"
        return event

    transport = MockTransport()
    client = uptake.Client(transport=transport, before_send=before_send)
    client.track("u1", "One")
    client.track("u1", "Two", context={"ip": "127.0.0.1", "tags": {"a"}})
    assert client.flush(5.0)
    client.shutdown()
    assert LIBRARY["name"] == "uptake"
    assert {e["context"]["library"]["name"] for e in transport.events} == {"renamed"}
    assert transport.events[-1]["context"]["tags"] == ["a"]


def test_a_burst_into_the_outbox_yields_to_its_writer(tmp_path: Path) -> None:
    buffer = uptake.SqliteBuffer(tmp_path / "outbox.db")
    # Without the yield this burst drops about half its events at a 5,000 bound (16,494 of
    # 30,000 measured); with it, none on a quiet machine. The wait is bounded by design
    # (5 ms at most per flush_at events), so a machine whose disk is busy with other work
    # can still fall behind: 1,250 were dropped once at a load average of 5. Hence a bound
    # that tells the two apart at any load, and an exact account of every event.
    client = uptake.Client(transport=MockTransport(), buffer=buffer, max_queue_size=5_000)
    for i in range(30_000):
        client.track(f"u{i % 50}", "Burst", {"i": i})
    client.flush(30.0)
    client.shutdown()
    stats = client.stats
    assert stats.dropped <= 3_000, stats.dropped_by_reason
    assert set(stats.dropped_by_reason) <= {"queue_full", "outbox_full"}
    assert stats.delivered + stats.dropped == 30_050 and stats.failed == 0


def test_properties_that_fail_to_copy_for_before_send_are_a_counted_drop() -> None:
    class Changing(dict[str, Any]):  # as a dict another thread changes during the copy
        def items(self) -> Any:
            raise RuntimeError("dictionary changed size during iteration")

    transport = MockTransport()
    client = uptake.Client(transport=transport, before_send=lambda event: event)
    client.track("u1", "Odd", {"p": Changing(a=1)})  # must not raise in the host's call
    client.track("u1", "Fine", {"p": {"a": 1}})
    client.flush(5.0)
    client.shutdown()
    assert client.stats.dropped_by_reason == {"before_send_error": 1}
    assert [e["event"] for e in transport.events if e["event"] != "Session Started"] == ["Fine"]
