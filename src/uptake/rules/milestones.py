"""Activation, habit and depth milestones, evaluated on event time.

A :class:`Milestone` is a set of criteria that must all hold (``all_of``, ``any_of``,
``counts``, ``features``, ``active_days``), optionally by ``first_seen + within``. It is
reached once per subject (a user, or an account with ``scope="account"``) and never
un-reached; when ``within`` passes first, it is *missed*.

:class:`MilestoneRules` applies one event to one subject's :class:`SubjectState` and returns
the milestones that event made reached. It is pure: no clock, no I/O, so replays, backfills
and tests are deterministic, and the same code runs whatever store keeps the state.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, Literal

import attrs

from ..errors import ConfigurationError
from .calendar import Calendar, mark_day
from .state import SubjectState, feature_days, feature_first_use, pack_feature, reached_key

__all__ = ["FEATURE_EVENT", "Milestone", "MilestoneReached", "MilestoneRules"]

#: The event ``Client.feature_used`` tracks; its ``feature`` property names the feature.
FEATURE_EVENT = "Feature Used"


def _names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{what} must be a list of event names, not {value!r}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{what} must hold non-empty event names, not {name!r}")
    return names


def _counts(value: object) -> Mapping[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"counts must map event names to counts, not {value!r}")
    for name, n in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"counts keys must be non-empty event names, not {name!r}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"counts[{name!r}] must be a positive int, not {n!r}")
    return MappingProxyType(dict(value))


def _all_of(value: object) -> tuple[str, ...]:
    return _names(value, "all_of")


def _any_of(value: object) -> tuple[str, ...]:
    return _names(value, "any_of")


def _non_negative(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{what} must be a non-negative int, not {value!r}")
    return value


def _features(value: object) -> int:
    return _non_negative(value, "features")


def _active_days(value: object) -> int:
    return _non_negative(value, "active_days")


@attrs.frozen
class Milestone:
    """A milestone: criteria that must all hold, optionally within a time from first seen.

    Args:
        name: Unique name, e.g. ``"activated"``.
        all_of: Events that must each happen at least once.
        any_of: Events of which at least one must happen.
        counts: Events that must each happen at least ``n`` times, e.g.
            ``{"Report Created": 3}``.
        features: Distinct features (``client.feature_used``) that must be used.
        active_days: Distinct active days needed inside a rolling window of ``within``.
        within: With ``active_days``, the rolling window; otherwise the deadline counted
            from the subject's first event, after which the milestone is missed.
        scope: ``"user"`` (default) or ``"account"``: whose events count, and who reaches it.

    Raises:
        ConfigurationError: no criterion, a bare string where a list is expected, counts
            below 1, ``active_days`` without ``within`` or more days than ``within`` holds.
    """

    name: str = attrs.field()
    all_of: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_all_of)
    any_of: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_any_of)
    counts: Mapping[str, int] = attrs.field(
        factory=dict,
        kw_only=True,
        converter=_counts,
        eq=attrs.cmp_using(eq=lambda a, b: dict(a) == dict(b)),
        hash=False,
    )
    features: int = attrs.field(default=0, kw_only=True, converter=_features)
    active_days: int = attrs.field(default=0, kw_only=True, converter=_active_days)
    within: timedelta | None = attrs.field(default=None, kw_only=True)
    scope: Literal["user", "account"] = attrs.field(default="user", kw_only=True)

    @name.validator
    def _check_name(self, attribute: Any, value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"a milestone needs a non-empty name, not {value!r}")

    def __attrs_post_init__(self) -> None:
        where = f"milestone {self.name!r}"
        if not (self.all_of or self.any_of or self.counts or self.features or self.active_days):
            raise ConfigurationError(
                f"{where} has no criterion: give all_of, any_of, counts, features or active_days"
            )
        if self.within is not None and (
            not isinstance(self.within, timedelta) or self.within <= timedelta(0)
        ):
            raise ConfigurationError(f"{where}: within must be a positive timedelta")
        if self.active_days:
            if self.within is None:
                raise ConfigurationError(f"{where}: active_days needs within (the window)")
            if self.active_days > math.ceil(self.within / timedelta(days=1)):
                raise ConfigurationError(
                    f"{where}: {self.active_days} active days cannot fit in {self.within}"
                )
        if self.scope not in ("user", "account"):
            raise ConfigurationError(f"{where}: scope must be 'user' or 'account'")

    @property
    def deadline_s(self) -> float | None:
        """Seconds after first seen by which it must be reached (None: no deadline)."""
        if self.within is None or self.active_days:
            return None
        return self.within.total_seconds()

    @property
    def events(self) -> frozenset[str]:
        """Every event name this milestone refers to."""
        return frozenset(self.all_of) | frozenset(self.any_of) | frozenset(self.counts)


@attrs.frozen
class MilestoneReached:
    """What ``on_milestone`` callbacks receive.

    Attributes:
        milestone: The milestone's name.
        user_id: The user whose event reached it (for account milestones: the user whose
            event completed it), or their anonymous id.
        account_id: The account, when known (always, for account milestones).
        timestamp: When it was reached (event time, UTC).
        time_to_reach: From the subject's first event to ``timestamp``.
    """

    milestone: str
    user_id: str | None
    account_id: str | None
    timestamp: datetime
    time_to_reach: timedelta


#: What ``apply`` returns when nothing was reached (shared: never changed).
_NONE_REACHED: list[tuple[Milestone, float, float]] = []


def _nth(events: dict[str, float | list[float]], name: str, n: int) -> float | None:
    """The time of the n-th occurrence of an event (from the earliest), or None."""
    times = events.get(name)
    if times is None:
        return None
    if not isinstance(times, list):
        return times if n == 1 else None
    return times[n - 1] if len(times) >= n else None


class MilestoneRules:
    """Milestones of one scope, compiled for fast evaluation (internal)."""

    def __init__(
        self,
        milestones: Sequence[Milestone],
        *,
        tz: tzinfo | None = None,
        calendar: Calendar | None = None,
        keep_days: int = 0,
        feature_days: int = 0,
    ) -> None:
        """Compile milestones.

        Other rules (engagement) may ask to keep ``keep_days`` active days, and the days
        of use of each feature over ``feature_days`` days.
        """
        self.milestones = tuple(milestones)
        self.calendar = calendar if calendar is not None else Calendar(tz)
        keep: dict[str, int] = {}
        self._by_event: dict[str, list[Milestone]] = {}
        for m in self.milestones:
            for name in m.events:
                need = m.counts.get(name, 1)
                keep[name] = max(keep.get(name, 0), need)
                self._by_event.setdefault(name, []).append(m)
        self._keep = keep  # event -> how many earliest times to keep
        self._keys = {m.name: reached_key(m.name) for m in self.milestones}
        self._by_feature = [m for m in self.milestones if m.features]
        self._by_day = [m for m in self.milestones if m.active_days]
        windows = [m.within for m in self._by_day if m.within is not None]
        window = max((math.ceil(w / timedelta(days=1)) for w in windows), default=0)
        # A late day is accepted up to one window behind the latest, so two windows' worth
        # are kept (a late day can complete a window reaching that far back); other rules
        # (engagement) may ask for more.
        self._lateness = max(window, keep_days)
        self._kept = max(2 * window - 1, keep_days)
        self._feature_days = feature_days
        self._track_days = bool(self._by_day) or keep_days > 0 or feature_days > 0
        self._track_features = bool(self._by_feature) or feature_days > 0
        # Every active event matters: it may be the subject's first (deadlines and
        # time_to_reach count from it) or a new active day.
        self._needs_activity = bool(self.milestones) or keep_days > 0

    def __bool__(self) -> bool:
        return self._needs_activity

    def wants(self, event: str, active: bool, feature: str | None) -> bool:
        """Whether an event can change anything these rules look at (else skip the store)."""
        if event in self._keep:
            return True
        if feature is not None and self._track_features:
            return True
        return active and self._needs_activity

    def counts(self, event: str) -> bool:
        """Whether a milestone's criteria name this event (its times are kept)."""
        return event in self._keep

    @property
    def keep(self) -> dict[str, int]:
        """Event -> how many of its earliest times are kept (for merging states)."""
        return self._keep

    @property
    def days_kept(self) -> int:
        """How many days back from the latest active day are kept (0: no limit)."""
        return self._kept

    @property
    def feature_width(self) -> int:
        """Days covered by each feature's day mask (0: none kept)."""
        return self._feature_days

    def reevaluate(self, state: SubjectState, t: float) -> list[tuple[Milestone, float, float]]:
        """Reach every milestone a changed state (a merge) now meets, at event time ``t``."""
        if not self.milestones or self._all_reached(state):
            return []
        return self._evaluate(state, list(self.milestones), t)

    def day_of(self, t: float) -> int:
        """The calendar day number of event time ``t`` in the configured time zone."""
        return self.calendar.day_of(t)

    @property
    def tracks_days(self) -> bool:
        """Whether active days are recorded (so ``apply`` wants the day of active events)."""
        return self._track_days

    def apply(
        self,
        state: SubjectState,
        event: str,
        t: float,
        active: bool,
        feature: str | None,
        day: int | None = None,
    ) -> list[tuple[Milestone, float, float]]:
        """Apply one event to a subject's state; return the milestones it made reached.

        ``day`` is the calendar day of ``t`` when the caller already knows it. Each result
        is ``(milestone, reached_at, first_seen)``, in event time.
        """
        # The milestones this event may have completed: None while there are none (the
        # common case), else a new list (the compiled lists are shared, never changed).
        candidates: list[Milestone] | None = None
        # Everything that can fail (a time zone lookup) happens before the state changes.
        if not active or not self._track_days:
            day = None
        elif day is None:
            day = self.calendar.day_of(t)
        if active:
            first = state.first
            if first is None or t < first:
                state.first = t
            last = state.last
            if last is None or t > last:
                state.last = t
            if day is not None:
                kept = state.days
                # (Another event on the latest day, the common case, changes no day.)
                if (kept is None or kept[-1] != day) and self._add_day(state, day):
                    candidates = list(self._by_day)
        keep = self._keep.get(event)
        if keep:
            events = state.events
            if events is None:
                events = state.events = {}
            times = events.get(event)
            changed = True
            if times is None:
                events[event] = t if keep == 1 else [t]
            elif not isinstance(times, list):  # only the first time was needed: a number
                if keep > 1:  # a count was added to the rules since: keep a list from now on
                    events[event] = sorted((times, t))[:keep]
                elif t < times:
                    events[event] = t
                else:
                    changed = False
            elif len(times) < keep or t < times[-1]:
                bisect.insort(times, t)
                del times[keep:]
            else:
                changed = False
            if changed:  # (an event that changes nothing cannot reach anything)
                if candidates is None:
                    candidates = []
                candidates += self._by_event[event]
        if feature is not None and self._track_features:
            features = state.features
            if features is None:
                features = state.features = {}
            packed = features.get(feature)
            days = 0 if packed is None else feature_days(packed)
            if day is not None and self._feature_days:
                days = mark_day(days, day, self._feature_days)
            if packed is None or t < feature_first_use(packed):
                features[feature] = pack_feature(t, days)
                if candidates is None:
                    candidates = []
                candidates += self._by_feature
            else:
                features[feature] = packed - feature_days(packed) + days
        if candidates is None or self._all_reached(state):
            return _NONE_REACHED
        return self._evaluate(state, candidates, t)

    def _all_reached(self, state: SubjectState) -> bool:
        events = state.events
        return events is not None and all(key in events for key in self._keys.values())

    def _add_day(self, state: SubjectState, day: int) -> bool:
        """Record an active day; True if it is new (see ``__init__`` for what is kept)."""
        days = state.days
        if days is None:
            state.days = array("i", (day,))
            return True
        if days[-1] == day:  # the common case: another event on the latest day
            return False
        i = bisect.bisect_left(days, day)
        if i < len(days) and days[i] == day:
            return False
        if day <= days[-1] - self._lateness:
            return False  # later than the lateness we allow for
        days.insert(i, day)
        cut = bisect.bisect_left(days, days[-1] - self._kept + 1)
        if cut:
            del days[:cut]
        return True

    def _evaluate(
        self, state: SubjectState, candidates: list[Milestone], t: float
    ) -> list[tuple[Milestone, float, float]]:
        reached_now: list[tuple[Milestone, float, float]] = []
        for m in candidates:  # a milestone listed twice is skipped once reached
            key = self._keys[m.name]
            if state.reached_at(key) is not None:
                continue
            at = self._reached_at(state, m, t)
            if at is None:
                continue
            first = state.first if state.first is not None else at
            if m.deadline_s is not None and at > first + m.deadline_s:
                continue  # too late (for now: a late event may still complete it in time)
            state.reach(key, at)
            reached_now.append((m, at, first))
        return reached_now

    def _reached_at(self, state: SubjectState, m: Milestone, t: float) -> float | None:
        """When all of a milestone's criteria first held, or None if they do not yet."""
        times: list[float] = []
        events = state.events or {}
        for name in m.all_of:
            at = _nth(events, name, 1)
            if at is None:
                return None
            times.append(at)
        if m.any_of:
            firsts = [at for name in m.any_of if (at := _nth(events, name, 1)) is not None]
            if not firsts:
                return None
            times.append(min(firsts))
        for name, n in m.counts.items():
            at = _nth(events, name, n)
            if at is None:
                return None
            times.append(at)
        if m.features:
            uses = sorted(feature_first_use(v) for v in (state.features or {}).values())
            if len(uses) < m.features:
                return None
            times.append(uses[m.features - 1])
        if m.active_days:
            assert m.within is not None  # checked at construction
            if not self._days_within(state.days or [], m.active_days, m.within):
                return None
            times.append(t)  # completed by this event's day
        return max(times) if times else None

    @staticmethod
    def _days_within(days: Sequence[int], n: int, window: timedelta) -> bool:
        span = math.ceil(window / timedelta(days=1))
        return any(days[i + n - 1] - days[i] < span for i in range(len(days) - n + 1))

    def missed_by(self, state: SubjectState, now: float) -> list[str]:
        """Milestones with a deadline (``within``) that has passed unreached at ``now``."""
        missed: list[str] = []
        if state.first is None:
            return missed
        for m in self.milestones:
            if m.within is None or m.active_days or m.name in missed:
                continue
            if state.reached_at(self._keys[m.name]) is not None:
                continue
            if now > state.first + m.within.total_seconds():
                missed.append(m.name)
        return missed
