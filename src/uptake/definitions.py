"""Definitions shared by the SDK and the report: one meaning for each concept.

The client, the rules and the collector's report all read these, so a rule about what an
event means is written once:

- **Activity**: a ``track`` event, or a Segment ``page`` / ``screen`` call (a user viewing
  something is a user in the product). For the rules, a page call is named
  :data:`PAGE_EVENT` and a screen call :data:`SCREEN_EVENT`, so a milestone or a nudge can
  name them and a host can mark them inactive like any other event. uptake's own events
  (:data:`OWN_EVENTS`) are never activity.
- **Event time** of a wire-format event: :func:`parse_time`.
- **Score composition**: :func:`compose_score`, the weighted mean of the components
  present, the same for the SDK's snapshot and the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "ACTIVITY_TYPES",
    "DECLINING_EVENT",
    "MILESTONE_EVENT",
    "OWN_EVENTS",
    "PAGE_EVENT",
    "SCREEN_EVENT",
    "TIER_EVENT",
    "TrackEvent",
    "activity_name",
    "compose_score",
    "parse_time",
    "parse_track",
    "writable",
]

#: The event a reached milestone is recorded as.
MILESTONE_EVENT = "Milestone Reached"

#: The events an engagement signal is recorded as (a tier change; a decline starting or
#: ending).
TIER_EVENT = "Engagement Tier Changed"
DECLINING_EVENT = "Engagement Declining"

#: uptake's own events: never activity, whatever the host says.
OWN_EVENTS = frozenset(
    {
        "Session Started",
        "Session Ended",
        MILESTONE_EVENT,
        TIER_EVENT,
        DECLINING_EVENT,
        "Nudge Fired",
        "Nudge Shown",
        "Nudge Clicked",
        "Nudge Dismissed",
        "Nudge Snoozed",
        "Nudge Held Out",
        "Nudge Suppressed",
    }
)

#: What a Segment ``page`` call and ``screen`` call are named as activity.
PAGE_EVENT = "Page Viewed"
SCREEN_EVENT = "Screen Viewed"

#: Message types that record something a user did.
ACTIVITY_TYPES = frozenset({"track", "page", "screen"})


def activity_name(kind: object, event: object) -> str | None:
    """The event name a message counts under as activity, or None if it is not activity.

    A track event counts under its ``event``; a page or screen call under
    :data:`PAGE_EVENT` or :data:`SCREEN_EVENT`; identify, group, alias and anything
    else are not activity. Whether the name is then active (not one of uptake's own
    events, not marked inactive by the host) is the caller's second test.
    """
    if kind == "track":
        return event if isinstance(event, str) and event else None
    if kind == "page":
        return PAGE_EVENT
    if kind == "screen":
        return SCREEN_EVENT
    return None


def compose_score(components: Mapping[str, float], weights: Mapping[str, float]) -> int:
    """Combine engagement components into a score from 0 to 100.

    The score is the weighted mean of the components present (each clipped to [0, 1]),
    over the weights of those components only, rounded to an integer. A component with
    no weight counts for nothing; when no present component has a weight above 0 (say,
    only ``user_breadth`` is weighted and the account's seats are unknown) the score is
    0. Total over every valid weight set: it never divides by zero.
    """
    total = 0.0
    weighted = 0.0
    for name, value in components.items():
        weight = weights.get(name, 0.0)
        if weight > 0:
            total += weight
            weighted += weight * min(1.0, max(0.0, value))
    return round(weighted / total * 100) if total > 0 else 0


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

    Usable: activity (a ``track`` event with a non-empty ``event``, or a ``page`` or
    ``screen`` call, named as :func:`activity_name` says; ``type`` absent means track), a
    user or anonymous id, and a ``timestamp`` :func:`parse_time` reads. The account is
    ``groupId`` or ``context.groupId``.
    """
    if not isinstance(raw, Mapping):
        return None
    name = activity_name(raw.get("type", "track"), raw.get("event"))
    uid, anon = raw.get("userId"), raw.get("anonymousId")
    stamp = raw.get("timestamp")
    if name is None or stamp is None:
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


_SURROGATE = re.compile("[\ud800-\udfff]")


def writable(value: str) -> str:
    """A string that can be written out as UTF-8: each lone surrogate becomes one U+FFFD.

    Event data may carry lone surrogates (JSON allows the escape); the collector stores
    names this way and the report prints them this way, so a name reads the same in both.
    """
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
