"""Validation, coercion and encoding of events (the caller-thread half of track())."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import logging
import uuid
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

import uptake
from uptake import events
from uptake.testing import capture_events


class Color(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    LARGE = 3


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


def encoded(value: Any) -> Any:
    return json.loads(events.encode({"v": value}))["v"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc),
            "2026-01-02T03:04:05.678000Z",
        ),
        (dt.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),  # naive: UTC
        (
            dt.datetime(2026, 1, 2, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2026-01-02T03:00:00Z",
        ),
        (dt.date(2026, 1, 2), "2026-01-02"),
        (dt.time(3, 4), "03:04:00"),
        (dt.timedelta(minutes=1, seconds=30), 90.0),
        (decimal.Decimal("12.50"), "12.50"),
        (decimal.Decimal("1.10"), "1.10"),
        (decimal.Decimal("1E+3"), "1E+3"),
        (decimal.Decimal("-0.0000000000000000000123456789012345"), "-1.23456789012345E-20"),
        (decimal.Decimal("NaN"), None),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Color.RED, "red"),
        (Size.LARGE, 3),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ((1, "a"), [1, "a"]),
        (b"caf\xc3\xa9", "café"),
        (b"\xff", "\ufffd"),
        (bytearray(b"ok"), "ok"),
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        ([1.5, float("nan"), {"deep": float("inf")}], [1.5, None, {"deep": None}]),
        (MappingProxyType({"a": 1}), {"a": 1}),
        (OrderedDict(a=1), {"a": 1}),
        ({1: "int key", None: "none", uuid.UUID(int=2): "uuid"}, None),
    ],
)
def test_values_json_cannot_carry_are_coerced(value: Any, expected: Any) -> None:
    result = encoded(value)
    if expected is None and isinstance(value, dict):
        assert result == {
            "1": "int key",
            "null": "none",
            "00000000-0000-0000-0000-000000000002": "uuid",
        }
    else:
        assert result == expected


def test_unknown_types_become_str_with_one_warning_per_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events._warned_types.discard(Opaque)
    with caplog.at_level(logging.WARNING, logger="uptake"):
        assert encoded(Opaque()) == "opaque!"
        assert encoded([Opaque(), Opaque()]) == ["opaque!", "opaque!"]
    warnings = [r for r in caplog.records if "Opaque" in r.getMessage()]
    assert len(warnings) == 1


def test_cycles_and_deep_nesting_are_cut_not_fatal() -> None:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    assert encoded(loop) == {"name": "loop", "self": None}
    deep: Any = "bottom"
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        deep = [deep]
    result = encoded(deep)
    depth = 0
    while isinstance(result, list):
        result = result[0]
        depth += 1
    assert result is None and depth == events.MAX_DEPTH - 1  # the {"v": ...} wrapper is one


def test_lone_surrogates_still_give_valid_json() -> None:
    data = events.encode({"v": "bad \udcff end"})
    assert json.loads(data)["v"] == "bad \udcff end"
    data.decode("ascii")  # escaped, so plain ASCII


def test_body_is_compact_utf8() -> None:
    assert events.encode({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


def test_format_timestamp_is_iso8601_utc_with_millis() -> None:
    t = dt.datetime(2026, 11, 23, 5, 46, 45, 123456, tzinfo=dt.timezone.utc).timestamp()
    assert events.format_timestamp(t) == "2026-11-23T05:46:45.123Z"
    assert events.format_timestamp(t + 1) == "2026-11-23T05:46:46.123Z"
    assert events.format_timestamp(0.9999) == "1970-01-01T00:00:00.999Z"


def test_message_ids_are_unique_hex() -> None:
    ids = {events.new_message_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# ---------------------------------------------------------------- validation at the call site


@pytest.fixture
def client() -> uptake.Client:
    return uptake.Client(send=False)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((None, "Signed Up"), {}, "user_id or an anonymous_id"),
        (("", "Signed Up"), {}, "user_id must not be empty"),
        ((None, "Signed Up"), {"anonymous_id": ""}, "anonymous_id must not be empty"),
        ((1.5, "Signed Up"), {}, "user_id must be a string or an int"),
        ((True, "Signed Up"), {}, "user_id must be a string or an int"),
        (("u1", ""), {}, "event name must not be empty"),
        (("u1", None), {}, "event name must be a string"),
        (("u1", 42), {}, "event name must be a string"),
        (("u1", "E", ["not", "a", "mapping"]), {}, "properties must be a mapping"),
        (("u1", "E", "x=1"), {}, "properties must be a mapping"),
        (("u1", "E"), {"timestamp": "2026-01-01"}, "timestamp must be a datetime"),
        (("u1", "E"), {"timestamp": 1700000000}, "timestamp must be a datetime"),
        (("u1", "E"), {"context": [1]}, "context must be a mapping"),
        (("u1", "E"), {"account_id": ""}, "account_id must not be empty"),
    ],
)
def test_programming_mistakes_raise_invalid_event_error(
    client: uptake.Client, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(uptake.InvalidEventError, match=message):
        client.track(*args, **kwargs)


def test_invalid_event_error_is_a_value_error(client: uptake.Client) -> None:
    with pytest.raises(ValueError):
        client.track(None, "E")


def test_other_calls_validate_too(client: uptake.Client) -> None:
    with pytest.raises(uptake.InvalidEventError, match="traits must be a mapping"):
        client.identify("u1", ["plan"])  # type: ignore[arg-type]
    with pytest.raises(uptake.InvalidEventError, match="account_id"):
        client.group("u1", "")
    with pytest.raises(uptake.InvalidEventError, match="feature must not be empty"):
        client.feature_used("u1", "")
    with pytest.raises(uptake.InvalidEventError, match="user_id or an anonymous_id"):
        client.session_start(None)


def test_int_user_ids_and_anonymous_ids_are_accepted(client: uptake.Client) -> None:
    with capture_events(client) as captured:
        client.track(42, "E")
        client.track(None, "E", anonymous_id="anon-1")
    track = [e for e in captured if e["event"] == "E"]
    assert track[0]["userId"] == "42"
    assert track[1]["anonymousId"] == "anon-1" and "userId" not in track[1]


def test_track_never_mutates_the_callers_objects(client: uptake.Client) -> None:
    props = {"rows": 10, "nested": {"when": dt.date(2026, 1, 1)}, "nan": float("nan")}
    context = {"ip": "203.0.113.9"}
    snapshot = repr(props), repr(context)
    client_with_hook = uptake.Client(
        send=False, before_send=lambda e: {**e, "properties": {"redacted": True}}
    )
    for c in (client, client_with_hook):
        c.track("u1", "E", props, context=context, account_id="acme")
        c.feature_used("u1", "reports", props)
        c.identify("u1", props, context=context)
    assert (repr(props), repr(context)) == snapshot


def test_later_mutation_does_not_change_what_is_sent(client: uptake.Client) -> None:
    props: dict[str, Any] = {"items": [1, 2]}
    with capture_events(client) as captured:
        client.track("u1", "E", props)
        props["items"].append(3)
        props["new"] = True
    assert captured[-1]["properties"] == {"items": [1, 2]}


def test_naive_timestamp_is_utc_and_is_sent(client: uptake.Client) -> None:
    with capture_events(client) as captured:
        client.track("u1", "E", timestamp=dt.datetime(2026, 3, 1, 12, 0, 0, 250000))
    assert captured[-1]["timestamp"] == "2026-03-01T12:00:00.250Z"


@pytest.mark.parametrize(
    ("user_id", "anonymous_id", "properties", "account_id", "session_id"),
    [
        ("u1", None, {"rows": 10, "plan": "pro"}, "acme", "abc123"),
        (None, "anon-1", None, None, None),
        ('ü"ser\n', "a", {"nested": {"when": dt.date(2026, 1, 2)}, "é": [1, 2.5]}, 'ac"me', "x"),
        ("u1", None, MappingProxyType({"k": Color.RED}), None, "s"),
    ],
)
def test_fast_track_encoding_matches_the_general_encoder(
    user_id: str | None,
    anonymous_id: str | None,
    properties: dict[str, Any] | None,
    account_id: str | None,
    session_id: str | None,
) -> None:
    fast = events.encode_track(
        "m1",
        "2026-01-01T00:00:00.000Z",
        user_id,
        anonymous_id,
        'Ev"ent',
        properties,
        account_id,
        session_id,
    )
    message: dict[str, Any] = {
        "type": "track",
        "messageId": "m1",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "event": 'Ev"ent',
        "properties": properties or {},
        "context": {"library": events.LIBRARY},
    }
    if user_id is not None:
        message["userId"] = user_id
    if anonymous_id is not None:
        message["anonymousId"] = anonymous_id
    if account_id is not None:
        message["context"]["groupId"] = account_id
    if session_id is not None:
        message["context"]["sessionId"] = session_id
    assert fast is not None
    assert json.loads(fast) == json.loads(events.encode(message))


@pytest.mark.parametrize(
    "properties", [{"x": float("nan")}, {"bad \udcff": 1}, {(1, 2): "tuple key"}]
)
def test_fast_track_encoding_hands_hard_cases_to_the_careful_path(
    client: uptake.Client, properties: dict[Any, Any]
) -> None:
    assert events.encode_track("m", "t", "u", None, "E", properties, None, None) is None
    client.track("u1", "E", properties)  # still accepted, through the general encoder
    assert client.stats.dropped_by_reason == {"send_disabled": 2}


def test_values_whose_own_conversion_fails_still_encode(client: uptake.Client) -> None:
    too_early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert encoded(too_early) == str(too_early)  # cannot be shifted to UTC: its str()
    client.track("u1", "E", {"when": too_early})  # never raises into the host
    assert client.stats.dropped_by_reason == {"send_disabled": 2}


def test_extreme_timestamps_are_sent_as_valid_iso8601(client: uptake.Client) -> None:
    too_early = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with capture_events(client) as captured:
        client.track("u1", "E", timestamp=too_early)
    assert captured[-1]["timestamp"] == "0000-12-31T23:00:00.000Z"


def test_early_years_are_zero_padded() -> None:
    t = dt.datetime(5, 6, 7, 8, 9, 10, tzinfo=dt.timezone.utc).timestamp()
    assert events.format_timestamp(t) == "0005-06-07T08:09:10.000Z"


def test_encode_message_gives_what_encode_gives() -> None:
    import json

    from uptake._before_send import encode_message
    from uptake.events import LIBRARY, encode

    base = {
        "type": "track",
        "messageId": "m1",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "event": 'Go \u2028 "quoted"',
        "properties": {"n": 1, "when": dt.date(2026, 1, 1)},
        "userId": "u1",
        "context": {"library": dict(LIBRARY), "groupId": "acme", "sessionId": "s1"},
    }
    variants = [
        base,
        {**base, "properties": None},
        {**base, "anonymousId": "a1", "userId": None},
        {**base, "context": {**base["context"], "ip": "1.2.3.4"}},  # not plain: slow path
        {**base, "extra": True},
        {**base, "userId": 42},
    ]
    for message in variants:
        assert json.loads(encode_message(message)) == json.loads(encode(message)), message
