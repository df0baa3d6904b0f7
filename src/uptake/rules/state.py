"""The state the rules keep about one subject (a user or an account).

Only what the configured rules need: the earliest times of the events they reference (as
many as the largest count needs), the first time each feature was used, the active days
inside the longest windows, and which milestones were reached (and when). Never the event
history.
"""

from __future__ import annotations

from array import array
from typing import Any


class SubjectState:
    """Mutable state of one subject; owned by a store, changed only by the rules."""

    __slots__ = ("days", "events", "features", "first", "last", "reached")

    def __init__(self) -> None:
        self.first: float | None = None  # first active event (event time)
        self.last: float | None = None  # latest active event
        # event -> earliest time (a float when only the first is needed) or earliest times
        self.events: dict[str, float | list[float]] | None = None
        self.features: dict[str, float] | None = None  # feature -> first use
        self.days: array[int] | None = None  # sorted distinct active days (compact ints)
        self.reached: dict[str, float] | None = None  # milestone -> reached at

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy, for stores that persist state."""
        return {
            "first": self.first,
            "last": self.last,
            "events": self.events or {},
            "features": self.features or {},
            "days": list(self.days or ()),
            "reached": self.reached or {},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubjectState:
        """Rebuild a state written by :meth:`to_json`."""
        state = cls()
        state.first = data.get("first")
        state.last = data.get("last")
        events = data.get("events", {})
        state.events = {k: list(v) if isinstance(v, list) else v for k, v in events.items()}
        state.events = state.events or None
        state.features = dict(data.get("features", {})) or None
        state.days = array("i", data.get("days", [])) or None
        state.reached = dict(data.get("reached", {})) or None
        return state
