"""Nudge fatigue: a budget of nudges per user and channel, and quiet hours in their time zone.

What a host declares (:class:`NudgeBudget`, :class:`QuietHours`) and :class:`Fatigue`, the
two compiled for the decision (:mod:`uptake.rules.nudge_decide`), which asks it, for a nudge
that passed every other check, whether the user's budget for its channel is spent or it is
night where the user is. A nudge held back by quiet hours is *deferred*: it counts as
triggered until its channel's next quiet hours begin, so one whose trigger was a moment
(``Inactive``, a windowed ``EventCount``) still fires when the user is next seen after them.

Per-user state lives in the user's ``nudges`` dict (so every store keeps it, and state
written before it existed reads as "nothing spent, nothing deferred"):

- ``SPENT + channel``: the latest fire times in that channel, as many as its largest
  budget counts (held-out fires too: the control group gets what the others get);
- ``DEFERRED``: nudge name -> [start, end of the quiet hours that held it back, until when
  it counts as triggered] (replaced, never changed in place: copies share them).

Pure logic: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from ..errors import ConfigurationError
from .nudge_spec import DEFAULT_CHANNEL, Nudge, NudgeStatus, span
from .state import SubjectState

#: Reasons recorded while explaining: nudge name -> (status, detail, until).
Why = dict[str, tuple[NudgeStatus, str, "float | None"]]

__all__ = [
    "DEFAULT_CHANNEL",
    "DEFERRED",
    "SPENT",
    "Fatigue",
    "NudgeBudget",
    "QuietHours",
    "budgets",
    "quiet_hours",
]

logger = logging.getLogger("uptake")

SPENT = "\x00b:"  # + channel: the latest fire times of that channel (the budget)
DEFERRED = "\x00defer"  # nudge name -> [quiet from, quiet until, counts as triggered until]
_NOT_DEFERRED = (0.0, 0.0, 0.0)

_ZONES: dict[str, tzinfo | None] = {}  # time zone trait value -> zone (None: not a zone)


def _channel(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigurationError(f"{what} channel must be a non-empty name or None, not {value!r}")
    return value


@attrs.frozen
class NudgeBudget:
    """At most ``n`` nudges per user in any ``per`` (a rolling window), across all nudges.

    Fires count, held-out ones too (as for the rate limit), so a host that only uses
    callbacks is limited as well. Example: ``NudgeBudget(3, per=timedelta(days=7))``.

    Args:
        n: How many nudges may fire per user in any window of ``per``.
        per: The window.
        channel: The channel it limits (``Nudge(channel=...)``); None (default): every
            channel, each with a budget of its own.

    Raises:
        ConfigurationError: ``n`` not a positive int, ``per`` not a positive timedelta.
    """

    n: int
    per: timedelta
    channel: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ConfigurationError(f"NudgeBudget n must be a positive int, not {self.n!r}")
        if not isinstance(self.per, timedelta) or self.per <= timedelta(0):
            raise ConfigurationError(
                f"NudgeBudget per must be a positive timedelta, not {self.per!r}"
            )
        _channel(self.channel, "NudgeBudget")

    def describe(self, channel: str) -> str:
        return f"{self.n} {channel} nudge{'s' if self.n != 1 else ''} per {span(self.per)}"


@attrs.frozen
class QuietHours:
    """No nudge fires from ``start`` to ``end``, wall-clock time where the user is.

    The user's time zone is their ``trait`` from ``client.identify`` (an IANA name such as
    ``"Europe/Paris"``), else the client's ``timezone``, else UTC. ``start`` after ``end``
    spans midnight: ``QuietHours(time(21), time(8))``. A nudge held back is deferred, not
    skipped: it fires when the user is next seen before the next quiet hours begin.

    Args:
        start: When quiet hours begin (a ``datetime.time`` without tzinfo).
        end: When they end.
        channel: The channel they apply to; None (default): every channel.
        trait: The identify trait holding the user's time zone.

    Raises:
        ConfigurationError: times that are not naive ``datetime.time``, or equal.
    """

    start: time
    end: time
    channel: str | None = attrs.field(default=None, kw_only=True)
    trait: str = attrs.field(default="timezone", kw_only=True)

    def __attrs_post_init__(self) -> None:
        for bound in (self.start, self.end):
            if not isinstance(bound, time) or bound.tzinfo is not None:
                raise ConfigurationError(
                    f"quiet hours must be datetime.time values without tzinfo (the user's "
                    f"wall clock), not {bound!r}"
                )
        if self.start == self.end:
            raise ConfigurationError("quiet hours must end at another time than they start")
        _channel(self.channel, "QuietHours")
        if not isinstance(self.trait, str) or not self.trait:
            raise ConfigurationError(f"QuietHours trait must be a trait name, not {self.trait!r}")

    def describe(self) -> str:
        return f"quiet hours {self.start:%H:%M}-{self.end:%H:%M}"


#: What ``Client(nudge_budget=...)`` and ``Client(quiet_hours=...)`` accept.
BudgetArg = NudgeBudget | Sequence[NudgeBudget] | None
QuietHoursArg = QuietHours | tuple[time, time] | Sequence[QuietHours] | None


def budgets(value: object) -> tuple[NudgeBudget, ...]:
    """Check ``Client(nudge_budget=...)``: a :class:`NudgeBudget`, a list of them, or None."""
    if value is None:
        return ()
    items = [value] if isinstance(value, NudgeBudget) else value
    if not isinstance(items, Iterable) or isinstance(items, (str, Mapping)):
        raise ConfigurationError(
            f"nudge_budget must be an uptake.NudgeBudget, a list of them or None, not {value!r}"
        )
    found = tuple(items)
    for b in found:
        if not isinstance(b, NudgeBudget):
            raise ConfigurationError(f"nudge_budget must hold uptake.NudgeBudget, not {b!r}")
    return found


def quiet_hours(value: object) -> tuple[QuietHours, ...]:
    """Check ``Client(quiet_hours=...)``: ``(start, end)``, :class:`QuietHours`, a list of
    them, or None. At most one per channel (and one for every channel)."""
    if value is None:
        return ()
    if isinstance(value, QuietHours):
        items: Iterable[Any] = [value]
    elif isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, time) for v in value):
        items = [QuietHours(value[0], value[1])]
    elif isinstance(value, Iterable) and not isinstance(value, (str, Mapping)):
        items = value
    else:
        raise ConfigurationError(
            "quiet_hours must be (start, end) datetime.time values, an uptake.QuietHours, "
            f"a list of them or None, not {value!r}"
        )
    found = tuple(items)
    seen: set[str | None] = set()
    for q in found:
        if not isinstance(q, QuietHours):
            raise ConfigurationError(f"quiet_hours must hold uptake.QuietHours, not {q!r}")
        if q.channel in seen:
            raise ConfigurationError(f"quiet hours given twice for channel {q.channel!r}")
        seen.add(q.channel)
    return found


def zone(name: object, default: tzinfo) -> tzinfo:
    """The time zone a trait names (an IANA name), or ``default`` (logged once per name)."""
    if not isinstance(name, str) or not name:
        return default
    if name in _ZONES:
        found = _ZONES[name]
    else:
        try:
            found = ZoneInfo(name)
        except (KeyError, ValueError, OSError):  # (ZoneInfoNotFoundError is a KeyError)
            found = None
            logger.warning("time zone trait %r is not a time zone name; using the client's", name)
        if len(_ZONES) >= 1024:  # trait values come from the host's users: keep it bounded
            _ZONES.clear()
        _ZONES[name] = found
    return default if found is None else found


def _at(day: date, clock: time, tz: tzinfo, after: float) -> float:
    """The moment a wall-clock time of a day happens in ``tz``, after ``after`` if it can
    be (a time repeated when clocks go back: the later one)."""
    moment = datetime.combine(day, clock, tzinfo=tz)
    t = moment.timestamp()
    return t if t > after else moment.replace(fold=1).timestamp()


def _window(
    hours: QuietHours, tz: tzinfo, t: float
) -> tuple[tuple[float, float, float] | None, float, float]:
    """Whether ``t`` is inside quiet hours in ``tz`` (their start, end and the next start,
    or None), and from when to when that answer holds."""
    local = datetime.fromtimestamp(t, tz)
    now, today = local.time(), local.date()
    start, end = hours.start, hours.end
    one = timedelta(days=1)
    if start < end:  # within a day
        if not start <= now < end:
            return None, t, _at(today if now < start else today + one, start, tz, t)
        first, last, following = today, today, today + one
    elif now >= start:  # across midnight, in its evening
        first, last, following = today, today + one, today + one
    elif now < end:  # ...in its morning
        first, last, following = today - one, today, today
    else:
        return None, t, _at(today, start, tz, t)
    began = datetime.combine(first, start, tzinfo=tz).timestamp()
    ends = _at(last, end, tz, t)
    return (began, ends, _at(following, start, tz, ends)), began, ends


class Fatigue:
    """The budgets and quiet hours of a client, compiled for the decision (internal)."""

    def __init__(
        self,
        budgets: Sequence[NudgeBudget],
        quiet: Sequence[QuietHours],
        tz: tzinfo | None,
    ) -> None:
        self.budgets = tuple(budgets)
        self.hours = tuple(quiet)
        self.tz = tz if tz is not None else timezone.utc
        #: The identify traits that hold time zones (kept in the user's state).
        self.traits = frozenset(q.trait for q in self.hours)
        self._limits: dict[str, tuple[NudgeBudget, ...]] = {}
        self._quiet: dict[str, QuietHours | None] = {}
        # (hours, time zone) -> (from, until, the answer of quiet() all that time)
        self._windows: dict[
            tuple[QuietHours, tzinfo], tuple[float, float, tuple[float, float, float] | None]
        ] = {}

    def __repr__(self) -> str:
        return f"Fatigue({self.budgets!r}, {self.hours!r})"

    def limits(self, channel: str) -> tuple[NudgeBudget, ...]:
        """The budgets that apply to a channel."""
        found = self._limits.get(channel)
        if found is None:
            found = tuple(b for b in self.budgets if b.channel in (None, channel))
            self._limits[channel] = found
        return found

    def hours_of(self, channel: str) -> QuietHours | None:
        """The quiet hours of a channel: its own, else those of every channel, or None."""
        if channel not in self._quiet:
            own = [q for q in self.hours if q.channel == channel]
            every = [q for q in self.hours if q.channel is None]
            found = own or every
            self._quiet[channel] = found[0] if found else None
        return self._quiet[channel]

    def holds_back(
        self, state: SubjectState, nudge: Nudge, t: float, why: Why | None
    ) -> tuple[str, float] | None:
        """What holds back a nudge that may otherwise fire at ``t``: ("over_budget", the
        fire that spent the budget) or ("quiet_hours", their start; the nudge is deferred
        to their end), else None. With ``why``, record the reasons in it."""
        channel = nudge.channel
        spent = self.over_budget(state.nudges or {}, channel, t)
        if spent is not None:
            if why is not None:
                detail = f"the budget of {spent[1].describe(channel)} is spent"
                why[nudge.name] = ("over_budget", detail, spent[0])
            return "over_budget", spent[2]
        quiet = self.quiet(state.traits, channel, t)
        if quiet is None:
            return None
        began, ends, next_start = quiet
        if state.nudges is None:
            state.nudges = {}
        state.nudges.setdefault(DEFERRED, {})[nudge.name] = [began, ends, next_start]
        if why is not None:
            hours = self.hours_of(channel)
            assert hours is not None
            where = self.zone_of(state.traits, hours)
            why[nudge.name] = ("quiet_hours", f"deferred: {hours.describe()} in {where}", ends)
        return "quiet_hours", began

    # ------------------------------------------------------------------ budget

    def over_budget(
        self, records: Mapping[str, Any], channel: str, t: float
    ) -> tuple[float, NudgeBudget, float] | None:
        """When a channel's spent budget frees up again, the budget, and the channel's
        latest fire; None when a nudge of the channel may fire at ``t``."""
        limits = self.limits(channel)
        if not limits:
            return None
        times: list[float] = records.get(SPENT + channel) or []
        worst: tuple[float, NudgeBudget, float] | None = None
        for budget in limits:
            # Fires stamped after ``t`` (a late event) count, as for the rate limit.
            if len(times) >= budget.n:
                free = times[-budget.n] + budget.per.total_seconds()
                if t < free and (worst is None or free > worst[0]):
                    worst = (free, budget, times[-1])
        return worst

    def spend(self, records: dict[str, Any], channel: str, name: str, t: float) -> None:
        """Count a fire (or hold-out) at ``t`` against its channel's budget."""
        deferred = records.get(DEFERRED)
        if deferred and name in deferred:
            del deferred[name]
        limits = self.limits(channel)
        if not limits:
            return
        times: list[float] = records.setdefault(SPENT + channel, [])
        if times and t < times[-1]:
            bisect.insort(times, t)
        else:
            times.append(t)
        keep = max(b.n for b in limits)
        if len(times) > keep:
            del times[:-keep]

    def merge_spent(self, key: str, mine: list[float], theirs: list[float]) -> list[float]:
        """Two subjects' fire times of one channel, united (identity merges)."""
        limits = self.limits(key[len(SPENT) :])
        times = sorted(mine + theirs)
        keep = max((b.n for b in limits), default=len(times))
        return times[-keep:] if keep else []

    # ------------------------------------------------------------------ quiet hours

    def zone_of(self, traits: Mapping[str, Any] | None, hours: QuietHours) -> tzinfo:
        """The user's time zone for ``hours``: their trait, else the client's."""
        return zone(traits.get(hours.trait) if traits else None, self.tz)

    def quiet(
        self, traits: Mapping[str, Any] | None, channel: str, t: float
    ) -> tuple[float, float, float] | None:
        """At ``t`` inside a channel's quiet hours: (their start, their end, the start of
        the next ones); otherwise None. (The answer holds until the next change, and is
        kept per time zone: a nudge held back is asked again at each event that
        triggers it.)"""
        hours = self.hours_of(channel)
        if hours is None:
            return None
        tz = self.zone_of(traits, hours)
        key = (hours, tz)
        known = self._windows.get(key)
        if known is not None and known[0] <= t < known[1]:
            return known[2]
        found, lo, hi = _window(hours, tz, t)
        if len(self._windows) >= 4096:  # time zones come from the host's users
            self._windows.clear()
        self._windows[key] = (lo, hi, found)
        return found

    @staticmethod
    def deferred(records: Mapping[str, Any] | None, name: str, t: float) -> bool:
        """Whether a nudge held back by quiet hours still counts as triggered at ``t``."""
        deferred = records.get(DEFERRED) if records else None
        return deferred is not None and t < float(deferred.get(name, _NOT_DEFERRED)[2])

    @staticmethod
    def still_quiet(records: Mapping[str, Any], name: str, t: float) -> bool:
        """Whether ``t`` falls in the quiet hours that deferred a nudge (a quick look for
        an event that triggers it again: it cannot fire before they end)."""
        deferred: dict[str, list[float]] | None = records.get(DEFERRED)
        if not deferred:
            return False
        began, ends, _ = deferred.get(name, _NOT_DEFERRED)
        return began <= t < ends

    # ------------------------------------------------------------------ due

    def moments(
        self,
        records: Mapping[str, Any],
        live: Iterable[tuple[str, str]],
        t: float,
    ) -> list[float]:
        """When time alone may let a held-back nudge fire: a spent budget freeing up, the
        end of quiet hours a deferred nudge waits for. ``live``: (name, channel) of every
        nudge that may still fire."""
        moments: list[float] = []
        seen: set[str] = set()
        deferred = records.get(DEFERRED) or {}
        for name, channel in live:
            if channel not in seen:
                seen.add(channel)
                spent = self.over_budget(records, channel, t)
                if spent is not None:
                    moments.append(spent[0])
            began, ends, _ = deferred.get(name, _NOT_DEFERRED)
            if began <= t < ends:
                moments.append(ends)
        return moments
