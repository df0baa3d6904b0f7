"""The reference collector under uvicorn on a loopback port: the SDK end to end, Segment's
HTTP API (per-event rejection, endpoints, keys, event time), and abuse."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import logging
import socket
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import uptake
from uptake.collector import REASONS, EventStore, create_app
from uptake.collector.ingest import MAX_EVENT
from uptake.collector.metrics import compute
from uptake.collector.server import BackgroundCollector
from uptake.collector.sources import UNREADABLE, from_store

KEY = "wk_collector"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


class Server(uvicorn.Server):
    """uvicorn in a thread, with an Event set once it listens (no polling)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, EventStore]]:
    with BackgroundCollector(tmp_path / "events.db", [KEY]) as running:
        yield running.url, running.store


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": f"u{i % 7}",
        "messageId": f"m-{i}",
        "timestamp": "2026-06-01T09:00:00Z",
        **extra,
    }


def post(url: str, body: bytes, path: str = "/v1/batch", **headers: str) -> httpx.Response:
    return httpx.post(f"{url}{path}", content=body, headers={**AUTH, **headers}, timeout=30)


def test_the_sdk_delivers_to_the_collector_end_to_end(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    client = uptake.Client(write_key=KEY, endpoint=url, flush_at=50)
    for i in range(500):
        client.track(f"user-{i % 20}", "Report Created", {"i": i}, account_id="acme")
    assert client.flush(timeout=10)
    client.shutdown()
    stored = [e for e in store.events() if e.get("event") == "Report Created"]
    assert sorted(e["properties"]["i"] for e in stored) == list(range(500))
    assert stored[0]["context"]["library"]["name"] == "uptake"
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["events"] == len(store)
    assert health["rejected"] == {}


def test_a_retried_batch_is_stored_once(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    body = json.dumps({"batch": [event(i) for i in range(10)]}).encode()
    first = post(url, body).json()
    assert first == {
        "success": True,
        "stored": 10,
        "duplicates": 0,
        "rejected": 0,
        "rejections": [],
    }
    assert post(url, body).json()["duplicates"] == 10
    assert len(store) == 10


# One bad event in a batch of 20, and the rejection code it must get.
BAD_EVENTS: list[tuple[str, dict[str, Any] | str, str]] = [
    ("empty name", {"event": ""}, "empty_event_name"),
    ("blank name", {"event": "   "}, "empty_event_name"),
    ("no name", {"event": None}, "empty_event_name"),
    ("numeric name", {"event": 42}, "bad_field"),
    ("numeric groupId", {"groupId": 42}, "bad_id"),
    ("object userId", {"userId": {"x": 1}}, "bad_id"),
    ("numeric anonymousId", {"anonymousId": 7}, "bad_id"),
    ("numeric messageId", {"messageId": 42}, "bad_id"),
    ("no user", {"userId": None}, "missing_id"),
    ("NaN property", '"properties": {"price": NaN}', "non_finite_number"),
    ("Infinity trait", '"traits": {"x": 1e999}', "non_finite_number"),
    ("-Infinity in a list", '"properties": {"xs": [1, -Infinity]}', "non_finite_number"),
    ("400-digit integer", '"properties": {"n": ' + "9" * 400 + "}", "non_finite_number"),
    ("bad timestamp", {"timestamp": "not a date"}, "bad_timestamp"),
    ("numeric timestamp", {"timestamp": 5}, "bad_timestamp"),
    ("bad originalTimestamp", {"timestamp": None, "originalTimestamp": "soon"}, "bad_timestamp"),
    ("over 32 KB", {"properties": {"blob": "x" * MAX_EVENT}}, "too_large"),
    ("unknown type", {"type": "bogus"}, "unknown_type"),
    ("no type", {"type": None}, "unknown_type"),
    ("group without groupId", {"type": "group"}, "missing_id"),
    ("alias without previousId", {"type": "alias"}, "missing_id"),
    ("not an object", "[1, 2]", "not_an_object"),
]


def _batch_with(bad: dict[str, Any] | str, at: int = 7, size: int = 20) -> bytes:
    """A JSON batch of ``size`` events, the one at ``at`` made bad (a dict of fields to
    set, or raw JSON text: a fragment to add, or a whole value)."""
    parts = []
    for i in range(size):
        if i != at:
            parts.append(json.dumps(event(i)))
        elif isinstance(bad, dict):
            parts.append(json.dumps(event(i, **bad)))
        elif bad.startswith("["):
            parts.append(bad)
        else:
            parts.append(json.dumps(event(i))[:-1] + ", " + bad + "}")
    return ("{" + '"batch": [' + ", ".join(parts) + '], "sentAt": "2026-06-01T09:00:01Z"}').encode()


@pytest.mark.parametrize(
    ("bad", "code"), [(b, c) for _, b, c in BAD_EVENTS], ids=[n for n, _, _ in BAD_EVENTS]
)
def test_one_bad_event_is_rejected_alone_and_the_others_stored(
    collector: tuple[str, EventStore], bad: dict[str, Any] | str, code: str
) -> None:
    url, store = collector
    response = post(url, _batch_with(bad))
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["success"] is True and reply["stored"] == 19 and reply["rejected"] == 1
    (rejection,) = reply["rejections"]
    assert rejection["index"] == 7 and rejection["code"] == code and rejection["message"]
    assert code in REASONS
    assert len(store) == 19
    assert "m-7" not in {e["messageId"] for e in store.events()}
    assert store.rejected() == {code: 1}
    assert httpx.get(f"{url}/health").json()["rejected"] == {code: 1}


def test_nothing_non_finite_is_ever_stored(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    body = (
        b'{"batch": [{"type": "identify", "userId": "u", "messageId": "a", '
        b'"traits": {"x": 1e999, "y": NaN}}, {"type": "track", "event": "E", "userId": "u", '
        b'"messageId": "b", "properties": {"ok": 1e308, "tiny": 1e-999}}]}'
    )
    reply = post(url, body).json()
    assert reply["stored"] == 1 and reply["rejections"][0]["code"] == "non_finite_number"
    assert "traits.x" in reply["rejections"][0]["message"]
    with sqlite3.connect(store.path) as conn:
        bodies = [row[0] for row in conn.execute("SELECT body FROM events")]
    for stored in bodies:
        json.loads(stored, parse_constant=lambda name: pytest.fail(f"{name} stored"))
    report = compute(from_store(store.path))
    assert report.events == 1


def test_rejections_are_counted_by_reason_and_logged_once_per_request(
    collector: tuple[str, EventStore], caplog: pytest.LogCaptureFixture
) -> None:
    url, store = collector
    batch = [event(i) for i in range(10)]
    batch[2]["event"] = ""
    batch[5]["event"] = ""
    batch[8]["groupId"] = 42
    with caplog.at_level(logging.INFO, logger="uptake.collector"):
        reply = post(url, json.dumps({"batch": batch}).encode()).json()
    assert (reply["stored"], reply["rejected"]) == (7, 3)
    assert [r["index"] for r in reply["rejections"]] == [2, 5, 8]
    assert store.rejected() == {"bad_id": 1, "empty_event_name": 2}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "rejected 3 of 10" in warnings[0].getMessage()
    assert "bad_id 1, empty_event_name 2" in warnings[0].getMessage()


def test_a_batch_of_only_bad_events_is_still_200(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    reply = post(url, json.dumps({"batch": [event(1, event=""), 5, None]}).encode())
    assert reply.status_code == 200
    assert reply.json()["rejected"] == 3 and len(store) == 0


def test_a_long_rejection_list_is_cut_but_counted(collector: tuple[str, EventStore]) -> None:
    url, _ = collector
    reply = post(url, json.dumps({"batch": [event(i, event="") for i in range(500)]}).encode())
    assert reply.json()["rejected"] == 500 and len(reply.json()["rejections"]) == 100


def test_a_messageid_repeated_in_a_batch_is_a_duplicate(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    reply = post(url, json.dumps({"batch": [event(1), event(1), event(2)]}).encode()).json()
    assert (reply["stored"], reply["duplicates"], reply["rejected"]) == (2, 1, 0)
    assert len(store) == 2


def test_an_event_without_messageid_gets_one(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    plain = {"type": "track", "event": "E", "userId": "u"}
    assert post(url, json.dumps({"batch": [plain, plain]}).encode()).json()["stored"] == 2
    ids = [e["messageId"] for e in store.events()]
    assert len(set(ids)) == 2 and all(len(i) == 36 for i in ids)


def test_the_32_kb_limit_counts_utf8_bytes_not_escapes(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    text = "é" * 12_000  # 24 KB as UTF-8, 72 KB as \\u escapes
    reply = post(url, json.dumps({"batch": [event(1, properties={"t": text})]}).encode()).json()
    assert reply["stored"] == 1
    assert next(store.events())["properties"]["t"] == text


def test_the_write_key_is_never_stored(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    body = json.dumps({"batch": [event(1, writeKey=KEY)], "writeKey": KEY}).encode()
    assert post(url, body).json()["stored"] == 1
    with sqlite3.connect(store.path) as conn:
        assert KEY not in "".join(row[0] for row in conn.execute("SELECT body FROM events"))


# -- the event time ---------------------------------------------------------------------


def test_the_event_time_follows_segments_rule(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    batch = [
        # timestamp wins over everything
        event(1, originalTimestamp="2020-01-01T00:00:00Z"),
        # originalTimestamp, corrected by the client's clock skew (its clock is 1 h behind)
        {**event(2), "timestamp": None, "originalTimestamp": "2026-06-01T08:00:00Z"},
        # the event's own sentAt takes precedence over the batch's
        {
            **event(3),
            "timestamp": None,
            "originalTimestamp": "2026-06-01T08:00:00Z",
            "sentAt": "2026-06-01T08:00:30Z",
        },
        # nothing: receivedAt
        {k: v for k, v in event(4).items() if k != "timestamp"},
    ]
    before = time.time()
    body = json.dumps({"batch": batch, "sentAt": "2026-06-01T08:00:10Z"}).encode()
    assert post(url, body).json()["stored"] == 4
    after = time.time()
    with sqlite3.connect(store.path) as conn:
        rows = dict(conn.execute("SELECT message_id, event_time FROM events"))
        received = dict(conn.execute("SELECT message_id, received_at FROM events"))
    assert rows["m-1"] == 1_780_304_400.0  # 2026-06-01T09:00:00Z
    assert rows["m-2"] == pytest.approx(received["m-2"] - 10)
    assert rows["m-3"] == pytest.approx(received["m-3"] - 30)
    assert before - 1 <= rows["m-4"] == received["m-4"] <= after + 1
    stored = {e["messageId"]: e for e in store.events()}
    assert stored["m-1"]["timestamp"] == "2026-06-01T09:00:00Z"  # as sent
    assert stored["m-2"]["originalTimestamp"] == "2026-06-01T08:00:00Z"  # kept
    assert stored["m-4"]["timestamp"] == stored["m-4"]["receivedAt"]


def test_events_without_timestamp_are_in_the_report(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    now = time.time()
    batch = [
        {
            "type": "track",
            "event": "Viewed",
            "userId": f"u{i}",
            "messageId": f"o-{i}",
            "originalTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        }
        for i in range(200)
    ]
    assert post(url, json.dumps({"batch": batch}).encode()).json()["stored"] == 200
    source = from_store(store.path)
    report = compute(source)
    assert (report.events, source.skipped, report.users) == (200, 0, 200)


def test_a_store_with_a_bad_row_still_reports(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    store.add([event(i) for i in range(5)])
    store.add([event(9, event="Feature Used", properties={"feature": "x"})])
    store.close()
    with sqlite3.connect(tmp_path / "e.db") as conn:  # as an older collector would have
        conn.execute(
            'UPDATE events SET body = replace(body, \'"feature":"x"\', \'"x":Infinity\') '
            "WHERE message_id = 'm-9'"
        )
        conn.execute(
            "INSERT INTO events (message_id, received_at, type, event, user_id, body) "
            "VALUES ('bad', 1780304400, 'group', NULL, 'u1', '{not json')"
        )
    source = from_store(tmp_path / "e.db")
    report = compute(source)
    assert report.events == 5
    assert source.skipped_by == {UNREADABLE: 2}


def test_a_store_from_before_event_time_is_upgraded_and_read(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """CREATE TABLE events (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
            received_at REAL NOT NULL, timestamp TEXT, type TEXT NOT NULL, event TEXT,
            user_id TEXT, anonymous_id TEXT, group_id TEXT, body TEXT NOT NULL);"""
        )
        conn.execute(
            "INSERT INTO events (message_id, received_at, timestamp, type, event, user_id, body)"
            " VALUES ('a', 1780304400, NULL, 'track', 'E', 'u1', '{}'),"
            " ('b', 1780304400, '2026-05-01T00:00:00Z', 'track', 'E', 'u2', '{}')"
        )
    report = compute(from_store(path))  # read as it is: a missing time is receivedAt
    assert report.events == 2
    store = EventStore(path)
    store.add([event(1)])
    store.close()
    source = from_store(path)
    assert compute(source).events == 3 and source.skipped == 0


# -- endpoints and keys -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/track", {"event": "Signed Up", "userId": "u1"}),
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}),
        ("/v1/group", {"userId": "u1", "groupId": "acme"}),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}),
        ("/v1/screen", {"userId": "u1", "name": "Settings"}),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}),
    ],
)
def test_the_single_event_endpoints(
    collector: tuple[str, EventStore], path: str, body: dict[str, Any]
) -> None:
    url, store = collector
    response = post(url, json.dumps(body).encode(), path)
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 1
    (stored,) = store.events()
    assert stored["type"] == path.rsplit("/", 1)[1]  # the path says the type


def test_import_takes_a_batch(collector: tuple[str, EventStore]) -> None:
    url, _ = collector
    body = json.dumps({"batch": [event(i) for i in range(3)]}).encode()
    assert post(url, body, "/v1/import").json()["stored"] == 3


def test_a_single_event_endpoint_rejects_a_bad_event_with_200(
    collector: tuple[str, EventStore],
) -> None:
    url, _ = collector
    reply = post(url, b'{"event": "", "userId": "u"}', "/v1/track")
    assert reply.status_code == 200 and reply.json()["rejections"][0]["code"] == "empty_event_name"
    assert post(url, b"[1]", "/v1/track").status_code == 400  # not an event at all


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
def test_the_write_key_may_come_in_the_body(collector: tuple[str, EventStore], path: str) -> None:
    url, store = collector
    payload: dict[str, Any] = (
        {"batch": [event(1)], "writeKey": KEY}
        if path == "/v1/batch"
        else {**event(1), "writeKey": KEY}
    )
    response = httpx.post(f"{url}{path}", content=json.dumps(payload).encode())
    assert response.status_code == 200, response.text
    assert len(store) == 1
    payload["writeKey"] = "wrong"
    response = httpx.post(f"{url}{path}", content=json.dumps(payload).encode())
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + base64.b64encode(b"wrong:").decode(), "Bearer x", "Basic !!!"],
)
def test_a_wrong_key_is_refused(
    collector: tuple[str, EventStore], authorization: str | None
) -> None:
    url, store = collector
    headers = {} if authorization is None else {"Authorization": authorization}
    # A right key in the body does not rescue a wrong Authorization header.
    body = json.dumps({"batch": [event(1)], "writeKey": "nope" if authorization is None else KEY})
    response = httpx.post(f"{url}/v1/batch", content=body.encode(), headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"success", "code", "message"}
    assert len(store) == 0


def test_other_paths_and_methods(collector: tuple[str, EventStore]) -> None:
    url, _ = collector
    assert httpx.get(f"{url}/v1/batch").status_code == 405
    assert httpx.get(f"{url}/v1/track").status_code == 405
    missing = httpx.get(f"{url}/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert httpx.post(f"{url}/health").status_code == 405
    assert post(url, json.dumps({"batch": []}).encode(), "/v1/batch/").status_code == 200


# -- requests refused whole -------------------------------------------------------------


def test_an_oversized_body_is_refused(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    big = json.dumps({"batch": [event(i, properties={"x": "y" * 1000}) for i in range(1100)]})
    response = post(url, big.encode())
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert len(store) == 0


def test_a_gzip_bomb_is_refused_without_inflating_it(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MiB
    assert len(bomb) < 600_000  # well under the body limit: only inflating can catch it
    response = post(url, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "inflates" in response.json()["message"]
    assert len(store) == 0


@pytest.mark.parametrize(
    ("body", "encoding", "code", "message"),
    [
        (b"{not json", None, "invalid_json", "not JSON"),
        (b"", None, "invalid_json", "not JSON"),
        (b"\xff\xfe", None, "invalid_json", "not UTF-8"),
        (b'{"events": []}', None, "invalid_request", '"batch" list'),
        (b'{"batch": {}}', None, "invalid_request", '"batch" list'),
        (b"[]", None, "invalid_request", '"batch" list'),
        (b'{"batch": [], "batch": []}', None, "invalid_request", "twice"),
        (b'{"batch": [{"type": "track"}', None, "invalid_json", "not JSON"),
        (b'{"batch": []} trailing', None, "invalid_json", "not JSON"),
        (b'{"batch": [' + b"[" * 5000 + b"]" * 5000 + b"]}", None, "invalid_json", "not JSON"),
        (b"not gzip at all", "gzip", "invalid_gzip", "not valid gzip"),
        (gzip.compress(b'{"batch": []}')[:-8], "gzip", "invalid_gzip", "truncated"),
    ],
)
def test_a_body_that_is_not_a_batch_is_400_with_segments_fields(
    collector: tuple[str, EventStore],
    body: bytes,
    encoding: str | None,
    code: str,
    message: str,
) -> None:
    url, store = collector
    headers = {"Content-Encoding": encoding} if encoding else {}
    response = post(url, body, **headers)
    assert response.status_code == 400
    reply = response.json()
    assert reply["success"] is False and reply["code"] == code and message in reply["message"]
    assert len(store) == 0


def test_ten_thousand_concurrent_small_batches_lose_nothing(
    collector: tuple[str, EventStore],
) -> None:
    url, store = collector
    host, port = url.removeprefix("http://").split(":")

    async def connection(first: int, count: int) -> list[int]:
        """One keep-alive connection sending ``count`` one-event batches in turn."""
        reader, writer = await asyncio.open_connection(host, int(port))
        statuses = []
        for i in range(first, first + count):
            body = json.dumps({"batch": [event(i)]}).encode()
            writer.write(
                b"POST /v1/batch HTTP/1.1\r\nHost: collector\r\n"
                + f"Authorization: {AUTH['Authorization']}\r\n".encode()
                + b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            statuses.append(int(head.split(b" ", 2)[1]))
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()
        return statuses

    async def send_all() -> list[int]:
        # 100 connections at once, 100 batches each: 10,000 batches in flight together.
        results = await asyncio.gather(*(connection(n * 100, 100) for n in range(100)))
        return [status for statuses in results for status in statuses]

    statuses = asyncio.run(send_all())
    assert statuses.count(200) == 10_000
    assert len(store) == 10_000


def test_the_app_needs_a_key() -> None:
    with pytest.raises(ValueError, match="write key"):
        create_app(EventStore(":memory:"), [])
    with pytest.raises(ValueError, match="cannot be empty"):
        create_app(EventStore(":memory:"), ["wk", ""])


def test_what_the_sdk_escapes_is_stored(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    client = uptake.Client(write_key=KEY, endpoint=url)
    client.track("u\ud800", "E\ud800", {"p": "a\ud800b"})
    assert client.flush(timeout=10)
    client.shutdown()
    assert any(e.get("properties", {}).get("p") == "a\ud800b" for e in store.events())


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Any ASGI app under uvicorn on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.listening.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_body_of_several_gzip_members_is_read_whole(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    body = gzip.compress(b'{"batch": [' + json.dumps(event(1)).encode()) + gzip.compress(b"]}")
    response = post(url, body, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert len(store) == 1


def test_an_unknown_content_encoding_is_415(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    response = post(url, json.dumps({"batch": [event(1)]}).encode(), **{"Content-Encoding": "br"})
    assert response.status_code == 415
    assert len(store) == 0


def test_a_locked_store_answers_503_and_the_loop_keeps_serving(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", busy_timeout=0.05)
    holder = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    body = json.dumps({"batch": [event(1)]}).encode()
    with serving(create_app(store, [KEY])) as url:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        response = post(url, body)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"  # the SDK retries a 503
        assert response.json()["code"] == "unavailable"
        assert httpx.get(f"{url}/health").json()["events"] == 0
        holder.execute("ROLLBACK")
        assert post(url, body).status_code == 200
        assert len(store) == 1
    holder.close()
    store.close()


# -- bounded resources and time ---------------------------------------------------------


def _raw(port: int, head: str) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(head.encode())
    return conn


def test_a_stalled_body_is_408(tmp_path: Path) -> None:
    with BackgroundCollector(tmp_path / "events.db", [KEY], body_timeout=0.3) as running:
        head = (
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n" + '{"batch": ['
        )
        with _raw(running.port, head) as conn:  # and then nothing more
            reply = conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert len(running.store) == 0


def test_a_body_trickling_in_is_cut_off_at_the_body_timeout(tmp_path: Path) -> None:
    with BackgroundCollector(tmp_path / "events.db", [KEY], body_timeout=0.6) as running:
        head = (
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n"
        )
        started = time.monotonic()
        with _raw(running.port, head) as conn:
            conn.settimeout(0.05)
            reply = b""
            for _ in range(100):  # one byte every 50 ms: never idle long, never done
                try:
                    conn.sendall(b" ")
                    reply = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if reply:
                    break
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert time.monotonic() - started < 3


def test_headers_that_never_finish_are_cut_off(tmp_path: Path) -> None:
    with BackgroundCollector(tmp_path / "events.db", [KEY], header_timeout=0.3) as running:
        started = time.monotonic()
        with _raw(running.port, "POST /v1/batch HTTP/1.1\r\nHost: x\r\n") as conn:
            reply = conn.recv(4096)
            assert conn.recv(4096) == b""  # closed
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert time.monotonic() - started < 3
        with _raw(running.port, "") as idle:  # a connection that sends nothing at all
            assert idle.recv(4096).startswith(b"HTTP/1.1 408")
        # A kept-alive connection gets the same limit for its next request's head.
        with _raw(running.port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n") as conn:
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            conn.sendall(b"GET /health HTTP/1.1\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 408")


def test_an_endless_head_is_cut_off(tmp_path: Path) -> None:
    with BackgroundCollector(tmp_path / "events.db", [KEY]) as running:
        with _raw(running.port, "GET /health HTTP/1.1\r\n") as conn:
            reply = b""
            try:
                for i in range(2000):
                    conn.sendall(f"X-Filler-{i}: {'y' * 100}\r\n".encode())
            except OSError:
                pass
            with contextlib.suppress(OSError):
                reply = conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 431") or reply == b"", reply


def test_past_the_bytes_in_flight_a_request_waits_then_gets_503(tmp_path: Path) -> None:
    options = {"max_in_flight": 1000, "queue_timeout": 0.3, "body_timeout": 5.0}
    with BackgroundCollector(tmp_path / "events.db", [KEY], **options) as running:
        head = (
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n"
        )
        with _raw(running.port, head) as holder:  # reserves all 1,000 bytes, sends none
            early = 0  # requests served before the holder's reservation (a slow machine)
            for n in range(50):
                response = post(running.url, json.dumps({"batch": [event(100 + n)]}).encode())
                if response.status_code == 503:
                    break
                early += 1
                time.sleep(0.1)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["code"] == "overloaded"
            assert httpx.get(f"{running.url}/health").status_code == 200
            holder.sendall(json.dumps({"batch": [event(2)]}).encode().ljust(1000))
            assert holder.recv(4096).startswith(b"HTTP/1.1 200")
        assert post(running.url, json.dumps({"batch": [event(1)]}).encode()).status_code == 200
        assert len(running.store) == 2 + early


# -- the access log ---------------------------------------------------------------------


def test_one_access_log_line_per_request_and_never_the_key(
    collector: tuple[str, EventStore], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = collector
    good = json.dumps({"batch": [event(1), event(2, event="")], "writeKey": KEY}).encode()
    with caplog.at_level(logging.INFO, logger="uptake.collector"):
        post(url, good)
        httpx.post(f"{url}/v1/batch", content=good.replace(KEY.encode(), b"wk_guess"))
        httpx.post(
            f"{url}/v1/batch",
            content=good,
            headers={"Authorization": "Basic " + base64.b64encode(b"wk_secret_guess:").decode()},
        )
        httpx.get(f"{url}/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "uptake.collector.access"]
    assert len(lines) == 4
    assert '"POST /v1/batch" 200' in lines[0] and f"{len(good)}B" in lines[0]
    assert "events=2 stored=1 rejected=1" in lines[0]
    assert '"POST /v1/batch" 401' in lines[1] and "unknown write key" in lines[1]
    assert '"POST /v1/batch" 401' in lines[2]
    assert '"GET /health" 200' in lines[3]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (KEY, "wk_guess", "wk_secret_guess"):
        assert secret not in everything
