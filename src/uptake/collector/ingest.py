"""Reading a request body into storable rows, one event at a time (no asyncio here).

The collector answers like Segment's HTTP tracking API: a body that parses as a batch is
accepted, its valid events are stored and each invalid one is rejected alone, with a
reason code (:data:`REASONS`). Only a body that is not JSON, not a batch (or, for the
single-event endpoints, not an object), or too large is refused whole.

The body is decoded event by event (``json.JSONDecoder.raw_decode``) rather than with one
``json.loads``: each event is validated and serialized as soon as it is read and its
parsed form dropped, so a batch never exists twice in memory as Python objects, and the
thread doing this gives the interpreter lock back between events (one ``json.loads`` of
8 MB would hold it, and so stall the event loop, for the whole parse).

Every stored event gets an event time by Segment's rule (:func:`event_time`). Nothing
non-finite is ever stored: ``NaN``, ``Infinity`` and numbers such as ``1e999`` (which
Python's ``json`` reads as infinity) reject the event that holds them.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from typing import Any

from .validate import (
    _DECODER,
    EVENT_TYPES,
    MAX_EVENT,
    REASONS,
    Rejection,
    Row,
    _check,
    _finish,
    _Pending,
    _short,
    event_time,
    format_time,
    read_time,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT",
    "MAX_LISTED",
    "REASONS",
    "Ingested",
    "Refused",
    "Rejection",
    "decode",
    "event_time",
    "format_time",
    "inflate",
    "read_body",
    "read_time",
]

#: At most this many rejections are listed in a response (all are counted).
MAX_LISTED = 100

_WS = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    """The position of the first character at or after ``pos`` that is not JSON space."""
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # (always matches)


class Refused(Exception):
    """A request refused whole: an HTTP status, a Segment-style code and a message."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Ingested:
    """What a body held: the rows to store, the rejected events, and the write key sent in
    the body (``writeKey``, Segment's alternative to HTTP Basic auth), if any."""

    __slots__ = (
        "_deferred",
        "_received",
        "_received_at",
        "events",
        "rejected",
        "rows",
        "write_key",
    )

    def __init__(self, received_at: float) -> None:
        self.rows: list[Row] = []
        self.rejected: list[Rejection] = []
        self.events = 0
        self.write_key: object = None
        self._received_at = received_at
        self._received = format_time(received_at)
        # Events whose time needs the batch's sentAt, which may follow the batch.
        self._deferred: list[tuple[int, _Pending]] = []

    def _add(self, outcome: _Pending | Rejection, index: int) -> None:
        if isinstance(outcome, Rejection):
            self.rejected.append(outcome)
        elif outcome.timestamp is None and outcome.original is not None and outcome.sent_at is None:
            self._deferred.append((index, outcome))
        else:  # stored as a row of strings and numbers at once: nothing for the GC to track
            self._place(index, outcome, None)

    def _place(self, index: int, pending: _Pending, batch_sent_at: float | None) -> None:
        row = _finish(pending, batch_sent_at, self._received_at, self._received)
        if row is None:
            self.rejected.append(
                Rejection(
                    index, pending.message_id, "bad_timestamp", "the event time is out of range"
                )
            )
        else:
            self.rows.append(row)

    def _close(self, batch_sent_at: float | None) -> None:
        for index, pending in self._deferred:
            self._place(index, pending, batch_sent_at)
        self._deferred = []
        self.rejected.sort(key=lambda r: r.index)

    def reasons(self) -> Counter[str]:
        """How many events were rejected, by reason code."""
        return Counter(r.code for r in self.rejected)


def inflate(body: bytes, limit: int) -> bytes:
    """Gunzip at most ``limit`` bytes (every gzip member); refuse more without inflating it.

    Raises:
        Refused: 413 over the limit, 400 not gzip or truncated.
    """
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise Refused(400, "invalid_gzip", f"body is not valid gzip: {exc}") from None
        size += len(out)
        if size > limit or inflater.unconsumed_tail:
            raise Refused(413, "payload_too_large", f"body inflates to over {limit} bytes")
        if not inflater.eof:
            raise Refused(400, "invalid_gzip", "body is not valid gzip: truncated")
        parts.append(out)
        rest = inflater.unused_data
        if not rest:  # another member may follow (RFC 1952 allows several)
            return parts[0] if len(parts) == 1 else b"".join(parts)


