"""The state the rules keep about one subject (a user or an account).

Only what the configured rules need: the earliest times of the events they reference (as
many as the largest count needs), the first time each feature was used, the active days
inside the longest windows, and which milestones were reached (and when); for engagement,
the recent days each feature was used on, and for accounts the recent days each member was
active on, touchpoint days and seats. Never the event history.

Shared by the rules (which change it) and the stores (which keep it): the stores import
this module and never the rules, so the two packages do not import each other.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

#: Milestones reached are kept in the ``events`` dict under ``REACHED + name``: one dict
#: less per subject (an empty dict alone costs more than a hundred bytes). No event is
#: named with a NUL.
REACHED = "\x00reached:"
#: The key of a user's traits in their ``nudges`` dict.
TRAITS = "\x00traits"
#: A bit of ``SubjectState.signalled``: the score may have changed outside an event (seats
#: from a group call, a merge), so the next event computes it even if it changes nothing.
SIGNAL_STALE = 8


def reached_key(milestone: str) -> str:
    """The ``events`` key recording when ``milestone`` was reached (one shared string)."""
    return sys.intern(REACHED + milestone)


#: Bits of a packed feature value holding its day mask (see rules.calendar); the first use,
#: in milliseconds, sits above them.
FEATURE_DAYS_BITS = 96


def pack_feature(first_use: float, days: int) -> int:
    """One int for a feature: its first use (event time) and the days it was used on."""
    return round(first_use * 1000) << FEATURE_DAYS_BITS | days


def feature_first_use(packed: int) -> float:
    """The first use (event time) of a packed feature value."""
    return (packed >> FEATURE_DAYS_BITS) / 1000


def feature_days(packed: int) -> int:
    """The day mask of a packed feature value."""
    return packed & ((1 << FEATURE_DAYS_BITS) - 1)


class SubjectState:
    """Mutable state of one subject; owned by a store, changed only by the rules."""

    # Every slot costs 8 bytes for every user: what only accounts need shares one slot,
    # and traits live in the nudges dict (only audiences read them).
    __slots__ = (
        "_account",
        "days",
        "due",
        "events",
        "features",
        "first",
        "last",
        "nudges",
        "signalled",
    )

    def __init__(self) -> None:
        self.first: float | None = None  # first active event (event time)
        self.last: float | None = None  # latest active event
        # event -> earliest time (a float when only the first is needed) or earliest times;
        # reached_key(milestone) -> when it was reached
        self.events: dict[str, float | list[float]] | None = None
        # feature -> first use and recent days of use, packed (see pack_feature)
        self.features: dict[str, int] | None = None
        self.days: array[int] | None = None  # sorted distinct active days (compact ints)
        # Accounts, for engagement: [member -> days active on (a packed day mask, see
        # rules.calendar), touchpoint days (a day mask), seats bought (a group trait)].
        self._account: list[Any] | None = None
        # Nudges: when time alone may change a decision (so every nudge is looked at again);
        # per-nudge records, event counts, pending nudges and traits (see rules.nudges).
        self.due = 0.0
        self.nudges: dict[str, Any] | None = None
        # Engagement signals: the tier and declining flag last signalled, as one small
        # int (see rules.engagement_signals; 0: none yet). A small int costs its slot only.
        self.signalled = 0

    def _facts(self) -> list[Any]:
        if self._account is None:
            self._account = [None, 0, None]
        return self._account

    @property
    def members(self) -> dict[str, int] | None:
        """Account: member -> the days they were active on (a day mask)."""
        return None if self._account is None else self._account[0]

    @members.setter
    def members(self, value: dict[str, int] | None) -> None:
        self._facts()[0] = value

    @property
    def touch(self) -> int:
        """Account: the days with a customer-success touchpoint (a day mask)."""
        return 0 if self._account is None else int(self._account[1])

    @touch.setter
    def touch(self, value: int) -> None:
        self._facts()[1] = value

    @property
    def seats(self) -> int | None:
        """Account: the seats bought (a group trait)."""
        return None if self._account is None else self._account[2]

    @seats.setter
    def seats(self, value: int | None) -> None:
        self._facts()[2] = value

    @property
    def traits(self) -> dict[str, Any] | None:
        """User: the traits nudge audiences match (from identify)."""
        return None if self.nudges is None else self.nudges.get(TRAITS)

    @traits.setter
    def traits(self, value: dict[str, Any] | None) -> None:
        if self.nudges is None:
            self.nudges = {}
        self.nudges[TRAITS] = value

    @property
    def reached(self) -> dict[str, float]:
        """Milestone name to the time it was reached (a copy)."""
        cut = len(REACHED)
        return {
            k[cut:]: v  # type: ignore[misc]
            for k, v in (self.events or {}).items()
            if k.startswith(REACHED)
        }

    def reached_at(self, key: str) -> float | None:
        """When the milestone with ``reached_key`` ``key`` was reached, or None."""
        events = self.events
        return None if events is None else events.get(key)  # type: ignore[return-value]

    def reach(self, key: str, at: float) -> None:
        """Record that the milestone with ``reached_key`` ``key`` was reached at ``at``."""
        if self.events is None:
            self.events = {}
        self.events[key] = at

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy, for stores that persist state."""
        return {
            "first": self.first,
            "last": self.last,
            "events": {k: v for k, v in (self.events or {}).items() if not k.startswith(REACHED)},
            "features": self.features or {},
            "days": list(self.days or ()),
            "reached": self.reached,
            "members": self.members or {},
            "touch": self.touch,
            "seats": self.seats,
            "due": self.due if self.due != float("inf") else None,  # JSON has no infinity
            "nudges": {k: v for k, v in (self.nudges or {}).items() if k != TRAITS},
            "traits": self.traits or {},
            "signalled": self.signalled,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubjectState:
        """Rebuild a state written by :meth:`to_json`."""
        state = cls()
        state.first = data.get("first")
        state.last = data.get("last")
        events: dict[str, float | list[float]] = {
            sys.intern(k): list(v) if isinstance(v, list) else v
            for k, v in data.get("events", {}).items()
        }
        for name, at in data.get("reached", {}).items():
            events[reached_key(name)] = at
        state.events = events or None
        features = data.get("features", {})
        # (Written as {feature: first use in seconds} before feature days were kept.)
        state.features = {
            k: v if isinstance(v, int) else pack_feature(v, 0) for k, v in features.items()
        } or None
        state.days = array("i", data.get("days", [])) or None
        if data.get("members"):
            state.members = dict(data["members"])
        if data.get("touch"):
            state.touch = int(data["touch"])
        seats = data.get("seats")
        if seats is not None:
            state.seats = int(seats)
        due = data.get("due", 0.0)
        state.due = float("inf") if due is None else float(due)
        state.nudges = {
            k: list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v
            for k, v in data.get("nudges", {}).items()
        } or None
        if data.get("traits"):
            state.traits = dict(data["traits"])
        # (Absent from states written before engagement signals: none signalled yet.)
        state.signalled = int(data.get("signalled") or 0)
        return state
