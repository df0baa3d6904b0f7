"""The reference collector under uvicorn on a loopback port: the SDK end to end, and abuse."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import socket
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import uptake
from uptake.collector import EventStore, create_app

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
    store = EventStore(tmp_path / "events.db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(store, [KEY]), host="127.0.0.1", port=port, log_level="warning"
    )
    server = Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.listening.wait(10)
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(10)
    store.close()


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": f"u{i % 7}",
        "messageId": f"m-{i}",
        "timestamp": "2026-06-01T09:00:00Z",
        **extra,
    }


def post(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/batch", content=body, headers={**AUTH, **headers}, timeout=30)


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


def test_a_retried_batch_is_stored_once(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    body = json.dumps({"batch": [event(i) for i in range(10)]}).encode()
    assert post(url, body).json() == {"success": True, "stored": 10, "duplicates": 0}
    assert post(url, body).json() == {"success": True, "stored": 0, "duplicates": 10}
    assert len(store) == 10


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + base64.b64encode(b"wrong:").decode(), "Bearer x", "Basic !!!"],
)
def test_a_wrong_key_is_refused(
    collector: tuple[str, EventStore], authorization: str | None
) -> None:
    url, store = collector
    headers = {} if authorization is None else {"Authorization": authorization}
    body = json.dumps({"batch": [event(1)]}).encode()
    response = httpx.post(f"{url}/v1/batch", content=body, headers=headers)
    assert response.status_code == 401
    assert len(store) == 0


def test_an_oversized_body_is_refused(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    big = json.dumps({"batch": [event(i, properties={"x": "y" * 1000}) for i in range(1100)]})
    assert post(url, big.encode()).status_code == 413
    assert len(store) == 0


def test_a_gzip_bomb_is_refused_without_inflating_it(collector: tuple[str, EventStore]) -> None:
    url, store = collector
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(512)) + packer.flush()  # 512 MiB
    assert len(bomb) < 600_000  # well under the body limit: only inflating can catch it
    response = post(url, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "inflates" in response.json()["error"]
    assert len(store) == 0


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        (b"{not json", None, "not JSON"),
        (b'{"events": []}', None, '"batch" list'),
        (json.dumps({"batch": [event(1), {"type": "track"}]}).encode(), None, "batch[1]"),
        (json.dumps({"batch": [event(1, type="bogus")]}).encode(), None, "type must be"),
        (json.dumps({"batch": [event(1, event="")]}).encode(), None, "event name"),
        (json.dumps({"batch": [event(1, userId=None)]}).encode(), None, "userId"),
        (json.dumps({"batch": [event(1), event(1)]}).encode(), None, "repeated"),
        (json.dumps({"batch": [event(1, timestamp=5)]}).encode(), None, "ISO 8601"),
        (b"not gzip at all", "gzip", "not valid gzip"),
        (gzip.compress(b'{"batch": []}')[:-8], "gzip", "truncated"),
    ],
)
def test_malformed_bodies_are_refused_naming_the_problem(
    collector: tuple[str, EventStore], body: bytes, encoding: str | None, message: str
) -> None:
    url, store = collector
    headers = {"Content-Encoding": encoding} if encoding else {}
    response = post(url, body, **headers)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert len(store) == 0  # all or nothing: the good event of a bad batch is not stored


def test_other_paths_and_methods(collector: tuple[str, EventStore]) -> None:
    url, _ = collector
    assert httpx.get(f"{url}/v1/batch").status_code == 405
    assert httpx.get(f"{url}/nope").status_code == 404
    assert httpx.post(f"{url}/health").status_code == 405


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


def test_serve_needs_a_write_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from uptake.cli import main

    monkeypatch.delenv("UPTAKE_WRITE_KEY", raising=False)
    assert main(["serve", "--db", str(tmp_path / "e.db")]) == 2


def test_the_app_needs_a_key() -> None:
    with pytest.raises(ValueError, match="write key"):
        create_app(EventStore(":memory:"), [])


def test_what_the_sdk_escapes_is_stored_and_bad_fields_are_400(
    collector: tuple[str, EventStore],
) -> None:
    url, store = collector
    client = uptake.Client(write_key=KEY, endpoint=url)
    client.track("u\ud800", "E\ud800", {"p": "a\ud800b"})
    assert client.flush(timeout=10)
    client.shutdown()
    assert any(e.get("properties", {}).get("p") == "a\ud800b" for e in store.events())
    for body in (
        b'{"batch": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        json.dumps({"batch": [event(1, userId={"x": 1})]}).encode(),
        b'{"batch": [{"type": "track", "event": "E", "userId": "u", "messageId": "n", "x": NaN}]}',
    ):
        assert post(url, body).status_code == 400


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
        assert httpx.get(f"{url}/health").json() == {"status": "ok", "events": 0}
        holder.execute("ROLLBACK")
        assert post(url, body).status_code == 200
        assert len(store) == 1
    holder.close()
    store.close()


def test_a_stalled_body_is_408(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    with serving(create_app(store, [KEY], body_timeout=0.2)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            head = (
                "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                f"Authorization: {AUTH['Authorization']}\r\n\r\n"
            )
            conn.sendall(head.encode() + b'{"batch": [')  # and then nothing more
            reply = conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply
    assert len(store) == 0
    store.close()


def test_an_empty_write_key_is_refused(tmp_path: Path) -> None:
    from uptake.cli import main

    with pytest.raises(ValueError, match="cannot be empty"):
        create_app(EventStore(":memory:"), ["wk", ""])
    assert main(["serve", "--db", str(tmp_path / "e.db"), "--write-key", " "]) == 2
