"""Tests for the loopback Segment collector used by the test suite and by host applications."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from uptake.testing import LoopbackCollector, RecordedRequest


def _event(message_id: str, name: str = "Signed Up") -> dict[str, Any]:
    return {"type": "track", "event": name, "userId": "u1", "messageId": message_id}


def _body(*message_ids: str) -> dict[str, Any]:
    return {"batch": [_event(m) for m in message_ids], "sentAt": "2024-01-01T00:00:00.000Z"}


def _auth(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def collector() -> Iterator[LoopbackCollector]:
    with LoopbackCollector() as c:
        yield c


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def _post(
    client: httpx.Client, collector: LoopbackCollector, *message_ids: str, **kwargs: Any
) -> httpx.Response:
    return client.post(f"{collector.url}/v1/batch", json=_body(*message_ids), **kwargs)


def test_accepts_plain_batch_and_records_it(
    collector: LoopbackCollector, client: httpx.Client
) -> None:
    response = _post(client, collector, "m1", "m2")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json() == {"success": True}
    assert collector.batches == [_body("m1", "m2")]
    assert [e["messageId"] for e in collector.events] == ["m1", "m2"]
    assert collector.message_ids == {"m1": 1, "m2": 1}
    assert collector.duplicates == 0
    (record,) = collector.requests
    assert isinstance(record, RecordedRequest)
    assert (record.method, record.path, record.status, record.event_count) == (
        "POST",
        "/v1/batch",
        200,
        2,
    )
    assert record.accepted
    assert record.body == _body("m1", "m2")
    assert record.headers["content-type"] == "application/json"
    assert all(name == name.lower() for name in record.headers)


def test_url_and_port(collector: LoopbackCollector) -> None:
    assert collector.is_running
    assert collector.port > 0
    assert collector.url == f"http://127.0.0.1:{collector.port}"
    assert "running" in repr(collector)


def test_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError):
        _ = LoopbackCollector().url


def test_accepts_gzip_body(collector: LoopbackCollector, client: httpx.Client) -> None:
    raw = gzip.compress(json.dumps(_body("g1", "g2", "g3")).encode())
    response = client.post(
        f"{collector.url}/v1/batch",
        content=raw,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )

    assert response.status_code == 200
    assert [e["messageId"] for e in collector.events] == ["g1", "g2", "g3"]
    (record,) = collector.requests
    assert record.headers["content-encoding"] == "gzip"
    assert record.body_size == len(raw)


def test_accepts_chunked_body(collector: LoopbackCollector, client: httpx.Client) -> None:
    raw = json.dumps(_body("c1", "c2")).encode()
    response = client.post(
        f"{collector.url}/v1/batch", content=iter([raw[:10], raw[10:30], raw[30:]])
    )

    assert response.status_code == 200
    assert collector.requests[0].headers.get("transfer-encoding") == "chunked"
    assert [e["messageId"] for e in collector.events] == ["c1", "c2"]


def test_write_key_is_enforced(client: httpx.Client) -> None:
    with LoopbackCollector(write_key="secret") as c:
        missing = _post(client, c, "a")
        wrong = _post(client, c, "b", headers=_auth("other"))
        garbage = _post(client, c, "c", headers={"Authorization": "Basic !!!"})
        right = _post(client, c, "d", headers=_auth("secret"))
        via_httpx_auth = _post(client, c, "e", auth=("secret", ""))

    assert [r.status_code for r in (missing, wrong, garbage, right, via_httpx_auth)] == [
        401,
        401,
        401,
        200,
        200,
    ]
    assert missing.json()["success"] is False
    assert "www-authenticate" in missing.headers
    assert [e["messageId"] for e in c.events] == ["d", "e"]
    assert [r.status for r in c.requests] == [401, 401, 401, 200, 200]


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b'{"sentAt": "x"}', {}, 400),
        (b'{"batch": {"a": 1}}', {}, 400),
        (b'{"batch": [1, 2]}', {}, 400),
        (b"[]", {}, 400),
        (b"\xff\xfe", {}, 400),
        (b"definitely not gzip", {"Content-Encoding": "gzip"}, 400),
        (b'{"batch": []}', {"Content-Encoding": "br"}, 415),
    ],
)
def test_rejects_malformed_bodies(
    collector: LoopbackCollector,
    client: httpx.Client,
    content: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    response = client.post(f"{collector.url}/v1/batch", content=content, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["success"] is False
    assert isinstance(payload["error"], str)
    assert collector.events == []
    assert collector.batches == []
    (record,) = collector.requests
    assert record.status == status
    assert record.body is None
    assert not record.accepted


def test_empty_batch_is_accepted(collector: LoopbackCollector, client: httpx.Client) -> None:
    response = client.post(f"{collector.url}/v1/batch", json={"batch": []})
    assert response.status_code == 200
    assert collector.batches == [{"batch": []}]
    assert collector.events == []


def test_health_unknown_path_and_wrong_method(
    collector: LoopbackCollector, client: httpx.Client
) -> None:
    health = client.get(f"{collector.url}/health")
    missing = client.post(f"{collector.url}/v1/track", json=_body("x"))
    get_batch = client.get(f"{collector.url}/v1/batch")

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    assert get_batch.status_code == 405
    assert get_batch.headers["allow"] == "POST"
    assert collector.events == []
    assert [(r.method, r.path, r.status) for r in collector.requests] == [
        ("GET", "/health", 200),
        ("POST", "/v1/track", 404),
        ("GET", "/v1/batch", 405),
    ]


def test_respond_with_queues_canned_responses(
    collector: LoopbackCollector, client: httpx.Client
) -> None:
    collector.respond_with(429, headers={"Retry-After": "2"}, times=2)
    collector.respond_with(500)

    statuses = [_post(client, collector, f"m{i}") for i in range(4)]

    assert [r.status_code for r in statuses] == [429, 429, 500, 200]
    assert statuses[0].headers["retry-after"] == "2"
    assert statuses[0].json()["success"] is False
    assert "retry-after" not in statuses[3].headers
    assert [e["messageId"] for e in collector.events] == ["m3"]
    records = collector.requests
    assert [r.status for r in records] == [429, 429, 500, 200]
    # Rejected bodies are still parsed, so retries can be compared with the original.
    assert records[0].body == _body("m0")
    assert records[0].event_count == 1


def test_respond_with_2xx_drops_batch(collector: LoopbackCollector, client: httpx.Client) -> None:
    collector.respond_with(200)
    collector.respond_with(204)

    ok = _post(client, collector, "lost1")
    no_content = _post(client, collector, "lost2")
    kept = _post(client, collector, "kept")

    assert (ok.status_code, no_content.status_code, kept.status_code) == (200, 204, 200)
    assert no_content.content == b""
    assert [e["messageId"] for e in collector.events] == ["kept"]
    assert [(r.status, r.accepted) for r in collector.requests] == [
        (200, False),
        (204, False),
        (200, True),
    ]


def test_respond_with_connection_close(collector: LoopbackCollector, client: httpx.Client) -> None:
    collector.respond_with(503, headers={"Connection": "close"})
    assert _post(client, collector, "a").status_code == 503
    assert _post(client, collector, "a").status_code == 200


def test_respond_with_validates_arguments(collector: LoopbackCollector) -> None:
    with pytest.raises(ValueError):
        collector.respond_with(99)
    with pytest.raises(ValueError):
        collector.respond_with(600)
    with pytest.raises(ValueError):
        collector.respond_with(503, times=0)
    with pytest.raises(ValueError):
        collector.respond_with(503, headers={"Content-Length": "3"})
    with pytest.raises(ValueError):
        collector.respond_with(503, headers={"X-Evil": "a\r\nb"})


def test_fail_every(collector: LoopbackCollector, client: httpx.Client) -> None:
    collector.fail_every(3, status=502, headers={"X-Fault": "yes"})
    responses = [_post(client, collector, f"m{i}") for i in range(7)]

    assert [r.status_code for r in responses] == [200, 200, 502, 200, 200, 502, 200]
    assert responses[2].headers["x-fault"] == "yes"
    assert len(collector.events) == 5

    collector.fail_every(0)
    assert all(_post(client, collector, "z").status_code == 200 for _ in range(4))

    with pytest.raises(ValueError):
        collector.fail_every(-1)


def test_fail_every_counts_canned_responses(
    collector: LoopbackCollector, client: httpx.Client
) -> None:
    collector.fail_every(2)
    collector.respond_with(429)
    statuses = [_post(client, collector, "m").status_code for _ in range(4)]
    assert statuses == [429, 503, 200, 503]


def test_max_events_per_batch(client: httpx.Client) -> None:
    with LoopbackCollector(max_events_per_batch=2) as c:
        too_big = _post(client, c, "a", "b", "c")
        fits = _post(client, c, "a", "b")
        c.max_events_per_batch = None
        now_fits = _post(client, c, "x", "y", "z")

    assert too_big.status_code == 413
    assert too_big.json()["success"] is False
    assert fits.status_code == 200
    assert now_fits.status_code == 200
    assert [r.event_count for r in c.requests] == [3, 2, 3]
    assert len(c.events) == 5
    with pytest.raises(ValueError):
        c.max_events_per_batch = -1


def test_hang_times_out_client_and_stop_is_prompt(client: httpx.Client) -> None:
    c = LoopbackCollector()
    c.start()
    try:
        c.hang()
        with pytest.raises(httpx.ReadTimeout):
            _post(client, c, "h1", timeout=0.3)
        assert c.wait_for_requests(1, timeout=2)
        (record,) = c.requests
        assert record.status is None
        assert record.event_count == 1
        assert c.events == []

        # Another request left hanging on a separate thread while we stop.
        errors: list[BaseException] = []

        def send() -> None:
            try:
                with httpx.Client(timeout=10.0) as other:
                    _post(other, c, "h2")
            except httpx.HTTPError as exc:
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        assert c.wait_for_requests(2, timeout=2)
    finally:
        started = time.monotonic()
        c.stop()
        elapsed = time.monotonic() - started
    sender.join(timeout=5)
    assert not sender.is_alive()
    assert elapsed < 2.0
    assert len(errors) == 1  # dropped without an answer, well before its 10 s timeout


def test_release_ends_hang(collector: LoopbackCollector, client: httpx.Client) -> None:
    collector.hang()
    with pytest.raises(httpx.ReadTimeout):
        _post(client, collector, "h", timeout=0.2)
    collector.release()
    assert _post(client, collector, "ok").status_code == 200
    assert [e["messageId"] for e in collector.events] == ["ok"]


def test_stop_then_start_rebinds_same_port(client: httpx.Client) -> None:
    c = LoopbackCollector()
    with c:
        port = c.port
        assert _post(client, c, "before").status_code == 200  # leaves a keep-alive connection
    assert not c.is_running
    c.stop()  # idempotent

    with pytest.raises(httpx.TransportError):
        _post(client, c, "while-down")

    with c:
        assert c.port == port
        assert c.url == f"http://127.0.0.1:{port}"
        assert _post(client, c, "after").status_code == 200
    assert [e["messageId"] for e in c.events] == ["before", "after"]


def test_stop_drops_idle_keep_alive_connections() -> None:
    c = LoopbackCollector()
    c.start()
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=5)
    try:
        conn.request("GET", "/health")
        assert conn.getresponse().read() == b'{"status": "ok"}'
        c.stop()
        # The pooled connection must not keep being served by the stopped collector.
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.request("GET", "/health")
            conn.getresponse()
    finally:
        conn.close()
        c.stop()


def test_start_on_explicit_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    c = LoopbackCollector(port=port)
    assert c.url == f"http://127.0.0.1:{port}"
    with c:
        assert httpx.get(f"{c.url}/health").status_code == 200


def test_keep_alive_reuses_connection(collector: LoopbackCollector) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
    try:
        payload = json.dumps(_body("k1")).encode()
        conn.request("POST", "/v1/batch", body=payload, headers={"Content-Type": "x"})
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request("POST", "/v1/batch", body=payload)
        second = conn.getresponse()
        second.read()
        assert first.status == second.status == 200
        assert first.version == 11
        assert first.getheader("Connection") is None
        assert conn.sock is sock
    finally:
        conn.close()
    assert collector.duplicates == 1


def test_wait_for_events(collector: LoopbackCollector) -> None:
    assert collector.wait_for_events(1, timeout=0.05) is False

    def send() -> None:
        with httpx.Client(timeout=5) as c:
            for i in range(3):
                _post(c, collector, f"w{i}", f"x{i}")

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert collector.wait_for_events(6, timeout=5)
        assert collector.wait_for_requests(3, timeout=5)
    finally:
        sender.join()
    assert collector.wait_for_events(100, timeout=0.05) is False


def test_duplicates_and_message_ids(collector: LoopbackCollector, client: httpx.Client) -> None:
    _post(client, collector, "a", "b")
    _post(client, collector, "a", "b", "c")
    _post(client, collector, "a")
    assert collector.message_ids == {"a": 3, "b": 2, "c": 1}
    assert collector.duplicates == 3


def test_records_are_copies(collector: LoopbackCollector, client: httpx.Client) -> None:
    _post(client, collector, "a")
    collector.events[0]["event"] = "mutated"
    collector.batches.clear()
    collector.message_ids["a"] = 99
    collector.requests[0].headers.clear()
    assert collector.events[0]["event"] == "Signed Up"
    assert len(collector.batches) == 1
    assert collector.message_ids["a"] == 1
    assert collector.requests[0].headers


def test_reset_clears_records_and_faults(client: httpx.Client) -> None:
    with LoopbackCollector(max_events_per_batch=5) as c:
        _post(client, c, "a")
        c.respond_with(500, times=3)
        c.fail_every(1)
        c.max_events_per_batch = 0
        c.reset()
        assert c.requests == [] and c.events == [] and c.batches == []
        assert c.max_events_per_batch == 5
        assert _post(client, c, "b").status_code == 200
        assert c.message_ids == {"b": 1}


def test_concurrent_senders(collector: LoopbackCollector) -> None:
    def send(worker: int) -> None:
        with httpx.Client(timeout=5) as c:
            for i in range(10):
                _post(c, collector, f"{worker}-{i}")

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert collector.wait_for_events(80, timeout=5)
    assert len(collector.message_ids) == 80
    assert collector.duplicates == 0
