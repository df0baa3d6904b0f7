"""Calendar days and ISO weeks in a time zone, and compact sets of recent days.

A day is an integer: days since 1970-01-01 in the configured zone. A *day mask* packs the
set of days a subject did something on, over a fixed number of days back from the latest,
into one int: ``latest_day << width | bits``, where bit ``k`` means "on day latest - k".
One small int per feature or per member costs far less memory than a list of days.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone, tzinfo

__all__ = ["Calendar", "count_days", "days_in", "mark_day", "week_of"]

_DAY = 86_400.0
_EPOCH = date(1970, 1, 1)


class Calendar:
    """Turns event times into calendar day numbers in one time zone."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        # UTC (or None) skips the per-event offset lookup.
        self.tz = None if tz is None or tz is timezone.utc else tz

    def day_of(self, t: float) -> int:
        """The calendar day number of event time ``t``."""
        if self.tz is None:
            return math.floor(t / _DAY)
        offset = self.tz.utcoffset(datetime.fromtimestamp(t, self.tz))
        return math.floor((t + (offset.total_seconds() if offset else 0.0)) / _DAY)

    def start_of(self, day: int) -> float:
        """The event time at which calendar day ``day`` begins (local midnight)."""
        if self.tz is None:
            return day * _DAY
        midnight = datetime.combine(_EPOCH + timedelta(days=day), time(0), self.tz)
        return midnight.timestamp()

    def next_week(self, t: float) -> float:
        """When the ISO week after the one ``t`` falls in begins (Monday, local midnight)."""
        day = self.day_of(t)
        return self.start_of(day + 7 - (day + 3) % 7)


def week_of(day: int) -> int:
    """The ISO week (Monday to Sunday) a day falls in, numbered from 1969-12-29."""
    return (day + 3) // 7  # day 0, 1970-01-01, was a Thursday


def mark_day(packed: int, day: int, width: int) -> int:
    """Add ``day`` to a day mask covering ``width`` days; too old a day changes nothing."""
    if packed == 0:
        return day << width | 1
    top = packed >> width
    bits = packed & ((1 << width) - 1)
    if day > top:
        bits = (bits << (day - top) | 1) & ((1 << width) - 1)
        return day << width | bits
    if top - day >= width:
        return packed
    return top << width | bits | 1 << (top - day)


def count_days(packed: int, first: int, last: int, width: int) -> int:
    """How many days from ``first`` to ``last`` (inclusive) a day mask holds."""
    if packed == 0 or last < first:
        return 0
    top = packed >> width
    bits = packed & ((1 << width) - 1)
    # Bit k is day top - k: days first..last are bits top - last .. top - first.
    low, high = max(top - last, 0), min(top - first, width - 1)
    if high < low:
        return 0
    return ((bits >> low) & ((1 << (high - low + 1)) - 1)).bit_count()


def days_in(packed: int, width: int) -> list[int]:
    """Every day a day mask holds, oldest first."""
    if packed == 0:
        return []
    top = packed >> width
    bits = packed & ((1 << width) - 1)
    return [top - k for k in range(width - 1, -1, -1) if bits >> k & 1]
