"""What ``uptake discover`` looks for: the cohort's unit, the outcome and the candidates.

Every option is checked when the object is built, so a mistake fails with a clear
:class:`~uptake.errors.ConfigurationError` before any event is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs

from ...errors import ConfigurationError

__all__ = ["RETENTION_WINDOW", "DiscoverOptions"]

#: Retained = active on at least one day in days 28-35 after first seen (day 0 = first).
RETENTION_WINDOW = (28, 35)
#: With a goal event: reached it by the end of day 35.
GOAL_WINDOW = (0, 35)


def _whole(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"{what} must be a whole number from {low} to {high}, not {value!r}"
        )
    return value


def _days(value: object) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigurationError(f"days must be a non-empty list of whole days, not {value!r}")
    out = sorted({_whole(v, "each of days", 1, 366) for v in value})
    return tuple(out)


def _window(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigurationError(f"window must be (first day, last day), not {value!r}")
    start = _whole(value[0], "window's first day", 0, 3660)
    end = _whole(value[1], "window's last day", 0, 3660)
    if end < start:
        raise ConfigurationError(f"window must end on or after its first day, not {value!r}")
    return start, end


def _reach(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"min_reach must be a number, not {value!r}")
    if not 0 <= value < 1:
        raise ConfigurationError(f"min_reach must be at least 0 and below 1, not {value!r}")
    return float(value)


def _goal(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigurationError(f"goal must be a non-empty event name, not {value!r}")
    return value


def _unit(value: object) -> Literal["user", "account"]:
    if value == "user":
        return "user"
    if value == "account":
        return "account"
    raise ConfigurationError(f"unit must be 'user' or 'account', not {value!r}")


@attrs.frozen
class DiscoverOptions:
    """What to look for.

    Attributes:
        unit: ``"user"`` or ``"account"``: whose first events and whose outcome count.
        goal: An event whose occurrence is the outcome; None: retention.
        window: The outcome window, in days after the first-seen day (day 0), both
            ends included; None: days 28-35 for retention, 0-35 for a goal.
        days: The early windows N, in days from the first event.
        max_count: The largest count k tried ("at least k times").
        min_reach: Leave out candidates fewer than this share of the cohort did (or
            did not do).
        min_users: ... or fewer than this many subjects did (or did not do).
        pairs: How many of the strongest single candidates are combined in pairs.
    """

    unit: Literal["user", "account"] = attrs.field(default="user", converter=_unit)
    goal: str | None = attrs.field(default=None, converter=_goal)
    window: tuple[int, int] | None = attrs.field(default=None, converter=_window)
    days: tuple[int, ...] = attrs.field(default=(1, 3, 7, 14), converter=_days)
    max_count: int = attrs.field(default=10)
    min_reach: float = attrs.field(default=0.05, converter=_reach)
    min_users: int = attrs.field(default=30)
    pairs: int = attrs.field(default=8)

    def __attrs_post_init__(self) -> None:
        _whole(self.max_count, "max_count", 1, 1000)
        _whole(self.min_users, "min_users", 1, 10**9)
        _whole(self.pairs, "pairs", 0, 30)

    @property
    def outcome_window(self) -> tuple[int, int]:
        """The outcome window with its default filled in."""
        if self.window is not None:
            return self.window
        return GOAL_WINDOW if self.goal is not None else RETENTION_WINDOW

    @property
    def goal_warning(self) -> str | None:
        """Warn when a goal's window starts before the longest early window ends (None
        otherwise): a goal reached before a behaviour then counts for it."""
        start, end = self.outcome_window
        longest = max(self.days)
        if self.goal is None or start >= longest:
            return None
        return (
            f"the goal window starts on day {start}, before the {longest}-day early window "
            f"ends: a subject who did {self.goal!r} first and the behaviour after counts "
            "for the behaviour (a feature that comes with the goal then looks like its "
            f"cause). To count only goals after every early window, use window {longest}:"
            f"{max(end, longest)} (subjects who reached the goal before it are then left "
            "out of the cohort)"
        )

    def describe(self) -> str:
        """Say the outcome in words: "retained: active on a day in days 28-35"."""
        start, end = self.outcome_window
        if self.goal is None:
            return f"retained = active on at least one day in days {start}-{end} after first seen"
        return f"converted = did {self.goal!r} in days {start}-{end} after first seen"
