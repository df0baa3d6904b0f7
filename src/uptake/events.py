"""Event building blocks: validation, identifiers, timestamps and JSON encoding.

Everything here runs on the caller's thread inside ``track()``, so it is written for speed:
an event is encoded once, to compact UTF-8 JSON bytes, with a C encoder built once per
process. Values JSON cannot carry are coerced rather than refused (the host cannot always
control them); only programming mistakes raise :class:`~uptake.InvalidEventError`.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import itertools
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from json import encoder as _json_encoder
from typing import Any

from ._version import __version__
from .errors import InvalidEventError

logger = logging.getLogger("uptake")

#: Largest serialized event accepted, in bytes (the Segment spec's per-event limit).
MAX_EVENT_BYTES = 32 * 1024
#: Deepest nesting of properties kept; deeper values are replaced by ``None``.
MAX_DEPTH = 32

LIBRARY: dict[str, str] = {"name": "uptake", "version": __version__}

_UTC = _dt.timezone.utc


class UnencodableEventError(Exception):
    """Internal: an event that could not be turned into JSON even after coercion."""


# --------------------------------------------------------------------------- identifiers


# A private generator, seeded from os.urandom and reseeded in forked children, so ids never
# repeat across processes nor when the host seeds the global ``random`` module.
_rng = random.Random()
_bits = _rng.getrandbits
# Message ids are a random 64-bit prefix per process and a 64-bit counter: unique within
# the process by construction, across processes by the prefix, and cheaper than 128 new
# random bits per event. A forked child draws a new prefix.
_id_prefix = "%016x" % _bits(64)  # noqa: UP031
_id_counter = itertools.count()


def _after_fork_in_child() -> None:
    global _id_prefix, _id_counter
    _rng.seed()
    _id_prefix = "%016x" % _bits(64)  # noqa: UP031
    _id_counter = itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def new_message_id() -> str:
    """Return a fresh message id, unique across processes (32 hex digits)."""
    return f"{_id_prefix}{next(_id_counter):016x}"


def new_session_id() -> str:
    """Return a fresh random session id (64 random bits, 16 hex digits)."""
    return "%016x" % _bits(64)  # noqa: UP031


# --------------------------------------------------------------------------- time

_second_cache: tuple[int, str] = (-1, "")
_milli_cache: tuple[int, str] = (-1, "")


def format_timestamp(t: float) -> str:
    """Format epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``.

    The last millisecond's text and the date-and-seconds part are cached, so formatting the
    current time in a busy loop costs a fraction of ``datetime.isoformat()``.
    """
    global _second_cache, _milli_cache
    millis = math.floor(t * 1000)
    cached_millis, text = _milli_cache
    if millis == cached_millis:
        return text
    sec = millis // 1000
    cached_sec, prefix = _second_cache
    if sec != cached_sec:
        tm = time.gmtime(sec)  # strftime's %Y does not zero-pad years before 1000
        prefix = (
            f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}"
            f"T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        )
        _second_cache = (sec, prefix)
    text = f"{prefix}.{millis - sec * 1000:03d}Z"
    _milli_cache = (millis, text)
    return text


def to_epoch(value: _dt.datetime) -> float:
    """Return a datetime as epoch seconds; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.timestamp()


def _iso(value: _dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- validation


def check_identity(user_id: object, anonymous_id: object) -> tuple[str | None, str | None]:
    """Validate and normalise a user id / anonymous id pair; at least one must be given."""
    uid = _check_id(user_id, "user_id")
    anon = _check_id(anonymous_id, "anonymous_id")
    if uid is None and anon is None:
        raise InvalidEventError("give a user_id or an anonymous_id; both are missing")
    return uid, anon


def _check_id(value: object, what: str) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        if not value:
            raise InvalidEventError(f"{what} must not be empty")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (str, uuid.UUID)):
        return str(value) or _empty(what)
    raise InvalidEventError(f"{what} must be a string or an int, not {type(value).__name__}")


def _empty(what: str) -> str:
    raise InvalidEventError(f"{what} must not be empty")


def check_account(account_id: object) -> str | None:
    """Validate an optional account (group) id."""
    return _check_id(account_id, "account_id")


