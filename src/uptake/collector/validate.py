"""Checking one Segment event and turning it into a storable row (no I/O here).

Each event of a body is checked alone (:func:`_check`): a bad one is a :class:`Rejection`
with a reason code (:data:`REASONS`), never the whole body's failure. A good one gets its
event time by Segment's rule (:func:`event_time`) and is serialized once, refusing
anything non-finite, into a :data:`Row` of the ``events`` table.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..definitions import parse_time, writable

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT",
    "REASONS",
    "Rejection",
    "Row",
    "event_time",
    "format_time",
    "read_time",
]

#: The Segment event types.
EVENT_TYPES = frozenset({"track", "identify", "group", "page", "screen", "alias"})
#: Largest event, in bytes of JSON (Segment's limit: 32 KB per message).
MAX_EVENT = 32 * 1024
#: Longest messageId accepted.
MAX_MESSAGE_ID = 256

#: Why an event is rejected: code -> what it means.
REASONS: Mapping[str, str] = {
    "not_an_object": "the event is not a JSON object",
    "unknown_type": "no type, or not one of track, identify, group, page, screen, alias",
    "bad_id": "an id (userId, anonymousId, groupId, previousId, messageId) is not a string",
    "missing_id": "no userId or anonymousId (group: no groupId; alias: no previousId)",
    "empty_event_name": "a track event without a non-empty event name",
    "bad_field": "event or name is not a string, or the event nests too deep",
    "non_finite_number": "a number that is NaN, Infinity or out of the float range",
    "bad_timestamp": "timestamp or originalTimestamp is not an ISO 8601 date-time",
    "too_large": f"the event is over {MAX_EVENT // 1024} KB of JSON",
}

_IDS = ("userId", "anonymousId", "groupId", "previousId")


class Rejection:
    """One event rejected: where it was in the batch, its messageId if any, and why."""

    __slots__ = ("code", "index", "message", "message_id")

    def __init__(self, index: int, message_id: str | None, code: str, message: str) -> None:
        self.index = index
        self.message_id = message_id
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "messageId": self.message_id,
            "code": self.code,
            "message": self.message,
        }


#: A row of the ``events`` table, in :data:`uptake.collector.store.COLUMNS` order.
Row = tuple[str, float, float, str, str, str | None, str | None, str | None, str | None, str]


class _NonFinite:
    """Stands for a number that is not finite, so that the event holding it is rejected
    alone (``json.dumps`` refuses it) instead of the whole body failing to parse."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<non-finite number>"


_NONFINITE = _NonFinite()


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NONFINITE


def _int(text: str) -> int | _NonFinite:
    # Past 308 digits a number is beyond any float (SQLite would read it as infinity), and
    # past 4300 Python refuses to convert it at all.
    return int(text) if len(text) <= 309 else _NONFINITE


def _constant(name: str) -> _NonFinite:
    return _NONFINITE  # NaN, Infinity, -Infinity


_DECODER = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_constant)


def event_time(
    timestamp: float | None, original: float | None, sent_at: float | None, received_at: float
) -> float:
    """An event's time by Segment's rule, all in epoch seconds.

    ``timestamp`` when the event has one; else ``originalTimestamp`` corrected by the
    client's clock skew (``receivedAt - sentAt``, when ``sentAt`` is known); else the time
    the collector received it.
    """
    if timestamp is not None:
        return timestamp
    if original is not None:
        return original if sent_at is None else original + (received_at - sent_at)
    return received_at


