"""Definitions shared by the SDK and the report: one meaning for each concept.

The client, the rules and the collector's report all read these, so a rule about what an
event means is written once. Today this holds uptake's own event names and the timestamp
parser used for events read back from the wire format (``replay``, the report's sources,
the collector's ingestion).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

__all__ = ["MILESTONE_EVENT", "OWN_EVENTS", "parse_time"]

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