def decode(body: bytes) -> str:
    """The body as text (JSON is UTF-8).

    Raises:
        Refused: 400 when it is not UTF-8.
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, "invalid_json", f"body is not UTF-8 JSON: {exc}") from None


def read_body(body: bytes | str, *, received_at: float, single: str | None = None) -> Ingested:
    """Read a request body: a batch (``{"batch": [...], "sentAt": ...}``), or, for the
    single-event endpoints, one event whose type is ``single``.

    Raises:
        Refused: 400 when the body is not JSON, not a batch or not an object.
    """
    text = decode(body) if isinstance(body, bytes) else body
    del body
    result = Ingested(received_at)
    batch_sent_at = None
    try:
        if single is not None:
            event, end = _DECODER.raw_decode(text, _skip(text, 0))
            _end(text, end)
            if not isinstance(event, dict):
                raise Refused(400, "invalid_request", "body must be a JSON object (one event)")
            result.write_key = event.pop("writeKey", None)
            result.events = 1
            result._add(_check(event, 0, single), 0)
        else:
            fields = _read_batch(text, result)
            result.write_key = fields.get("writeKey")
            if isinstance(fields.get("sentAt"), str):
                batch_sent_at = read_time(fields["sentAt"])
    except (ValueError, RecursionError) as exc:
        raise Refused(400, "invalid_json", f"body is not JSON: {_short(str(exc), 120)}") from None
    result._close(batch_sent_at)
    return result


def _end(text: str, pos: int) -> None:
    if _skip(text, pos) != len(text):
        raise ValueError(f"extra data after the JSON value at char {pos}")


def _read_batch(text: str, result: Ingested) -> dict[str, Any]:
    """Walk ``{"batch": [...], ...}`` checking each event as it is decoded; the other
    top-level fields are returned."""
    decode = _DECODER.raw_decode
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "{":
        decode(text, pos)  # not JSON at all: the decoder says where
        raise Refused(400, "invalid_request", 'body must be an object with a "batch" list')
    fields: dict[str, Any] = {}
    seen_batch = False
    pos = _skip(text, pos + 1)
    if text[pos : pos + 1] == "}":
        pos += 1
    else:
        while True:
            if text[pos : pos + 1] != '"':
                raise ValueError(f"expected a property name at char {pos}")
            key, pos = decode(text, pos)  # a JSON string
            pos = _skip(text, pos)
            if text[pos : pos + 1] != ":":
                raise ValueError(f"expected ':' at char {pos}")
            pos = _skip(text, pos + 1)
            if key == "batch" and text[pos : pos + 1] == "[":
                if seen_batch:
                    raise Refused(400, "invalid_request", 'body has "batch" twice')
                seen_batch = True
                pos = _read_events(text, pos + 1, result)
            else:
                fields[key], pos = decode(text, pos)
            pos = _skip(text, pos)
            char = text[pos : pos + 1]
            if char == "}":
                pos += 1
                break
            if char != ",":
                raise ValueError(f"expected ',' or '}}' at char {pos}")
            pos = _skip(text, pos + 1)
    _end(text, pos)
    if not seen_batch:
        raise Refused(400, "invalid_request", 'body must be an object with a "batch" list')
    return fields


def _read_events(text: str, pos: int, result: Ingested) -> int:
    decode = _DECODER.raw_decode
    add = result._add
    pos = _skip(text, pos)
    if text[pos : pos + 1] == "]":
        return pos + 1
    index = 0
    while True:
        event, pos = decode(text, pos)
        add(_check(event, index, None), index)
        index += 1
        pos = _skip(text, pos)
        char = text[pos : pos + 1]
        if char == "]":
            result.events = index
            return pos + 1
        if char != ",":
            raise ValueError(f"expected ',' or ']' at char {pos}")
        pos = _skip(text, pos + 1)