def format_time(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as the SDKs write it."""
    when = datetime.fromtimestamp(seconds, timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_time(value: object) -> float | None:
    """Epoch seconds of an event time, by :func:`uptake.definitions.parse_time`, with the
    SDKs' own form (UTC, ``Z``) read the fast way; None when it is not a finite time."""
    if type(value) is str and value[10:11] == "T" and value[-1:] == "Z":
        try:  # Python 3.11+ reads "Z"; the shared parser is a few times slower
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    seconds = parse_time(value)
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _time_field(event: Mapping[str, Any], field: str) -> tuple[float | None, str | None]:
    """(epoch seconds, None) for a usable time field or an absent one ((None, None)); else
    (None, the problem)."""
    value = event.get(field)
    if value is None:
        return None, None
    if type(value) is not str:
        return None, f"{field} must be an ISO 8601 string, not {type(value).__name__}"
    seconds = read_time(value)
    if seconds is None:
        return None, f"{field} is not an ISO 8601 date-time"
    return seconds, None


def _canonical(text: object) -> bool:
    """Whether a time is already written as the collector writes it (UTC, ms, "Z")."""
    return (
        type(text) is str
        and len(text) == 24
        and text[10] == "T"
        and text[19] == "."
        and text[23] == "Z"
    )


class _Pending:
    """An event that passed validation, waiting for the batch's sentAt (which may come
    after the batch in the body) to fix its time."""

    __slots__ = (
        "anonymous",
        "body",
        "event",
        "group",
        "kind",
        "message_id",
        "original",
        "sent_at",
        "stamp",
        "timestamp",
        "user",
    )

    def __init__(
        self,
        message_id: str | None,
        kind: str,
        names: tuple[str | None, str | None, str | None, str | None],
        times: tuple[float | None, float | None, float | None],
        stamp: object,
        body: str,
    ) -> None:
        self.message_id = message_id
        self.kind = kind
        self.event, self.user, self.anonymous, self.group = names
        self.timestamp, self.original, self.sent_at = times
        self.stamp = stamp  # the timestamp as sent, when valid
        self.body = body  # the event's JSON without the fields the collector sets


def _check(event: Any, index: int, kind: str | None) -> _Pending | Rejection:
    """Validate one decoded event; the pending row, or why it is rejected."""
    if not isinstance(event, dict):
        return Rejection(index, None, "not_an_object", REASONS["not_an_object"])
    raw_id = event.get("messageId")
    message_id = raw_id if isinstance(raw_id, str) and raw_id else None

    def reject(code: str, message: str) -> Rejection:
        return Rejection(index, message_id, code, message)

    if kind is None:
        kind = event.get("type")
        if not isinstance(kind, str) or kind not in EVENT_TYPES:
            shown = kind if isinstance(kind, str) else type(kind).__name__
            return reject(
                "unknown_type", f"type must be one of {sorted(EVENT_TYPES)}, not {_short(shown)!r}"
            )
    if raw_id is not None and not isinstance(raw_id, str):
        return reject("bad_id", f"messageId must be a string, not {type(raw_id).__name__}")
    if message_id is not None and len(message_id) > MAX_MESSAGE_ID:
        return reject("bad_id", f"messageId is over {MAX_MESSAGE_ID} characters")
    for field in _IDS:
        value = event.get(field)
        if value is not None and not isinstance(value, str):
            return reject("bad_id", f"{field} must be a string, not {type(value).__name__}")
    user, anonymous = event.get("userId") or None, event.get("anonymousId") or None
    group = event.get("groupId") or None
    if user is None and anonymous is None:
        return reject("missing_id", "needs a userId or an anonymousId")
    if kind == "group" and group is None:
        return reject("missing_id", "a group event needs a groupId")
    if kind == "alias" and not event.get("previousId"):
        return reject("missing_id", "an alias event needs a previousId")
    name = event.get("event")
    if kind == "track":
        if name is not None and not isinstance(name, str):
            return reject("bad_field", f"event must be a string, not {type(name).__name__}")
        if not name or not name.strip():
            return reject("empty_event_name", "a track event needs a non-empty event name")
    elif name is not None and not isinstance(name, str):
        return reject("bad_field", f"event must be a string, not {type(name).__name__}")
    page_name = event.get("name")
    if page_name is not None and not isinstance(page_name, str):
        return reject("bad_field", f"name must be a string, not {type(page_name).__name__}")
    if group is None:
        context = event.get("context")
        if isinstance(context, dict) and isinstance(context.get("groupId"), str):
            group = context["groupId"] or None
    timestamp, problem = _time_field(event, "timestamp")
    if problem is None:
        original, problem = _time_field(event, "originalTimestamp")
    if problem is not None:
        return reject("bad_timestamp", problem)
    sent_at, _ = _time_field(event, "sentAt")  # only corrects skew: a bad one is ignored

    # The collector sets these itself (Segment does the same), and keeps no write key.
    event.pop("receivedAt", None)
    event.pop("writeKey", None)
    if timestamp is None:
        event.pop("timestamp", None)
    if message_id is None:
        event.pop("messageId", None)
    event["type"] = kind
    try:
        body = _ENCODER.encode(event)
    except (TypeError, ValueError):
        where = _non_finite_path(event)
        return reject(
            "non_finite_number",
            f"{where or 'a value'} is not a finite number (NaN, Infinity or out of range)",
        )
    except RecursionError:
        return reject("bad_field", "the event nests too deep")
    # ASCII JSON: a lone surrogate survives; the size counts what a client sent as UTF-8.
    if len(body) > MAX_EVENT and (
        len(
            json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode(
                "utf-8", "surrogatepass"
            )
        )
        > MAX_EVENT
    ):
        return reject("too_large", f"the event is over {MAX_EVENT // 1024} KB of JSON")
    stamp = event.get("timestamp") if timestamp is not None else None
    return _Pending(
        message_id,
        kind,
        (name, user, anonymous, group),
        (timestamp, original, sent_at),
        stamp,
        body,
    )


def _unserializable(value: object) -> Any:
    raise TypeError(f"{value!r} is not JSON")


# ASCII JSON (a lone surrogate survives as an escape); refuses NaN, Infinity and _NONFINITE.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_unserializable)


def _non_finite_path(value: object, path: str = "") -> str | None:
    """Where in an event the first non-finite number is, as ``properties.price``."""
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if item is _NONFINITE or (isinstance(item, float) and not math.isfinite(item)):
            return where
        if isinstance(item, dict):
            children = [(v, f"{where}.{k}" if where else str(k)) for k, v in item.items()]
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(v, f"{where}[{i}]") for i, v in enumerate(item)]))
    return None


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _finish(
    pending: _Pending, batch_sent_at: float | None, received_at: float, received: str
) -> Row | None:
    """The row to store, its time fixed by Segment's rule; None when that time is out of
    the range a date can be written in (a clock skew of millennia)."""
    sent_at = pending.sent_at if pending.sent_at is not None else batch_sent_at
    when = event_time(pending.timestamp, pending.original, sent_at, received_at)
    if _canonical(pending.stamp):
        iso = str(pending.stamp)
    else:
        try:
            iso = format_time(when)
        except (ValueError, OverflowError, OSError):
            return None
    # The fields the collector sets go first: plain ASCII, no escaping needed.
    message_id = pending.message_id
    if message_id is None:
        message_id = str(uuid.uuid4())
        prefix = f'{{"messageId":"{message_id}",'
    else:
        prefix = "{"
    if pending.timestamp is None:
        prefix += f'"timestamp":"{iso}",'
    prefix += f'"receivedAt":"{received}"'
    body = pending.body
    body = prefix + ("," + body[1:] if body != "{}" else "}")
    return (
        message_id,
        received_at,
        when,
        iso,
        pending.kind,
        _text(pending.event),
        _text(pending.user),
        _text(pending.anonymous),
        _text(pending.group),
        body,
    )


def _text(value: str | None) -> str | None:
    """A string SQLite can store (a lone surrogate becomes U+FFFD)."""
    return None if value is None else writable(value)