def check_name(name: object, what: str = "event name") -> str:
    """Validate an event (or feature) name: a non-empty string."""
    if not isinstance(name, str):
        raise InvalidEventError(f"{what} must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidEventError(f"{what} must not be empty")
    return name


def check_mapping(value: object, what: str) -> Mapping[str, Any] | None:
    """Validate optional properties / traits / context: ``None`` or a mapping."""
    if value is None or isinstance(value, Mapping):
        return value
    raise InvalidEventError(
        f"{what} must be a mapping (such as a dict), not {type(value).__name__}"
    )


def check_timestamp(value: object, what: str = "timestamp") -> float | None:
    """Validate an optional event timestamp and return it as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return to_epoch(value)
    raise InvalidEventError(
        f"{what} must be a datetime.datetime (naive means UTC), not {type(value).__name__}"
    )


# --------------------------------------------------------------------------- encoding

_warned_types: set[type] = set()


def _warn_once(kind: type, what: str) -> None:
    if kind not in _warned_types:
        _warned_types.add(kind)
        logger.warning(
            "values of type %s in an event: %s (logged once per type)", kind.__qualname__, what
        )


def coerce(value: Any) -> Any:
    """Return a JSON-friendly stand-in for a value the JSON encoder cannot handle.

    Used as the encoder's ``default`` hook: the result is encoded in turn, so it may itself
    need coercion (an Enum whose value is a Decimal, say). Never raises: a value whose own
    conversion fails (a datetime too close to year 1 to shift to UTC, say) becomes its
    ``str()``.
    """
    try:
        return _coerce(value)
    except Exception:
        return _as_str(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return _iso(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):  # its text keeps every digit ("1.10")
        return str(value) if value.is_finite() else None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    _warn_once(type(value), "coerced to str()")
    return _as_str(value)


def _as_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


def _make_encoder(ascii_only: bool) -> Callable[[Any], str]:
    escape = (
        _json_encoder.encode_basestring_ascii if ascii_only else _json_encoder.encode_basestring
    )
    c_make = getattr(_json_encoder, "c_make_encoder", None)
    if c_make is not None:
        # markers=None: no cycle bookkeeping on the fast path; a cycle ends in RecursionError
        # and the slow path below handles it. allow_nan=False: NaN is not JSON.
        c_enc = c_make(None, coerce, escape, None, ":", ",", False, False, False)

        def encode(obj: Any) -> str:
            return "".join(c_enc(obj, 0))

        return encode
    py_enc = json.JSONEncoder(
        ensure_ascii=ascii_only, allow_nan=False, separators=(",", ":"), default=coerce
    )
    return py_enc.encode


_encode = _make_encoder(ascii_only=False)
_encode_ascii = _make_encoder(ascii_only=True)


def encode(obj: Mapping[str, Any]) -> bytes:
    """Encode an event as compact UTF-8 JSON, coercing what JSON cannot carry.

    NaN and infinities become ``null``, non-string keys become strings, cycles and nesting
    deeper than :data:`MAX_DEPTH` become ``null``.

    Raises:
        UnencodableEventError: when even the sanitised copy cannot be encoded.
    """
    try:
        text = _encode(obj)
    except Exception:  # NaN, odd keys, cycles, a dict changed by another thread, ...
        try:
            text = _encode(_sanitize(obj, 0, set()))
        except Exception as exc:
            raise UnencodableEventError(f"{type(exc).__name__}: {exc}") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: write every non-ASCII character escaped
        return _encode_ascii(json.loads(text)).encode("ascii")


def _sanitize(value: Any, depth: int, active: set[int]) -> Any:
    """Return a deep copy of value made only of JSON types (slow path, rarely taken)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value if type(value) in (str, bool, int) or value is None else _scalar(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        _warn_once(type(value), f"nested deeper than {MAX_DEPTH} levels, replaced by null")
        return None
    ident = id(value)
    if ident in active:
        _warn_once(type(value), "part of a reference cycle, replaced by null")
        return None
    if isinstance(value, (dict, list, tuple)):
        active.add(ident)
        try:
            if isinstance(value, dict):
                return {_key(k): _sanitize(v, depth + 1, active) for k, v in value.items()}
            return [_sanitize(v, depth + 1, active) for v in value]
        finally:
            active.discard(ident)
    replacement = coerce(value)
    if replacement is value:  # pragma: no cover - coerce always returns a new object
        return None
    active.add(ident)
    try:
        return _sanitize(replacement, depth + 1, active)
    finally:
        active.discard(ident)


def _scalar(value: Any) -> Any:
    # Subclasses of str / int (StrEnum, IntEnum, custom ints): keep their plain value.
    if isinstance(value, enum.Enum):
        return _sanitize(value.value, 0, set())
    if isinstance(value, str):
        return str.__str__(value)
    return int(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    coerced = coerce(key)
    return coerced if isinstance(coerced, str) else str(coerced)


def decode(message: bytes) -> dict[str, Any]:
    """Decode one encoded event back into a dict."""
    result: dict[str, Any] = json.loads(message)
    return result


_escape = _json_encoder.encode_basestring
_LIBRARY_JSON = _encode(LIBRARY)


def encode_track(
    message_id: str | None,
    timestamp: str,
    user_id: str | None,
    anonymous_id: str | None,
    event: str,
    properties: Mapping[str, Any] | None,
    account_id: str | None,
    session_id: str | None,
) -> bytes | None:
    """Encode a plain track event without building its dict first (the hot path).

    Produces the same JSON document as :func:`encode` on the equivalent message; a
    ``message_id`` of None gives the event a new one (as :func:`new_message_id`). Returns
    ``None`` when the event needs the careful path (properties that need sanitising, text
    that is not valid UTF-8); the caller then builds the dict and uses :func:`encode`.
    """
    try:
        props = _encode(properties) if properties else "{}"
    except Exception:
        return None
    # One f-string per event (cheaper than joining a list); the common shapes first.
    if anonymous_id is None:
        ids = "" if user_id is None else f',"userId":{_escape(user_id)}'
    elif user_id is None:
        ids = f',"anonymousId":{_escape(anonymous_id)}'
    else:
        ids = f',"userId":{_escape(user_id)},"anonymousId":{_escape(anonymous_id)}'
    group = "" if account_id is None else f',"groupId":{_escape(account_id)}'
    session = "" if session_id is None else f',"sessionId":{_escape(session_id)}'
    if message_id is None:
        message_id = f"{_id_prefix}{next(_id_counter):016x}"
    text = (
        f'{{"type":"track","messageId":"{message_id}","timestamp":"{timestamp}",'
        f'"event":{_escape(event)},"properties":{props}{ids},'
        f'"context":{{"library":{_LIBRARY_JSON}{group}{session}}}}}'
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None
