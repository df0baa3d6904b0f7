"""The mapping of a table of Segment-shaped events in ClickHouse to the engine's typed table.

:func:`typed_select` is ClickHouse SQL that reads the events table the way the Python
readers read events (:mod:`uptake.collector.sources`, :mod:`.table`): an event's time by
Segment's rule, the user id else the anonymous id, the account from ``groupId`` else
``context.groupId``, and the few properties and traits the report reads, typed as Python
types them. The table is one row per event, with a column per field
(:data:`DEFAULT_COLUMNS`, each mappable to another name), or one column holding each
event's whole JSON (``json=COLUMN``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import attrs

from ...definitions import PAGE_EVENT, SCREEN_EVENT
from ...errors import ConfigurationError
from ..sources import _AHEAD, _EARLIEST, _WITH_DATA, NO_TIME, NO_TYPE, NO_USER, OUT_OF_RANGE
from .remote import literal
from .table import COLUMNS

__all__ = [
    "DEFAULT_COLUMNS",
    "JSON_KEYS",
    "PASSWORD_ENV",
    "REASONS",
    "ROLES",
    "ClickHouseError",
    "ClickHouseLocation",
    "quote",
    "resolve",
    "typed_select",
]

PASSWORD_ENV = "UPTAKE_CLICKHOUSE_PASSWORD"

#: What each column of the events table gives, in the wide layout: the column names
#: looked for, first found wins (snake case as RudderStack and Jitsu land them, then
#: Segment's own camel case).
DEFAULT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "type": ("type",),
    "event": ("event",),
    "user_id": ("user_id", "userId"),
    "anonymous_id": ("anonymous_id", "anonymousId"),
    "group_id": ("group_id", "groupId"),
    "timestamp": ("timestamp",),
    "original_timestamp": ("original_timestamp", "originalTimestamp"),
    "sent_at": ("sent_at", "sentAt"),
    "received_at": ("received_at", "receivedAt"),
    "properties": ("properties",),
    "traits": ("traits",),
    "context": ("context",),
}
ROLES = tuple(DEFAULT_COLUMNS)
#: The key of each role in an event's JSON (the ``json=COLUMN`` layout).
JSON_KEYS: Mapping[str, str] = {
    "type": "type",
    "event": "event",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "group_id": "groupId",
    "timestamp": "timestamp",
    "original_timestamp": "originalTimestamp",
    "sent_at": "sentAt",
    "received_at": "receivedAt",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
}
_TIMES = ("timestamp", "original_timestamp", "sent_at", "received_at")
_OBJECTS = ("properties", "traits", "context")
#: Roles without which no event can be used: the type, a user, a time.
_NEEDED = (("type",), ("user_id", "anonymous_id"), _TIMES)
#: Skip reasons by the code :func:`typed_select` gives them.
REASONS = {1: NO_TIME, 2: OUT_OF_RANGE, 3: NO_USER, 4: NO_TYPE}


class ClickHouseError(ConfigurationError):
    """The ClickHouse source cannot be used: a bad URL, an unreachable server, refused
    credentials, or a missing table or column. The message is one line, without the
    password."""


@attrs.frozen(repr=False)
class ClickHouseLocation:
    """Where the events table is, and how its columns map to an event's fields.

    Attributes:
        host: Server host name.
        port: HTTP(S) port (8123, or 8443 with TLS, by default).
        secure: Whether to speak HTTPS (``clickhouses://``).
        user: User name ("default" by default).
        password: The password (from the URL, else :data:`PASSWORD_ENV`); never shown.
        database: The table's database ("default" by default).
        table: The events table ("events" by default).
        columns: Role to column name, for the columns named differently from
            :data:`DEFAULT_COLUMNS`.
        json: The column holding each event's whole JSON, if the table is laid out so.
    """

    host: str
    port: int
    secure: bool = False
    user: str = "default"
    password: str = attrs.field(default="", eq=False)
    database: str = "default"
    table: str = "events"
    columns: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    json: str | None = None

    def __repr__(self) -> str:
        return f"ClickHouseLocation({self.redacted()!r})"

    def redacted(self) -> str:
        """The location as a URL without the password."""
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}?table={self.table}"

    def qualified(self) -> str:
        """The table's name as SQL (``db``.``table``)."""
        return f"{quote(self.database)}.{quote(self.table)}"


def quote(name: str) -> str:
    """An identifier as ClickHouse SQL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# ---------------------------------------------------------------- the mapping, as SQL

#: A lone UTF-16 surrogate escape (``\ud800`` with no pair) reads as U+FFFD, as the
#: Python readers make it; ClickHouse's JSON parser would refuse the whole object. An
#: escaped backslash is matched first, so ``\\ud800`` (text) is left alone.
_TOKENS = (
    r"(\\\\)|(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
)
_MARKED = "\\1\x01\\2\x02\\3"
_LONE = "\x01\x02" + r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
_SURROGATE = r"\\u[dD][89a-fA-F]"


def _fixed(json: str) -> str:
    """JSON text with each lone surrogate escape made ``\\uFFFD``."""
    marked = f"replaceRegexpAll({json}, {literal(_TOKENS)}, {literal(_MARKED)})"
    lone = f"replaceRegexpAll({marked}, {literal(_LONE)}, {literal(chr(92) * 2 + 'uFFFD')})"
    clean = f"replaceRegexpAll({lone}, {literal('[' + chr(1) + chr(2) + ']')}, '')"
    return f"if(match({json}, {literal(_SURROGATE)}), {clean}, {json})"


def _member(pairs: str, key: str) -> str:
    """The raw JSON of ``key`` in an object's key-value pairs; the last one when the key
    repeats (as Python's and JavaScript's JSON readers take it); '' when absent."""
    return f"arrayLast(p -> p.1 = {literal(key)}, {pairs}).2"


def _text(raw: str) -> str:
    return f"if(JSONType({raw}) = 'String', nullIf(JSONExtractString({raw}), ''), NULL)"


def _number(raw: str) -> str:
    return f"if(JSONType({raw}) IN ('Int64', 'UInt64', 'Double'), JSONExtractFloat({raw}), NULL)"


def _seconds_of_text(text: str) -> str:
    return f"toUnixTimestamp64Micro(parseDateTime64BestEffortOrNull({text}, 6, 'UTC')) / 1e6"


def _epoch(number: str) -> str:
    """Epoch seconds, or milliseconds past 1e11 (as :func:`uptake.definitions.parse_time`)."""
    return f"if({number} > 1e11, {number} / 1000, {number})"


def _column(name: str, kind: str, role: str) -> str:
    """A column of the wide layout as the value of its role."""
    col = quote(name)
    base = kind.replace("LowCardinality(", "").replace("Nullable(", "")
    if role in _TIMES:
        if base.startswith(("String", "FixedString")):
            return _seconds_of_text(col)
        if base.startswith("DateTime"):
            return f"toUnixTimestamp64Micro(toDateTime64({col}, 6)) / 1e6"
        if base.startswith(("Int", "UInt", "Float", "Decimal")):
            return _epoch(f"toFloat64({col})")
        raise ClickHouseError(f"column {name} ({kind}) cannot be read as the event's {role}")
    if role in _OBJECTS:
        text = col if base.startswith("String") else f"toJSONString({col})"
        return f"ifNull({_fixed(text)}, '')"
    return f"CAST({col}, 'Nullable(String)')"


def _json_role(pairs: str, role: str) -> str:
    """A field of the JSON layout as the value of its role."""
    raw = _member(pairs, JSON_KEYS[role])
    if role in _TIMES:
        return (
            f"multiIf(JSONType({raw}) = 'String', {_seconds_of_text(f'JSONExtractString({raw})')}"
            f", JSONType({raw}) IN ('Int64', 'UInt64', 'Double'), "
            f"{_epoch(f'JSONExtractFloat({raw})')}, NULL)"
        )
    if role in _OBJECTS:
        return raw
    return f"if(JSONType({raw}) = 'String', JSONExtractString({raw}), NULL)"


def _trait(*doc: str) -> str:
    """A trait's value as a segment name, as :func:`uptake.collector.figures.trait_of`
    gives it: true/false, a whole number, a fraction as Python writes it (``2.0``), a
    non-empty string. ``doc`` is JSON text and the key, or the value's raw JSON.

    (The raw JSON of a repeated key is ClickHouse's rewriting, which writes ``2.0`` as
    ``2``: only a repeated trait key may lose the ``.0``.)
    """
    at = ", ".join(doc)
    kind, number = f"JSONType({at})", f"JSONExtractFloat({at})"
    return (
        f"multiIf({kind} = 'Bool', if(JSONExtractBool({at}), 'true', 'false'), "
        f"{kind} = 'Int64', toString(JSONExtractInt({at})), {kind} = 'UInt64', "
        f"toString(JSONExtractUInt({at})), {kind} = 'Double', if({number} = trunc({number}) "
        f"AND abs({number}) < 1e16, concat(toString(toInt64({number})), '.0'), "
        f"toString({number})), {kind} = 'String', nullIf(JSONExtractString({at}), ''), NULL)"
    )


def resolve(location: ClickHouseLocation, described: Mapping[str, str]) -> dict[str, str]:
    """Each role's SQL over the events table, given its columns (name to type).

    Raises:
        ClickHouseError: a mapped column is missing, or the table lacks the type, a user
            or a time.
    """
    table = f"{location.database}.{location.table}"
    if location.json is not None:
        if location.json not in described:
            raise ClickHouseError(f"{table} has no column {location.json} (json=)")
        return {role: _json_role("doc", role) for role in ROLES}
    out: dict[str, str] = {}
    for role in ROLES:
        mapped = location.columns.get(role)
        if mapped is not None and mapped not in described:
            raise ClickHouseError(f"{table} has no column {mapped} (mapped as {role})")
        names = (mapped,) if mapped else DEFAULT_COLUMNS[role]
        found = next((n for n in names if n in described), None)
        if found is not None:
            out[role] = _column(found, described[found], role)
    for roles in _NEEDED:
        if not any(r in out for r in roles):
            looked = ", ".join(n for r in roles for n in DEFAULT_COLUMNS[r])
            raise ClickHouseError(
                f"{table} has no column for the event's {' or '.join(roles)} (looked for "
                f"{looked}); name it with ?{roles[0]}=COLUMN"
            )
    return out


def typed_select(
    location: ClickHouseLocation,
    described: Mapping[str, str],
    *,
    seats_trait: str,
    segment_by: str | None,
    day: str,
    now: float | None = None,
) -> tuple[str, str]:
    """ClickHouse SQL of the events table as the engine's typed table, and of the count
    of events skipped, by reason code.

    The typed columns follow the Python readers' rules (:mod:`.engine.table`): an
    event's time by Segment's rule, the user id else the anonymous id, the account from
    ``groupId`` else ``context.groupId``, and the few properties and traits the report
    reads, typed as Python types them. ``day`` is the SQL of an event's day from ``t``.
    """
    roles = resolve(location, described)
    null = {r: "CAST(NULL, 'Nullable(Float64)')" if r in _TIMES else "NULL" for r in ROLES}
    objects = {r: "''" for r in _OBJECTS}
    values = {**null, **objects, **roles}
    source = location.qualified()
    if location.json is not None:
        body = f"ifNull({_fixed(quote(location.json))}, '')"
        source = (
            f"(SELECT body, JSONExtractKeysAndValuesRaw(body) AS doc FROM (SELECT {body} "
            f"AS body FROM {source}) b) j"
        )
    first = ", ".join(f"{values[r]} AS k_{r}" for r in ROLES)
    # Where the traits are in the event's own text (for a trait's JSON type; the raw JSON
    # of a value is ClickHouse's rewriting of it, which writes 2.0 as 2), and whether a
    # repeated key makes that text's first value the wrong one.
    traits_at: tuple[str, ...] = ("k_traits",)
    repeated = ""
    if location.json is not None:
        first += ", body AS k_body, countEqual(arrayMap(p -> p.1, doc), 'traits') > 1 AS k_twice"
        traits_at, repeated = ("k_body", "'traits'"), "k_twice OR "
    now = time.time() if now is None else now
    with_data = ", ".join(literal(e) for e in _WITH_DATA)
    context = "JSONExtractKeysAndValuesRaw(k_context)"
    t = (
        "multiIf(k_timestamp IS NOT NULL, k_timestamp, k_original_timestamp IS NULL, "
        "k_received_at, k_received_at IS NULL OR k_sent_at IS NULL, k_original_timestamp, "
        "k_original_timestamp + (k_received_at - k_sent_at))"
    )
    read = (
        "SELECT rowNumberInAllBlocks() AS seq, "
        f"{t} AS t, coalesce(nullIf(k_user_id, ''), nullIf(k_anonymous_id, '')) AS user, "
        f"coalesce(nullIf(k_group_id, ''), {_text(_member(context, 'groupId'))}) AS account, "
        "k_type AS kind, k_event AS event, multiIf(kind = 'track' "
        f"AND event IN ({with_data}), k_properties, kind IN ('identify', 'group'), k_traits, "
        "'') AS data, JSONExtractKeysAndValuesRaw(data) AS kv, "
        "multiIf(NOT isFinite(ifNull(t, nan)), 1, NOT (t >= "
        f"{_EARLIEST!r} AND t <= {now + _AHEAD!r}), 2, user IS NULL, 3, kind IS NULL, 4, 0) "
        f"AS reason, * FROM (SELECT {first} FROM {source}) l0"
    )

    def v(key: str) -> str:
        return _member("kv", key)

    within, took, duration, seats = (
        _number(v("goal_within_s")),
        _number(v("time_to_reach_s")),
        _number(v("duration_s")),
        _number(v(seats_trait)),
    )
    nudge = f"if(startsWith(name, 'Nudge '), {_text(v('nudge'))}, NULL)"
    global_share = _number(v("global_holdout"))  # a held-out event of the global holdout
    decision = (
        f"nudge_kind IN ('fired', 'held out') AND {_text(v('goal'))} IS NOT NULL AND {within} > 0"
    )
    trait = "CAST(NULL, 'Nullable(String)')"
    if segment_by is not None:
        trait = (
            f"if(kind IN ('identify', 'group'), if({repeated}countEqual(arrayMap(p -> p.1, kv), "
            f"{literal(segment_by)}) > 1, {_trait(v(segment_by))}, "
            f"{_trait(*traits_at, literal(segment_by))}), NULL)"
        )
    columns = {
        "seq": "seq",
        "t": "t",
        "user": "user",
        "account": "account",
        "kind": "kind",
        "name": "name",
        "feature": f"if(name = 'Feature Used', {_text(v('feature'))}, NULL)",
        "milestone": f"if(name = 'Milestone Reached', {_text(v('milestone'))}, NULL)",
        "scope": f"if(name = 'Milestone Reached', if({_text(v('scope'))} = 'account', "
        "'account', 'user'), NULL)",
        "took": f"if(name = 'Milestone Reached', multiIf(JSONType({v('time_to_reach_s')}) = "
        f"'Bool' AND NOT JSONExtractBool({v('time_to_reach_s')}), 0., {took} = 0, 0., "
        f"{took} > 0, {took}, NULL), NULL)",
        "nudge": "nudge",
        "nudge_kind": "nudge_kind",
        "goal": f"if({decision}, {_text(v('goal'))}, NULL)",
        "goal_within": f"if({decision}, {within}, NULL)",
        "seats": f"if(kind = 'group' AND {seats} >= 1, trunc({seats}), NULL)",
        "duration": f"if(name = 'Session Ended' AND {duration} >= 0, "
        f"if({duration} = 0, 0., {duration}), NULL)",
        "trait": trait,
    }
    name = (
        "multiIf(kind = 'track' AND event != '', event, kind = 'page', "
        f"{literal(PAGE_EVENT)}, kind = 'screen', {literal(SCREEN_EVENT)}, NULL)"
    )
    typed = ", ".join(f"{expr} AS {col}" for col, expr in columns.items())
    listed = ", ".join(n for n, _ in COLUMNS)
    assert [*columns, "day", "week"] == [n for n, _ in COLUMNS]
    select = (
        f"SELECT {listed} FROM (SELECT *, toInt64(floor((day + 3) / 7)) AS week FROM "
        f"(SELECT *, {day} AS day FROM (SELECT {typed} FROM (SELECT *, {name} AS name, "
        f"{nudge} AS nudge, if(nudge IS NOT NULL, if(name = 'Nudge Held Out' AND "
        f"ifNull({global_share} > 0, false), 'global holdout', lowerUTF8(substring(name, 7))), "
        f"NULL) AS nudge_kind FROM ({read}) r WHERE reason = 0) n) d) w) x"
    )
    skipped = f"SELECT reason, count() FROM ({read}) r WHERE reason > 0 GROUP BY reason"
    return select, skipped
