"""What ``before_send`` receives, and how the event it returns is encoded.

The hook gets a copy of the event made only of JSON types, so it may change it freely;
only the parts that may hold the host's objects are deep-copied (:func:`json_ready_message`).
The event it returns is written by the fast track encoder when it still has the plain
track shape (:func:`encode_message`), and by the general encoder otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .events import LIBRARY, MAX_DEPTH, _sanitize, encode, encode_track

__all__ = ["encode_message", "json_ready", "json_ready_message"]


class _NotPlain(Exception):
    pass


def json_ready(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of an event made only of JSON types, as :func:`encode` would write it.

    What ``before_send`` receives: the host may change it freely, and encoding it once
    afterwards gives the bytes that are sent. Plain data (str keys; str, int, finite float,
    bool, None, dict and list values) is copied the fast way; anything else takes the
    coercing path of :func:`encode`.
    """
    try:
        return _plain_dict(obj, 0)
    except (_NotPlain, RecursionError):
        result: dict[str, Any] = _sanitize(obj, 0, set())
        return result


def json_ready_message(message: Mapping[str, Any], *, host_context: bool) -> dict[str, Any]:
    """Like :func:`json_ready` for a message built by uptake: only its parts that may hold
    the host's objects are deep-copied (``properties``, ``traits``, and ``context`` when
    the host passed one); the rest is uptake's own strings, and a context uptake built
    gets a fresh ``library`` so that changing it changes nothing shared."""
    out = dict(message)
    for key in ("properties", "traits"):
        part = out.get(key)
        if part is not None:
            out[key] = json_ready(part) if isinstance(part, Mapping) else _sanitize(part, 0, set())
    context = out.get("context")
    if host_context:
        out["context"] = json_ready(context) if isinstance(context, Mapping) else None
    elif type(context) is dict:
        context = out["context"] = dict(context)
        context["library"] = dict(LIBRARY)
    return out


_TRACK_KEYS = frozenset(
    {"type", "messageId", "timestamp", "event", "properties", "userId", "anonymousId", "context"}
)
_CONTEXT_KEYS = frozenset({"library", "groupId", "sessionId"})


def encode_message(message: Mapping[str, Any]) -> bytes:
    """Encode a message, the fast way (:func:`encode_track`) when it is a plain track event.

    Plain: uptake's own track fields only, string ids, and a context holding only the
    library, ``groupId`` and ``sessionId``. Anything else takes :func:`encode`.
    """
    fields = _plain_track(message)
    if fields is not None:
        data = encode_track(*fields)
        if data is not None:
            return data
    return encode(message)


_Track = tuple[
    str,
    str,
    "str | None",
    "str | None",
    str,
    "Mapping[str, Any] | None",
    "str | None",
    "str | None",
]


def _plain_track(m: Mapping[str, Any]) -> _Track | None:
    if type(m) is not dict or m.get("type") != "track" or not m.keys() <= _TRACK_KEYS:
        return None
    mid, stamp, event = m.get("messageId"), m.get("timestamp"), m.get("event")
    uid, anon, props = m.get("userId"), m.get("anonymousId"), m.get("properties")
    context = m.get("context")
    if (
        type(mid) is not str
        or type(stamp) is not str
        or type(event) is not str
        or not (uid is None or type(uid) is str)
        or not (anon is None or type(anon) is str)
        or type(props) is not dict
        or type(context) is not dict
        or not context.keys() <= _CONTEXT_KEYS
        or context.get("library") != LIBRARY
    ):
        return None
    account, session = context.get("groupId"), context.get("sessionId")
    if not (account is None or type(account) is str) or not (
        session is None or type(session) is str
    ):
        return None
    if None in (uid, anon, account, session) and (  # a key holding null: keep the null
        (uid is None and "userId" in m)
        or (anon is None and "anonymousId" in m)
        or (account is None and "groupId" in context)
        or (session is None and "sessionId" in context)
    ):
        return None
    return mid, stamp, uid, anon, event, props, account, session


def _plain_dict(value: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if type(value) is not dict or depth >= MAX_DEPTH:
        raise _NotPlain
    out = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _NotPlain
        out[key] = _plain(item, depth + 1)
    return out


def _plain(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if value - value != 0.0:  # NaN or an infinity
            raise _NotPlain
        return value
    if kind is dict:
        return _plain_dict(value, depth)
    if kind is list and depth < MAX_DEPTH:
        return [_plain(item, depth + 1) for item in value]
    raise _NotPlain
