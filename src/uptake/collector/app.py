"""The reference collector: a plain ASGI app accepting Segment-spec ``POST /v1/batch``.

Served by uvicorn (``uptake serve``). Every request is checked before anything is stored:
the write key (401), the body size and, for gzip bodies, the inflated size (413: a small
gzip that inflates to a gigabyte is refused without inflating it), the JSON and every
event in it (400 naming the first problem), the Content-Encoding (415 unless gzip or
identity) and the pace of the body (408 when it stalls). A batch is stored all or nothing,
and a messageId already stored is not stored again, so a retried batch is harmless. The
SQLite write runs on a worker thread; a locked file answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import sqlite3
import zlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .store import EventStore

__all__ = ["BODY_TIMEOUT", "MAX_BODY", "MAX_INFLATED", "create_app"]

logger = logging.getLogger("uptake.collector")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest request body accepted, as sent (compressed or not).
MAX_BODY = 1_000_000
#: Largest body accepted once inflated.
MAX_INFLATED = 8_000_000
#: Longest wait for the next piece of a request body, in seconds.
BODY_TIMEOUT = 30.0
_TYPES = frozenset({"track", "identify", "group", "page", "screen", "alias"})
_MAX_ID = 256


class _Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def create_app(
    store: EventStore,
    write_keys: Iterable[str],
    *,
    max_body: int = MAX_BODY,
    max_inflated: int = MAX_INFLATED,
    body_timeout: float = BODY_TIMEOUT,
) -> ASGIApp:
    """The collector as an ASGI 3 application storing into ``store``.

    Writes to SQLite run on a worker thread, so a busy or locked file never stalls the
    event loop; a write that cannot get the file answers 503 with ``Retry-After`` (the SDK
    retries it).

    Args:
        store: Where accepted events go.
        write_keys: The keys a client may send (HTTP Basic user name, Segment style).
        max_body: Largest body, in bytes, as sent.
        max_inflated: Largest body, in bytes, after gzip.
        body_timeout: Longest wait for the next piece of a body (408 after it).

    Raises:
        ValueError: no write key, or an empty one.
    """
    keys = frozenset(write_keys)
    if not keys:
        raise ValueError("the collector needs at least one write key")
    if "" in keys:
        raise ValueError("a write key cannot be empty")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        try:
            if path == "/health":
                if method not in ("GET", "HEAD"):
                    raise _Refused(405, "use GET")
                count = await asyncio.to_thread(len, store)
                await _reply(send, 200, {"status": "ok", "events": count})
                return
            if path != "/v1/batch":
                raise _Refused(404, f"no such endpoint: {path}")
            if method != "POST":
                raise _Refused(405, "use POST")
            headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
            _check_key(headers.get("authorization"), keys)
            encoding = headers.get("content-encoding", b"").strip().lower()
            if encoding not in (b"", b"identity", b"gzip"):
                raise _Refused(415, "Content-Encoding must be gzip or identity")
            body = await _read_body(receive, headers, max_body, body_timeout)
            if encoding == b"gzip":
                body = _inflate(body, max_inflated)
            events = _parse(body)
            try:
                stored, duplicates = await asyncio.to_thread(store.add, events)
            except (ValueError, TypeError, OverflowError) as exc:  # (not JSON-safe for SQLite)
                raise _Refused(400, f"an event cannot be stored: {exc}") from None
            except sqlite3.OperationalError as exc:  # locked, busy, disk full: try again
                logger.warning("could not store a batch of %d events: %s", len(events), exc)
                raise _Refused(503, f"the event store is unavailable: {exc}", 1) from None
        except _Refused as refused:
            await _reply(
                send,
                refused.status,
                {"success": False, "error": refused.message},
                refused.retry_after,
            )
            return
        await _reply(send, 200, {"success": True, "stored": stored, "duplicates": duplicates})

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _check_key(header: bytes | None, keys: frozenset[str]) -> None:
    if header is None or not header.lower().startswith(b"basic "):
        raise _Refused(401, "missing write key (HTTP Basic auth, the key as user name)")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _Refused(401, "malformed Authorization header") from None
    if decoded.partition(":")[0] not in keys:
        raise _Refused(401, "unknown write key")


async def _read_body(
    receive: Receive, headers: dict[str, bytes], limit: int, timeout: float
) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except asyncio.TimeoutError:
            raise _Refused(408, f"no body data for {timeout:g}s") from None
        if message["type"] == "http.disconnect":
            raise _Refused(400, "client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _inflate(body: bytes, limit: int) -> bytes:
    """Gunzip at most ``limit`` bytes (every gzip member); refuse more without inflating it."""
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise _Refused(400, f"body is not valid gzip: {exc}") from None
        size += len(out)
        if size > limit or inflater.unconsumed_tail:
            raise _Refused(413, f"body inflates to over {limit} bytes")
        if not inflater.eof:
            raise _Refused(400, "body is not valid gzip: truncated")
        parts.append(out)
        rest = inflater.unused_data
        if not rest:  # another member may follow (RFC 1952 allows several)
            return b"".join(parts)


def _parse(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _Refused(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("batch"), list):
        raise _Refused(400, 'body must be an object with a "batch" list')
    events: list[dict[str, Any]] = data["batch"]
    seen: set[str] = set()
    for i, event in enumerate(events):
        where = f"batch[{i}]"
        if not isinstance(event, dict):
            raise _Refused(400, f"{where} is not an object")
        kind = event.get("type")
        if kind not in _TYPES:
            raise _Refused(400, f"{where}: type must be one of {sorted(_TYPES)}, not {kind!r}")
        message_id = event.get("messageId")
        if not isinstance(message_id, str) or not message_id or len(message_id) > _MAX_ID:
            raise _Refused(400, f"{where}: messageId must be a non-empty string")
        if message_id in seen:
            raise _Refused(400, f"{where}: messageId {message_id!r} repeated in the batch")
        seen.add(message_id)
        if not any(
            isinstance(event.get(k), str) and event.get(k) for k in ("userId", "anonymousId")
        ):
            raise _Refused(400, f"{where}: needs a userId or an anonymousId")
        for field in ("userId", "anonymousId", "groupId", "event"):
            if event.get(field) is not None and not isinstance(event[field], str):
                raise _Refused(400, f"{where}: {field} must be a string")
        if kind == "track" and not (isinstance(event.get("event"), str) and event["event"]):
            raise _Refused(400, f"{where}: a track event needs an event name")
        if "timestamp" in event and not isinstance(event["timestamp"], str):
            raise _Refused(400, f"{where}: timestamp must be an ISO 8601 string")
    return events


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


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
