"""Definitions shared by the SDK and the report: one meaning for each concept.

The client, the rules and the collector's report all read these, so a rule about what an
event means is written once. Today this holds uptake's own event names and the timestamp
parser used for events read back from the wire format (``replay``, the report's sources,
the collector's ingestion).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["MILESTONE_EVENT", "OWN_EVENTS", "TrackEvent", "parse_time", "parse_track"]

#: The event a reached milestone is recorded as.
MILESTONE_EVENT = "Milestone Reached"

#: uptake's own events: never activity, whatever the host says.
OWN_EVENTS = frozenset(
    {
        "Session Started",
        "Session Ended",
        MILESTONE_EVENT,
        "Nudge Fired",
        "Nudge Shown",
        "Nudge Clicked",
        "Nudge Dismissed",
        "Nudge Snoozed",
        "Nudge Held Out",
        "Nudge Suppressed",
    }
)

_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def parse_time(value: object) -> float | None:
    """Read an event time as epoch seconds; None when it is not one.

    Accepts ISO 8601 text (any fraction length, ``Z`` or ``+HH[:]MM``, no offset meaning
    UTC), epoch seconds or milliseconds (a number above 1e11 is taken as milliseconds), and
    datetimes (naive meaning UTC). Booleans, other types and malformed text give None.
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return aware.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        return seconds / 1000 if seconds > 1e11 else seconds
    if not isinstance(value, str):
        return None
    match = _ISO_TIME.match(value.strip())
    if match is None:
        return None
    day, clock, fraction, _zulu, sign, hours, minutes = match.groups()
    text = f"{day}T{clock}" + (f".{fraction[:6]:0<6}" if fraction else "")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = 0.0
    if sign:
        offset = (int(hours) * 3600 + int(minutes) * 60) * (1 if sign == "+" else -1)
    return when.replace(tzinfo=timezone.utc).timestamp() - offset


#: A past track event read from the wire format: (user id, anonymous id, account, event
#: name, properties, event time).
TrackEvent = tuple["str | None", "str | None", "str | None", str, "Mapping[str, Any] | None", float]


def parse_track(raw: object) -> TrackEvent | None:
    """Read a past track event in the wire format; None if it is not a usable one.

    Usable: ``type`` track (or absent), a non-empty ``event``, a user or anonymous id, and
    a ``timestamp`` :func:`parse_time` reads. The account is ``groupId`` or
    ``context.groupId``.
    """
    if not isinstance(raw, Mapping) or raw.get("type", "track") != "track":
        return None
    name = raw.get("event")
    uid, anon = raw.get("userId"), raw.get("anonymousId")
    stamp = raw.get("timestamp")
    if not isinstance(name, str) or not name or stamp is None:
        return None
    if not (isinstance(uid, str) and uid) and not (isinstance(anon, str) and anon):
        return None
    when = parse_time(stamp)
    if when is None:
        return None
    context = raw.get("context")
    account = raw.get("groupId") or (
        context.get("groupId") if isinstance(context, Mapping) else None
    )
    props = raw.get("properties")
    return (
        uid if isinstance(uid, str) and uid else None,
        anon if isinstance(anon, str) and anon else None,
        account if isinstance(account, str) and account else None,
        name,
        props if isinstance(props, Mapping) else None,
        when,
    )
