"""The reference collector: a plain ASGI app speaking Segment's HTTP tracking API.

Served by uvicorn (``uptake serve``). Endpoints: ``POST /v1/batch`` and ``/v1/import`` (a
batch), ``/v1/track``, ``/v1/identify``, ``/v1/group``, ``/v1/page``, ``/v1/screen`` and
``/v1/alias`` (one event, its type given by the path), and ``GET /health``. The write key
comes by HTTP Basic auth (the key as user name) or as ``writeKey`` in the body.

A body that parses as a batch is answered 200: its valid events are stored, each invalid
one is rejected alone and listed in the response with a reason code (see
:data:`uptake.collector.ingest.REASONS`), counted in the store by reason and logged. A
whole request is refused only when the write key is wrong (401), the body is too large as
sent or once inflated (413: a gzip bomb is refused without inflating it), not gzip or not
JSON or not a batch (400), its encoding unknown (415), it stalls (408), or the collector
is saturated or the store locked (503 with ``Retry-After``). Error bodies carry Segment's
``code`` and ``message``, which Segment-family clients read.

Resources are bounded: the bodies being read or waiting to be processed hold at most
``max_in_flight`` bytes (a request past it waits for room, then gets 503), and gunzip,
parsing, validation and the SQLite write run on a small pool of threads
(``ingest_threads``), never on the event loop, so ``/health`` keeps answering.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .ingest import MAX_LISTED, Ingested, Refused, decode, inflate, read_body
from .store import EventStore

__all__ = [
    "BODY_TIMEOUT",
    "INGEST_THREADS",
    "MAX_BODY",
    "MAX_INFLATED",
    "MAX_IN_FLIGHT",
    "QUEUE_TIMEOUT",
    "create_app",
]

logger = logging.getLogger("uptake.collector")
access_logger = logging.getLogger("uptake.collector.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest request body accepted, as sent (compressed or not).
MAX_BODY = 1_000_000
#: Largest body accepted once inflated.
MAX_INFLATED = 8_000_000
#: Longest time to receive a whole request body, in seconds (408 after it).
BODY_TIMEOUT = 30.0
#: Most bytes of request bodies held at once (being read, or waiting to be processed).
MAX_IN_FLIGHT = 16_000_000
#: Longest wait for room under ``MAX_IN_FLIGHT`` before answering 503, in seconds.
QUEUE_TIMEOUT = 10.0
#: Threads that gunzip, parse, validate and store bodies.
INGEST_THREADS = 2

_BATCH = frozenset({"/v1/batch", "/v1/import"})
_SINGLE = {
    f"/v1/{kind}": kind for kind in ("track", "identify", "group", "page", "screen", "alias")
}
_KEY_HELP = "HTTP Basic auth with the key as user name, or writeKey in the body"


class _InFlight:
    """A budget of bytes: a request reserves room for its body before reading it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._room: asyncio.Condition | None = None

    async def acquire(self, size: int, timeout: float) -> bool:
        if self._room is None:
            self._room = asyncio.Condition()
        size = min(size, self.limit)
        async with self._room:
            try:
                await asyncio.wait_for(
                    self._room.wait_for(lambda: self.used + size <= self.limit), timeout
                )
            except asyncio.TimeoutError:
                return False
            self.used += size
            return True

    async def release(self, size: int) -> None:
        assert self._room is not None
        async with self._room:
            self.used -= min(size, self.limit)
            self._room.notify_all()


class _Request:
    """What the access log says about one request."""

    __slots__ = (
        "client",
        "code",
        "events",
        "message",
        "method",
        "path",
        "received",
        "rejected",
        "stored",
    )

    def __init__(self, scope: Scope) -> None:
        client = scope.get("client")
        self.client = f"{client[0]}:{client[1]}" if client else "-"
        self.method = str(scope.get("method", "-"))
        self.path = str(scope.get("path", ""))
        self.received = 0
        self.events = 0
        self.stored = 0
        self.rejected = 0
        self.code = ""
        self.message = ""


