"""The HTTP layer on its own, with respx: wire format, retry policy, Retry-After, 413 split."""

from __future__ import annotations

import base64
import email.utils
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from uptake.transport import HttpTransport, parse_retry_after

URL = "https://collector.test/v1/batch"


def messages(n: int) -> list[bytes]:
    return [
        json.dumps({"type": "track", "event": "E", "messageId": f"m{i}"}).encode() for i in range(n)
    ]


def body_of(request: httpx.Request) -> dict[str, Any]:
    raw = request.content
    if request.headers.get("content-encoding") == "gzip":
        raw = gzip.decompress(raw)
    result: dict[str, Any] = json.loads(raw)
    return result


def ids_of(request: httpx.Request) -> list[str]:
    return [e["messageId"] for e in body_of(request)["batch"]]


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def make(**options: Any) -> HttpTransport:
    options.setdefault("min_backoff", 0.01)
    options.setdefault("max_backoff", 0.02)
    return HttpTransport("https://collector.test/", "wk_secret", **options)


def test_wire_format(mock: respx.MockRouter) -> None:
    route = mock.post(URL).respond(200, json={"success": True})
    outcome = make().send(messages(3))
    assert outcome.delivered == 3 and outcome.failures == ()
    request = route.calls.last.request
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"wk_secret:").decode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["user-agent"].startswith("uptake-python/")
    body = body_of(request)
    assert set(body) == {"batch", "sentAt"}
    assert ids_of(request) == ["m0", "m1", "m2"]
    assert body["sentAt"].endswith("Z") and "T" in body["sentAt"]


def test_gzip_can_be_turned_off(mock: respx.MockRouter) -> None:
    route = mock.post(URL).respond(200)
    make(gzip=False).send(messages(1))
    request = route.calls.last.request
    assert "content-encoding" not in request.headers
    assert json.loads(request.content)["batch"][0]["messageId"] == "m0"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_with_the_same_message_ids(
    mock: respx.MockRouter, status: int
) -> None:
    route = mock.post(URL)
    route.side_effect = [httpx.Response(status), httpx.Response(status), httpx.Response(200)]
    retries: list[int] = []
    outcome = make(on_retry=lambda: retries.append(1)).send(messages(2))
    assert outcome.delivered == 2 and not outcome.failures
    assert route.call_count == 3 and len(retries) == 2
    assert [ids_of(c.request) for c in route.calls] == [["m0", "m1"]] * 3


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
def test_network_errors_are_retried(mock: respx.MockRouter, error: Exception) -> None:
    route = mock.post(URL)
    route.side_effect = [error, httpx.Response(200)]
    assert make().send(messages(1)).delivered == 1
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_final_statuses_are_not_retried(mock: respx.MockRouter, status: int) -> None:
    route = mock.post(URL).respond(status)
    outcome = make().send(messages(4))
    assert route.call_count == 1
    assert outcome.delivered == 0
    (failure,) = outcome.failures
    assert (failure.error.status, failure.error.count) == (status, 4)
    assert str(status) in failure.error.reason
    assert (failure.start, failure.stop, failure.retryable) == (0, 4, False)


def test_413_splits_until_batches_fit(mock: respx.MockRouter) -> None:
    def accept_small(request: httpx.Request) -> httpx.Response:
        return httpx.Response(413 if len(ids_of(request)) > 3 else 200)

    route = mock.post(URL).mock(side_effect=accept_small)
    outcome = make().send(messages(10))
    assert outcome.delivered == 10 and not outcome.failures
    delivered = [i for c in route.calls if c.response.status_code == 200 for i in ids_of(c.request)]
    assert delivered == [f"m{i}" for i in range(10)]  # in order, each once


def test_413_for_one_event_fails_it(mock: respx.MockRouter) -> None:
    mock.post(URL).respond(413)
    outcome = make().send(messages(2))
    assert outcome.delivered == 0
    assert [(f.error.status, f.error.count) for f in outcome.failures] == [(413, 1), (413, 1)]
    assert [(f.start, f.stop, f.retryable) for f in outcome.failures] == [
        (0, 1, False),
        (1, 2, False),
    ]


