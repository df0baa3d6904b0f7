"""The Client facade: configuration, accounting, limits, hooks and lifecycle."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import uptake
from uptake.testing import LoopbackCollector, capture_events

from .conftest import WRITE_KEY, track_names

MakeClient = Callable[..., uptake.Client]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9",
        "http://127.8.9.10",
        "http://localhost:8080/",
        "http://[::1]:9",
        "https://events.example",
    ],
)
def test_accepted_endpoints(endpoint: str) -> None:
    uptake.Client(write_key="k", endpoint=endpoint)


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(uptake.ConfigurationError, match="allow_http=True"):
        uptake.Client(write_key="k", endpoint="http://events.example")
    uptake.Client(write_key="k", endpoint="http://events.example", allow_http=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "ftp://x"}, "http\\(s\\) URL"),
        ({"endpoint": "not a url"}, "http\\(s\\) URL"),
        ({"endpoint": "https://user:pw@x"}, "credentials"),
        ({"flush_at": 0}, "flush_at must be a positive int"),
        ({"flush_at": 1.5}, "flush_at must be a positive int"),
        ({"max_queue_size": -1}, "max_queue_size"),
        ({"flush_interval": 0}, "flush_interval must be a positive number"),
        ({"timeout": "5"}, "timeout"),
        ({"max_batch_bytes": 600_000}, "at most 500000"),
        ({"on_error": "log"}, "on_error must be callable"),
        ({"before_send": 1}, "before_send must be callable"),
        ({"exit_timeout": -1}, "exit_timeout"),
    ],
)
def test_bad_configuration_is_refused_clearly(options: dict[str, Any], message: str) -> None:
    options = {"write_key": "k", "endpoint": "https://events.example", **options}
    with pytest.raises(uptake.ConfigurationError, match=message):
        uptake.Client(**options)


def test_write_key_and_endpoint_are_required_to_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPTAKE_WRITE_KEY", raising=False)
    monkeypatch.delenv("UPTAKE_ENDPOINT", raising=False)
    with pytest.raises(uptake.ConfigurationError, match="UPTAKE_WRITE_KEY"):
        uptake.Client(endpoint="https://events.example")
    with pytest.raises(uptake.ConfigurationError, match="UPTAKE_ENDPOINT"):
        uptake.Client(write_key="k")
    uptake.Client(send=False)  # nothing needed when nothing is sent


def test_configuration_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, collector: LoopbackCollector
) -> None:
    monkeypatch.setenv("UPTAKE_WRITE_KEY", WRITE_KEY)
    monkeypatch.setenv("UPTAKE_ENDPOINT", collector.url)
    client = uptake.Client()
    client.track("u1", "From Env")
    assert client.shutdown(timeout=5)
    assert "From Env" in track_names(collector.events)


def test_write_key_stays_secret(caplog: pytest.LogCaptureFixture, make_client: MakeClient) -> None:
    errors: list[uptake.DeliveryError] = []
    # Nothing listens on port 9: every attempt fails and the batch is given up.
    client = make_client(endpoint="http://127.0.0.1:9", retry_timeout=0.1, on_error=errors.append)
    with caplog.at_level(logging.DEBUG):
        client.track("u1", "E")
        assert client.flush(timeout=5) is False
    assert WRITE_KEY not in repr(client)
    assert errors and all(WRITE_KEY not in f"{e} {e!r}" for e in errors)
    assert WRITE_KEY not in caplog.text


def test_library_adds_no_log_handlers() -> None:
    assert logging.getLogger("uptake").handlers == []


# ---------------------------------------------------------------- delivery and accounting


def test_events_arrive_in_the_segment_format(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    client = make_client()
    client.track("u1", "Report Created", {"rows": 10}, account_id="acme")
    client.identify("u1", {"plan": "pro"})
    client.group("u1", "acme", {"seats": 40})
    client.feature_used("u1", "reports", {"source": "menu"})
    assert client.flush(timeout=5)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in collector.events:
        by_type.setdefault(e["type"], []).append(e)
    report = next(e for e in by_type["track"] if e["event"] == "Report Created")
    assert report["userId"] == "u1" and report["properties"] == {"rows": 10}
    assert report["context"]["groupId"] == "acme"
    assert report["context"]["library"] == {"name": "uptake", "version": uptake.__version__}
    assert len(report["messageId"]) == 32 and report["timestamp"].endswith("Z")
    assert by_type["identify"][0]["traits"] == {"plan": "pro"}
    assert by_type["group"][0]["groupId"] == "acme"
    assert by_type["group"][0]["traits"] == {"seats": 40}
    feature = next(e for e in by_type["track"] if e["event"] == "Feature Used")
    assert feature["properties"] == {"source": "menu", "feature": "reports"}
    session_ids = {e["context"].get("sessionId") for e in collector.events}
    assert len(session_ids) == 1 and None not in session_ids
    assert collector.batches[0]["sentAt"].endswith("Z")


def test_stats_account_for_every_event(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    client = make_client(max_queue_size=50, flush_interval=60)
    collector.hang()  # nothing is delivered while we fill the queue
    for i in range(80):
        client.track("u1", "E", {"i": i})
    stats = client.stats
    assert stats.tracked == 81  # 80 + "Session Started"
    assert stats.queued == 50  # the interval (60 s) has not come: nothing sent yet
    assert stats.dropped_by_reason == {"queue_full": 31} and stats.dropped == 31
    collector.release()
    client.flush(timeout=5)
    stats = client.stats
    assert stats.tracked == stats.delivered + stats.dropped + stats.failed
    assert stats.queued == stats.in_flight == 0
    assert len(collector.message_ids) == stats.delivered


def test_queue_bound_by_bytes_too(collector: LoopbackCollector, make_client: MakeClient) -> None:
    collector.hang()
    client = make_client(max_queue_bytes=20_000, flush_interval=60, flush_at=10_000)
    for _ in range(100):
        client.track("u1", "E", {"pad": "x" * 1000})
    stats = client.stats
    assert stats.queued + stats.in_flight <= 20
    assert stats.dropped_by_reason["queue_full"] >= 80


def test_oversized_event_is_dropped_alone(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    errors: list[uptake.DeliveryError] = []
    client = make_client(on_error=errors.append)
    client.track("u1", "Small")
    client.track("u1", "Huge", {"blob": "x" * 40_000})
    client.track("u1", "Small Again")
    assert client.flush(timeout=5) is False  # one event tracked before it was lost
    assert client.flush(timeout=5) is True  # and nothing since
    assert track_names(collector.events) == ["Session Started", "Small", "Small Again"]
    assert client.stats.dropped_by_reason == {"too_large": 1}
    client.shutdown(timeout=5)
    assert any(e.count == 1 and "larger than" in e.reason for e in errors)


def test_oversized_event_is_refused_at_the_call_site(
    caplog: pytest.LogCaptureFixture, make_client: MakeClient
) -> None:
    errors: list[uptake.DeliveryError] = []
    client = make_client(on_error=errors.append)
    with caplog.at_level(logging.WARNING, logger="uptake"):
        client.track("u1", "Huge Export", {"blob": "x" * 40_000})
        client.track("u1", "Huge Export", {"blob": "y" * 40_000})  # same name: not logged again
        client.identify("u1", {"bio": "z" * 40_000})
    here = threading.get_ident()
    lines = [r for r in caplog.records if "over the 32768-byte limit" in r.getMessage()]
    assert [r.thread for r in lines] == [here, here]  # logged by the tracking call itself
    assert "'Huge Export' dropped" in lines[0].getMessage()
    assert "'identify' dropped" in lines[1].getMessage()
    assert all("xxxx" not in r.getMessage() for r in caplog.records)  # never the content
    assert client.stats.dropped_by_reason == {"too_large": 3}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="uptake"):
        client.shutdown(timeout=5)
    assert not caplog.records  # the delivery side does not log them a second time
    assert sum(e.count for e in errors if "larger than" in e.reason) == 3  # on_error hears


def test_batches_stay_under_500kb(collector: LoopbackCollector, make_client: MakeClient) -> None:
    client = make_client(flush_interval=60, flush_at=100_000)
    collector.hang()
    for i in range(600):
        client.track("u1", "E", {"pad": "x" * 2_000, "i": i})
    collector.release()
    assert client.flush(timeout=10)
    assert len(collector.events) == 601
    sizes = [len(str(b).encode()) for b in collector.batches]
    assert len(sizes) >= 3
    assert all(r.headers.get("content-length") for r in collector.requests)
    for batch in collector.batches:
        import json

        assert len(json.dumps(batch, separators=(",", ":")).encode()) < 500_000


def test_before_send_redacts_and_drops(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    def scrub(event: dict[str, Any]) -> dict[str, Any] | None:
        if event.get("event") == "Secret":
            return None
        event.get("properties", {}).pop("email", None)
        return event

    client = make_client(before_send=scrub)
    client.track("u1", "Signup", {"email": "a@b.c", "plan": "pro"})
    client.track("u1", "Secret")
    assert client.flush(timeout=5)
    signup = next(e for e in collector.events if e.get("event") == "Signup")
    assert signup["properties"] == {"plan": "pro"}
    assert "Secret" not in track_names(collector.events)
    assert client.stats.dropped_by_reason == {"before_send": 1}


def test_before_send_that_raises_drops_that_event_only(
    caplog: pytest.LogCaptureFixture, collector: LoopbackCollector, make_client: MakeClient
) -> None:
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == "Bad":
            raise RuntimeError("bug in the hook")
        return event

    client = make_client(before_send=broken)
    with caplog.at_level(logging.ERROR, logger="uptake"):
        client.track("u1", "Bad")
        client.track("u1", "Good")
    assert client.flush(timeout=5) is False  # "Bad" was lost
    assert track_names(collector.events) == ["Session Started", "Good"]
    assert client.stats.dropped_by_reason == {"before_send_error": 1}
    assert "before_send raised" in caplog.text


def test_before_send_returning_garbage_is_a_counted_drop(make_client: MakeClient) -> None:
    client = make_client(before_send=lambda e: ["not", "a", "dict"])
    client.track("u1", "E")
    assert client.stats.dropped_by_reason == {"before_send_error": 2}


def test_send_false_sends_nothing(collector: LoopbackCollector) -> None:
    client = uptake.Client(write_key=WRITE_KEY, endpoint=collector.url, send=False)
    client.track("u1", "E")
    assert client.flush(timeout=1)
    assert client.shutdown(timeout=1)
    assert collector.requests == []
    assert client.stats.dropped_by_reason == {"send_disabled": 2}


def test_eight_threads_lose_nothing(collector: LoopbackCollector, make_client: MakeClient) -> None:
    client = make_client()
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(10_000):
            client.track(f"user-{n}", "Threaded", {"i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(timeout=60)
    stats = client.stats
    assert stats.tracked == 80_008 and stats.delivered == 80_008
    assert stats.dropped == stats.failed == 0
    assert len(collector.message_ids) == 80_008 and collector.duplicates == 0


def test_on_error_that_raises_is_contained(
    caplog: pytest.LogCaptureFixture, collector: LoopbackCollector, make_client: MakeClient
) -> None:
    def explode(error: uptake.DeliveryError) -> None:
        raise RuntimeError("hook bug")

    collector.respond_with(400)
    client = make_client(on_error=explode)
    with caplog.at_level(logging.ERROR, logger="uptake"):
        client.track("u1", "E")
        assert client.flush(timeout=5) is False
        client.track("u1", "Next")
        assert client.flush(timeout=5) is True
    assert "on_error hook raised" in caplog.text


# ---------------------------------------------------------------- lifecycle


def test_flush_returns_true_when_nothing_is_pending(make_client: MakeClient) -> None:
    assert make_client().flush(timeout=0)


def test_shutdown_delivers_then_refuses_new_events(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    client = make_client(flush_interval=60)
    client.track("u1", "Before")
    assert client.shutdown(timeout=5)
    assert "Before" in track_names(collector.events)
    client.track("u1", "After")
    # Refused at the call site: counted as dropped, never queued for a worker that is gone.
    stats = client.stats
    assert stats.dropped_by_reason == {"closed": 1} and stats.queued == 0
    assert stats.tracked == stats.delivered + stats.dropped
    assert "After" not in track_names(collector.events)
    assert client.stats.dropped_by_reason["closed"] >= 1
    assert client.shutdown(timeout=1) is True  # a second call repeats the first's answer
    assert "closed" in repr(client)


def test_client_is_a_context_manager(collector: LoopbackCollector) -> None:
    with uptake.Client(write_key=WRITE_KEY, endpoint=collector.url) as client:
        client.track("u1", "Inside")
    assert "Inside" in track_names(collector.events)


def test_flush_from_a_hook_on_the_delivery_thread_does_not_deadlock(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    results: list[bool] = []
    client: uptake.Client

    def on_error(error: uptake.DeliveryError) -> None:
        results.append(client.flush(timeout=30))

    collector.respond_with(400)
    client = make_client(on_error=on_error)
    client.track("u1", "E")
    assert client.flush(timeout=5) is False
    assert results == [False]


def test_every_drop_after_shutdown_reaches_on_error(
    caplog: pytest.LogCaptureFixture, make_client: MakeClient
) -> None:
    errors: list[uptake.DeliveryError] = []
    client = make_client(on_error=errors.append)
    client.shutdown(timeout=5)
    with caplog.at_level(logging.DEBUG, logger="uptake"):
        for _ in range(3):
            client.track("u1", "Too Late")
    assert [(e.count, "after shutdown" in e.reason) for e in errors] == [(1, True)] * 3
    assert client.stats.dropped_by_reason == {"closed": 3}  # no session opened for them
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the log is spared a line per event


def test_session_id_none_in_context_means_automatic_sessions(make_client: MakeClient) -> None:
    client = make_client(send=False)
    with capture_events(client) as captured:
        client.track("u1", "A", context={"sessionId": None, "ip": "203.0.113.1"})
        client.track("u2", "B", context={"sessionId": ""})
    sessions = {e["context"]["sessionId"] for e in captured}
    assert "None" not in sessions and "" not in sessions and len(sessions) == 2


def test_flush_reports_losses_since_the_previous_flush(
    collector: LoopbackCollector, make_client: MakeClient
) -> None:
    client = make_client(max_queue_size=10, flush_interval=60, flush_at=10_000)
    for i in range(50):
        client.track("u1", "E", {"i": i})
    assert client.flush(timeout=5) is False  # 41 were dropped (queue full)
    client.track("u1", "E")
    assert client.flush(timeout=5) is True


def test_negative_flush_timeout_is_a_value_error(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="timeout"):
        client.flush(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        client.shutdown(timeout=float("nan"))