def create_app(
    store: EventStore,
    write_keys: Iterable[str],
    *,
    max_body: int = MAX_BODY,
    max_inflated: int = MAX_INFLATED,
    body_timeout: float = BODY_TIMEOUT,
    max_in_flight: int = MAX_IN_FLIGHT,
    queue_timeout: float = QUEUE_TIMEOUT,
    ingest_threads: int = INGEST_THREADS,
    close_store: bool = False,
) -> ASGIApp:
    """The collector as an ASGI 3 application storing into ``store``.

    Args:
        store: Where accepted events go.
        write_keys: The keys a client may send (HTTP Basic user name, or ``writeKey`` in
            the body, Segment style).
        max_body: Largest body, in bytes, as sent.
        max_inflated: Largest body, in bytes, after gzip.
        body_timeout: Longest time to receive a whole body, in seconds (408 after it).
        max_in_flight: Most bytes of bodies held at once; a request past it waits.
        queue_timeout: Longest such wait, in seconds, before 503 with ``Retry-After``.
        ingest_threads: Threads that gunzip, parse, validate and store bodies.
        close_store: Close ``store`` at the ASGI lifespan's shutdown.

    Raises:
        ValueError: no write key, or an empty one.
    """
    keys = frozenset(write_keys)
    if not keys:
        raise ValueError("the collector needs at least one write key")
    if "" in keys:
        raise ValueError("a write key cannot be empty")
    in_flight = _InFlight(max_in_flight)
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=ingest_threads, thread_name_prefix="uptake-ingest"
    )

    def ingest(
        body: bytes, gzip: bool, single: str | None, received_at: float, key_checked: bool
    ) -> tuple[Ingested, int, int]:
        """On a pool thread: gunzip, read, check the body's key if need be, store."""
        text = decode(inflate(body, max_inflated) if gzip else body)
        del body  # (the caller keeps the body as sent: at most max_body bytes)
        ingested = read_body(text, received_at=received_at, single=single)
        del text
        if not key_checked:
            key = ingested.write_key
            if key is None:
                raise Refused(401, "unauthorized", f"missing write key ({_KEY_HELP})")
            if not isinstance(key, str) or key not in keys:
                raise Refused(401, "unauthorized", "unknown write key")
        try:
            stored, duplicates = store.add_rows(ingested.rows, ingested.reasons())
        except sqlite3.OperationalError as exc:  # locked, busy, disk full: try again
            logger.warning("could not store %d events: %s", len(ingested.rows), exc)
            raise Refused(503, "unavailable", f"the event store is unavailable: {exc}", 1) from None
        return ingested, stored, duplicates

    async def collect(
        scope: Scope, receive: Receive, send: Send, request: _Request, single: str | None
    ) -> None:
        received_at = time.time()
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        encoding = headers.get("content-encoding", b"").strip().lower()
        if encoding not in (b"", b"identity", b"gzip"):
            raise Refused(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
        key_checked = _check_key(headers.get("authorization"), keys)
        declared = headers.get("content-length")
        size = int(declared) if declared is not None and declared.isdigit() else max_body
        if size > max_body:
            raise Refused(413, "payload_too_large", f"body over {max_body} bytes")
        if not await in_flight.acquire(size, queue_timeout):
            raise Refused(503, "overloaded", "the collector is busy; retry later", 1)
        try:
            body = await _read_body(receive, max_body, body_timeout, request)
            job = asyncio.get_running_loop().run_in_executor(
                pool, ingest, body, encoding == b"gzip", single, received_at, key_checked
            )
            del body
            ingested, stored, duplicates = await job
        finally:
            await in_flight.release(size)
        request.events, request.stored = ingested.events, stored
        request.rejected = len(ingested.rejected)
        if ingested.rejected:
            _log_rejections(request, ingested)
        await _reply(
            send,
            200,
            {
                "success": True,
                "stored": stored,
                "duplicates": duplicates,
                "rejected": len(ingested.rejected),
                "rejections": [r.as_dict() for r in ingested.rejected[:MAX_LISTED]],
            },
        )

    async def health(send: Send) -> None:
        def read() -> tuple[int, dict[str, int]]:
            return store.stored(), store.rejected()

        count, rejected = await asyncio.to_thread(read)
        await _reply(send, 200, {"status": "ok", "events": count, "rejected": rejected})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, store if close_store else None, pool)
            return
        if scope["type"] != "http":
            return
        started = time.monotonic()
        request = _Request(scope)
        path = request.path.rstrip("/") or "/"
        status = 200
        try:
            if path == "/health":
                if request.method not in ("GET", "HEAD"):
                    raise Refused(405, "method_not_allowed", "use GET")
                await health(send)
            elif path in _BATCH or path in _SINGLE:
                if request.method != "POST":
                    raise Refused(405, "method_not_allowed", "use POST")
                await collect(scope, receive, send, request, _SINGLE.get(path))
            else:
                raise Refused(404, "not_found", f"no such endpoint: {_printable(path)}")
        except Refused as refused:
            status = refused.status
            request.code, request.message = refused.code, refused.message
            await _reply(
                send,
                refused.status,
                {"success": False, "code": refused.code, "message": refused.message},
                refused.retry_after,
            )
        finally:
            _log_access(request, status, time.monotonic() - started)

    return app