def test_retry_after_is_obeyed_before_the_next_attempt(mock: respx.MockRouter) -> None:
    seen: list[float] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.4"})
        return httpx.Response(200)

    mock.post(URL).mock(side_effect=respond)
    assert make().send(messages(1)).delivered == 1
    assert seen[1] - seen[0] >= 0.4


def test_retry_after_also_holds_back_the_next_batch(mock: respx.MockRouter) -> None:
    seen: list[float] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return httpx.Response(503 if len(seen) == 1 else 200, headers={"Retry-After": "0.3"})

    mock.post(URL).mock(side_effect=respond)
    transport = make(retry_timeout=0.01)  # the first batch gives up at once...
    first = transport.send(messages(1))
    assert first.failures and first.failures[0].error.status == 503
    assert 0.2 < transport.ready_in() <= 0.3
    held = transport.send(messages(1))  # ...a next one with no budget to wait is not sent
    assert held.failures and held.failures[0].retryable and len(seen) == 1
    transport.retry_timeout = 5.0
    assert transport.send(messages(1)).delivered == 1  # with budget, it waits its turn
    assert seen[1] - seen[0] >= 0.3


def test_gives_up_after_retry_timeout(mock: respx.MockRouter) -> None:
    route = mock.post(URL).respond(503)
    # A budget of a second: room for several 10-20 ms backoffs even on a loaded machine.
    outcome = make(retry_timeout=1.0).send(messages(5))
    (failure,) = outcome.failures
    assert failure.error.status == 503 and failure.error.count == 5
    assert "gave up after" in failure.error.reason
    assert failure.retryable and (failure.start, failure.stop) == (0, 5)
    assert route.call_count >= 2


def test_retry_after_beyond_the_deadline_gives_up_without_sending_early(
    mock: respx.MockRouter,
) -> None:
    route = mock.post(URL).respond(429, headers={"Retry-After": "3600"})
    started = time.monotonic()
    outcome = make(retry_timeout=5).send(messages(1))
    assert route.call_count == 1
    assert outcome.failures[0].error.status == 429
    assert time.monotonic() - started < 5


def test_abort_after_stops_retrying(mock: respx.MockRouter) -> None:
    calls: list[float] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        return httpx.Response(503)

    mock.post(URL).mock(side_effect=unavailable)
    transport = make(min_backoff=1.0, max_backoff=1.0)
    deadline = time.monotonic() + 0.2
    transport.abort_after(deadline)
    outcome = transport.send(messages(1))
    assert outcome.failures and outcome.delivered == 0
    # Full jitter may retry inside the 0.2 s, but never after it, and the send returns
    # at the deadline rather than after a whole backoff.
    assert calls and all(at <= deadline for at in calls)
    assert time.monotonic() - deadline < 0.5


def test_abort_in_the_past_sends_nothing(mock: respx.MockRouter) -> None:
    route = mock.post(URL).respond(200)
    transport = make()
    transport.abort_after(time.monotonic() - 1)
    outcome = transport.send(messages(2))
    assert route.call_count == 0
    assert outcome.failures[0].error.reason == "client shut down before delivery"
    assert outcome.failures[0].retryable


def test_write_key_never_appears_in_repr_or_failures(mock: respx.MockRouter) -> None:
    mock.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    transport = make(retry_timeout=0.05)
    outcome = transport.send(messages(1))
    assert "wk_secret" not in repr(transport)
    assert all("wk_secret" not in str(f.error) + repr(f) for f in outcome.failures)


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("1.5", 1.5),
        ("0", None),
        ("-3", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("1e300", 86400.0),  # capped at a day
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_undecodable_response_is_retried_not_raised(mock: respx.MockRouter) -> None:
    route = mock.post(URL)
    # What httpx raises reading a reply whose body does not match its Content-Encoding.
    route.side_effect = [httpx.DecodingError("incorrect header check"), httpx.Response(200)]
    outcome = make().send(messages(2))
    assert outcome.delivered == 2 and route.call_count == 2


def test_ready_in_reports_a_retry_after_hold(mock: respx.MockRouter) -> None:
    mock.post(URL).respond(429, headers={"Retry-After": "120"})
    transport = make(retry_timeout=1)
    assert transport.ready_in() == 0
    outcome = transport.send(messages(1))
    assert outcome.failures[0].retryable
    assert 100 < transport.ready_in() <= 120