async def _lifespan(
    receive: Receive,
    send: Send,
    store: EventStore | None,
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            pool.shutdown(wait=True)
            if store is not None:
                store.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _check_key(header: bytes | None, keys: frozenset[str]) -> bool:
    """True when the Authorization header carries a known key; False when there is no
    header (the key must then be in the body)."""
    if header is None:
        return False
    if not header.lower().startswith(b"basic "):
        raise Refused(401, "unauthorized", f"unsupported Authorization ({_KEY_HELP})")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Refused(401, "unauthorized", "malformed Authorization header") from None
    if decoded.partition(":")[0] not in keys:
        raise Refused(401, "unauthorized", "unknown write key")
    return True


async def _read_body(receive: Receive, limit: int, timeout: float, request: _Request) -> bytes:
    """The whole body, within ``limit`` bytes and ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    chunks: list[bytes] = []
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            raise Refused(
                408, "request_timeout", f"the body did not arrive within {timeout:g}s"
            ) from None
        if message["type"] == "http.disconnect":
            raise Refused(400, "client_disconnected", "client went away")
        chunk = message.get("body", b"")
        request.received += len(chunk)
        if request.received > limit:
            raise Refused(413, "payload_too_large", f"body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _log_rejections(request: _Request, ingested: Ingested) -> None:
    counts = ", ".join(f"{code} {n}" for code, n in sorted(ingested.reasons().items()))
    first = ingested.rejected[0]
    logger.warning(
        "rejected %d of %d events from %s (%s); first: batch[%d] %s: %s",
        len(ingested.rejected),
        ingested.events,
        request.client,
        counts,
        first.index,
        first.code,
        first.message,
    )


def _log_access(request: _Request, status: int, seconds: float) -> None:
    """One line per request: never the write key (nor anything else from the body)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    line = (
        f'{request.client} "{request.method} {_printable(request.path)}" {status} '
        f"{request.received}B events={request.events} stored={request.stored} "
        f"rejected={request.rejected} {seconds * 1000:.1f}ms"
    )
    if request.code:
        line += f" {request.code}: {request.message}"
    access_logger.info(line)


def _printable(text: str, limit: int = 100) -> str:
    """A path fit for a log line: no control characters, not too long."""
    text = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return text


async def _reply(
    send: Send, status: int, payload: dict[str, Any], retry_after: int | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
