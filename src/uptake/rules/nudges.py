"""Nudges: deciding, at the moment a user is seen, which in-product nudge to fire.

Evaluation order for one user at one moment (event time ``t``): schedule, audience,
trigger, ``unless``, caps (max_shows, dismissal, snooze, cooldown), then the eligible
nudges sorted by priority pass the per-user rate limit one by one, and each is either held
out (a stable hash of nudge and user puts the user in the control group: recorded, never
shown) or fired (callback, pending list).

Only what can have changed is looked at: a nudge triggered by an event when that event
arrives, one triggered by a milestone when it is reached, and all of them when time alone
may have changed a decision (a deadline passed, a cooldown, snooze or rate limit ended, a
new week for ``Declining``, a user back after a gap for ``Inactive``). ``SubjectState.due``
holds the earliest such moment, so the common event costs one comparison.

Pure logic over a :class:`SubjectState`: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Literal

import attrs

from ..errors import ConfigurationError
from .state import REACHED, SubjectState, reached_key

__all__ = [
    "Audience",
    "Declining",
    "EventCount",
    "Inactive",
    "NotReached",
    "Nudge",
    "NudgeExplanation",
    "NudgeFired",
    "NudgeRules",
    "Reached",
]

logger = logging.getLogger("uptake")

_DAY = 86_400.0
# Keys of SubjectState.nudges other than nudge names (which may not contain a NUL).
_LAST = "\x00last"  # when any nudge last fired for this user (the rate limit)
_PENDING = "\x00pending"  # names fired and not yet shown, clicked or dismissed
_COUNT = "\x00n:"  # + event: lifetime count
_RECENT = "\x00w:"  # + event: the latest times (for windowed counts)
_ACCOUNT = "\x00acct"  # account milestones (that Reached triggers name) this user has seen
_CONFIG = "\x00cfg"  # the nudge set ``due`` was computed for
# A nudge's record: [fires (held-out ones too), last fire, dismissed, snoozed until,
# rate-limit suppression recorded at].
_FIRES, _AT, _DISMISSED, _UNTIL, _SUPPRESSED = range(5)


def _positive_duration(value: object, what: str) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ConfigurationError(f"{what} must be a positive timedelta, not {value!r}")
    return value


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigurationError(f"{what} must be a non-empty name, not {value!r}")
    return value


@attrs.frozen
class EventCount:
    """Holds once ``event`` happened ``n`` times: ever, or within the last ``within``.

    With a short ``within`` it also catches friction, e.g. ``EventCount("Export Failed",
    3, within=timedelta(minutes=10))``.
    """

    event: str
    n: int = 1
    within: timedelta | None = None

    def __attrs_post_init__(self) -> None:
        _name(self.event, "EventCount event")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ConfigurationError(f"EventCount n must be a positive int, not {self.n!r}")
        if self.within is not None:
            _positive_duration(self.within, "EventCount within")

    def describe(self) -> str:
        window = f" within {_span(self.within)}" if self.within is not None else ""
        return f"{self.event} x{self.n}{window}"


@attrs.frozen
class Reached:
    """Holds once the user (or their account, for an account milestone) reached it."""

    milestone: str

    def __attrs_post_init__(self) -> None:
        _name(self.milestone, "Reached milestone")

    def describe(self) -> str:
        return f"reached {self.milestone}"


@attrs.frozen
class NotReached:
    """Holds when the milestone is still not reached ``after`` the user was first seen."""

    milestone: str
    after: timedelta

    def __attrs_post_init__(self) -> None:
        _name(self.milestone, "NotReached milestone")
        _positive_duration(self.after, "NotReached after")

    def describe(self) -> str:
        return f"{self.milestone} not reached after {_span(self.after)}"


@attrs.frozen
class Inactive:
    """Holds when the user comes back after at least ``after`` without an active event."""

    after: timedelta

    def __attrs_post_init__(self) -> None:
        _positive_duration(self.after, "Inactive after")

    def describe(self) -> str:
        return f"back after {_span(self.after)} inactive"


@attrs.frozen
class Declining:
    """Holds while the user's engagement is declining (see ``client.engagement``)."""

    def describe(self) -> str:
        return "declining"


Trigger = EventCount | Reached | NotReached | Inactive | Declining
_TRIGGERS = (EventCount, Reached, NotReached, Inactive, Declining)


class Audience:
    """What an ``audience`` callable is given about the user being considered."""

    __slots__ = ("_engagement", "account_id", "milestones", "traits", "user_id")

    def __init__(
        self,
        user_id: str,
        account_id: str | None,
        traits: Mapping[str, Any],
        milestones: frozenset[str],
        engagement: Callable[[], Any] | None,
    ) -> None:
        self.user_id = user_id
        self.account_id = account_id
        self.traits = traits
        self.milestones = milestones
        self._engagement = engagement

    @property
    def engagement(self) -> Any:
        """The user's :class:`~uptake.EngagementSnapshot` at this moment (computed on use).

        Raises:
            ConfigurationError: engagement is off on the client.
        """
        if self._engagement is None:
            raise ConfigurationError("audience uses engagement, but engagement is off")
        return self._engagement()

    @property
    def tier(self) -> str:
        """The user's engagement tier: ``"high"``, ``"medium"`` or ``"low"``."""
        return str(self.engagement.tier)


AudienceRule = Callable[[Audience], bool] | Mapping[str, Any]


def _audience(value: object) -> AudienceRule | None:
    if value is None or callable(value):
        return value
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"audience trait names must be strings, not {key!r}")
        return MappingProxyType(dict(value))
    raise ConfigurationError(
        f"audience must be a callable or a mapping of traits to match, not {value!r}"
    )


def _payload(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"payload must be a mapping, not {value!r}")
    return MappingProxyType(dict(value))


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(f"unless must be a list of milestone names, not {value!r}")
    return tuple(_name(v, "unless") for v in value)


@attrs.frozen
class Nudge:
    """A nudge: when to fire it, for whom, how often, and what to pass to the host.

    Args:
        name: Unique name, e.g. ``"try_reports"``.
        trigger: :class:`EventCount`, :class:`Reached`, :class:`NotReached`,
            :class:`Inactive` or :class:`Declining`.
        unless: Milestones that suppress it once reached.
        audience: Who may get it: a callable given an :class:`Audience` (traits,
            milestones, engagement), or a mapping of traits to match (a list or set value
            means any of them), from ``client.identify``.
        max_shows: How many times it fires per user at most (held-out fires count too).
        cooldown: Least time between two fires to one user (default one day).
        priority: Higher goes first when several are eligible at once.
        holdout: Fraction of users kept as a control group: recorded ("Nudge Held Out"),
            never nudged. Decided by a stable hash of nudge and user.
        goal: The event or milestone the nudge aims at, recorded with it to measure lift.
        goal_within: How long after the nudge the goal counts (default 14 days).
        payload: Anything the host needs to render it; opaque to uptake.
        start: Not before this time (event time).
        end: Not from this time on.

    Raises:
        ConfigurationError: a bad name, trigger, cap, holdout or window.
    """

    name: str = attrs.field()
    trigger: Trigger = attrs.field(kw_only=True)
    unless: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_strings)
    audience: AudienceRule | None = attrs.field(
        default=None, kw_only=True, converter=_audience, eq=False
    )
    max_shows: int = attrs.field(default=1, kw_only=True)
    cooldown: timedelta = attrs.field(default=timedelta(days=1), kw_only=True)
    priority: int = attrs.field(default=0, kw_only=True)
    holdout: float = attrs.field(default=0.0, kw_only=True)
    goal: str | None = attrs.field(default=None, kw_only=True)
    goal_within: timedelta = attrs.field(default=timedelta(days=14), kw_only=True)
    payload: Mapping[str, Any] = attrs.field(
        factory=dict, kw_only=True, converter=_payload, eq=False
    )
    start: datetime | None = attrs.field(default=None, kw_only=True)
    end: datetime | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        _name(self.name, "a nudge's name")
        where = f"nudge {self.name!r}"
        if not isinstance(self.trigger, _TRIGGERS):
            raise ConfigurationError(
                f"{where}: trigger must be EventCount, Reached, NotReached, Inactive or "
                f"Declining, not {self.trigger!r}"
            )
        shows = self.max_shows
        if not isinstance(shows, int) or isinstance(shows, bool) or shows < 1:
            raise ConfigurationError(f"{where}: max_shows must be a positive int")
        if not isinstance(self.cooldown, timedelta) or self.cooldown < timedelta(0):
            raise ConfigurationError(f"{where}: cooldown must be a timedelta >= 0")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise ConfigurationError(f"{where}: priority must be an int")
        holdout = self.holdout
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float)):
            raise ConfigurationError(f"{where}: holdout must be a fraction from 0 to 1")
        if not 0.0 <= holdout < 1.0:
            raise ConfigurationError(f"{where}: holdout must be at least 0 and below 1")
        if self.goal is not None:
            _name(self.goal, f"{where}: goal")
        _positive_duration(self.goal_within, f"{where}: goal_within")
        for bound in (self.start, self.end):
            if bound is not None and not isinstance(bound, datetime):
                raise ConfigurationError(f"{where}: start and end must be datetimes")
        if self.start is not None and self.end is not None and _ts(self.end) <= _ts(self.start):
            raise ConfigurationError(f"{where}: end must be after start")

    @property
    def milestones(self) -> frozenset[str]:
        """Every milestone this nudge refers to."""
        names = set(self.unless)
        if isinstance(self.trigger, (Reached, NotReached)):
            names.add(self.trigger.milestone)
        return frozenset(names)

    def held_out(self, user: str) -> bool:
        """Whether this user is in the nudge's control group (stable everywhere)."""
        if not self.holdout:
            return False
        digest = hashlib.blake2b(f"{self.name}\x00{user}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.holdout


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


@attrs.frozen
class NudgeFired:
    """What ``on_nudge`` callbacks receive, and what ``pending_nudges`` lists.

    Attributes:
        name: The nudge.
        user_id: The user (or anonymous id) to nudge.
        account_id: The account the triggering event was tracked in, when known.
        payload: The nudge's payload.
        timestamp: When it fired (event time, UTC).
        reason: Why, e.g. ``"Dashboard Viewed x3"``.
        priority: The nudge's priority.
    """

    name: str
    user_id: str
    account_id: str | None
    payload: Mapping[str, Any]
    timestamp: datetime
    reason: str
    priority: int = 0


NudgeStatus = Literal[
    "would_fire",
    "pending",
    "not_scheduled",
    "not_in_audience",
    "trigger_not_met",
    "suppressed",
    "max_shows",
    "dismissed",
    "snoozed",
    "cooldown",
    "rate_limited",
    "held_out",
]


@attrs.frozen
class NudgeExplanation:
    """Why a nudge would or would not fire for a user now (``explain_nudges``).

    Attributes:
        name: The nudge.
        status: ``"would_fire"``, ``"pending"`` (fired, not yet shown), or what stops it:
            ``"not_scheduled"``, ``"not_in_audience"``, ``"trigger_not_met"``,
            ``"suppressed"`` (an ``unless`` milestone), ``"max_shows"``, ``"dismissed"``,
            ``"snoozed"``, ``"cooldown"``, ``"rate_limited"``, ``"held_out"``.
        detail: A sentence for humans.
        until: When the blocking condition ends, for cooldown, snooze and rate limit.
        fires: How many times it fired for this user so far.
    """

    name: str
    status: NudgeStatus
    detail: str
    until: datetime | None = None
    fires: int = 0


#: One decision: ("fired" | "held_out" | "suppressed", nudge, reason).
Action = tuple[str, Nudge, str]


class NudgeRules:
    """The nudges of a client, compiled for evaluation (internal)."""

    def __init__(
        self,
        nudges: Sequence[Nudge],
        *,
        rate_limit: float | None,
        declining: Callable[[SubjectState, float], bool] | None,
        next_week: Callable[[float], float] | None = None,
    ) -> None:
        self.nudges = tuple(sorted(nudges, key=lambda n: (-n.priority, n.name)))
        self.by_name = {n.name: n for n in self.nudges}
        self.rate_limit = rate_limit
        self._declining = declining
        self._next_week = next_week if next_week is not None else _next_week
        self.by_event: dict[str, list[Nudge]] = {}
        self.by_milestone: dict[str, list[Nudge]] = {}
        self._lifetime: dict[str, int] = {}  # events counted for ever: up to how many
        self._recent: dict[str, int] = {}  # events whose latest times are kept: how many
        inactive: list[float] = []
        for n in self.nudges:
            trigger = n.trigger
            if isinstance(trigger, EventCount):
                self.by_event.setdefault(trigger.event, []).append(n)
                if trigger.within is None:
                    self._lifetime[trigger.event] = max(
                        self._lifetime.get(trigger.event, 0), trigger.n
                    )
                else:
                    self._recent[trigger.event] = max(self._recent.get(trigger.event, 0), trigger.n)
            elif isinstance(trigger, Reached):
                self.by_milestone.setdefault(trigger.milestone, []).append(n)
            elif isinstance(trigger, Inactive):
                inactive.append(trigger.after.total_seconds())
        self._inactive_after = min(inactive, default=math.inf)
        self._counted = frozenset(self._lifetime) | frozenset(self._recent)
        self._count_keys = {e: sys.intern(_COUNT + e) for e in self._lifetime}
        self._lifetime_min = {
            e: min(
                n.trigger.n
                for n in self.by_event[e]
                if isinstance(n.trigger, EventCount) and n.trigger.within is None
            )
            for e in self._lifetime
        }
        self._recent_keys = {e: sys.intern(_RECENT + e) for e in self._recent}
        self._account_milestones: frozenset[str] = frozenset()
        # Which nudge set a user's ``due`` was computed for: after a deploy that changes
        # the nudges, every user is looked at afresh once.
        self.fingerprint = hashlib.blake2b(
            repr([(n.name, n.trigger, n.start, n.end, n.cooldown) for n in self.nudges]).encode(),
            digest_size=6,
        ).hexdigest()
        self._unless = {n.name: tuple(reached_key(m) for m in n.unless) for n in self.nudges}
        self.uses_traits = any(n.audience is not None for n in self.nudges)

    def __bool__(self) -> bool:
        return bool(self.nudges)

    def watch_account_milestones(self, names: Iterable[str]) -> None:
        """Declare which milestones are account-scoped (Reached triggers on them fire for
        every member who is seen after the account reached them)."""
        self._account_milestones = frozenset(names) & frozenset(self.by_milestone)

    # ------------------------------------------------------------------ events

    def on_event(
        self,
        state: SubjectState,
        event: str,
        t: float,
        previous: float | None,
        reached_now: Iterable[str],
        user: str,
        account: str | None,
        account_reached: frozenset[str],
        engagement: Callable[[SubjectState, float], Any] | None,
        first_before: float | None = None,
    ) -> list[Action]:
        """Record an event and decide what it fires.

        ``previous`` is the last active event before this one (for ``Inactive``),
        ``first_before`` the user's first event before this one (a late event moving it
        earlier brings ``NotReached`` deadlines forward). The common event, triggering
        nothing while nothing is due, returns after a few dictionary lookups.
        """
        # An event-count trigger can only start to hold when its count just changed.
        counted = event in self._counted and self.count(state, event, t)
        records = state.nudges
        everything = (
            t >= state.due
            or (previous is not None and t - previous >= self._inactive_after)
            or (records is None or records.get(_CONFIG) != self.fingerprint)
            or (state.first is not None and first_before is not None and state.first < first_before)
        )
        if account_reached and self._account_milestones:
            # Account milestones reached by other members are news to this user too.
            fresh = self._account_news(state, account_reached)
            if fresh:
                reached_now = [*reached_now, *fresh]
        triggered = self.by_event.get(event) if counted else None
        if not everything and not triggered and not reached_now:
            return []
        context = Context(user, account, account_reached, engagement)
        if everything:
            return self.evaluate(state, t, previous, context)  # look at everything
        candidates = [n for n in triggered or () if self._open(n, state, t, context)]
        for name in reached_now:
            candidates += self.by_milestone.get(name, ())
        if not candidates:
            return []
        return self.evaluate(state, t, previous, context, candidates)

    def due_at(self, state: SubjectState, t: float, account_reached: frozenset[str]) -> bool:
        """Whether looking at a user at ``t`` without an event may decide anything."""
        if state.first is None:
            return False
        records = state.nudges or {}
        if t >= state.due or records.get(_CONFIG) != self.fingerprint:
            return True
        if state.last is not None and t - state.last >= self._inactive_after:
            return True
        wanted = account_reached & self._account_milestones
        return bool(wanted.difference(records.get(_ACCOUNT, ())))

    def look(
        self, state: SubjectState, t: float, context: Context, account_reached: frozenset[str]
    ) -> list[Action]:
        """Evaluate a user at ``t`` without an event (a ``pending_nudges`` call)."""
        fresh = self._account_news(state, account_reached) if account_reached else []
        if not self.due_at(state, t, account_reached) and not fresh:
            return []
        if t >= state.due or (state.nudges or {}).get(_CONFIG) != self.fingerprint:
            return self.evaluate(state, t, state.last, context)
        if state.last is not None and t - state.last >= self._inactive_after:
            return self.evaluate(state, t, state.last, context)
        candidates = [n for name in fresh for n in self.by_milestone.get(name, ())]
        return self.evaluate(state, t, state.last, context, candidates) if candidates else []

    def _account_news(self, state: SubjectState, account_reached: frozenset[str]) -> list[str]:
        """Account milestones named by Reached triggers that this user had not seen yet."""
        wanted = account_reached & self._account_milestones
        if not wanted:
            return []
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        seen: list[str] = records.setdefault(_ACCOUNT, [])
        fresh = sorted(wanted.difference(seen))
        seen.extend(fresh)
        return fresh

    def _open(self, nudge: Nudge, state: SubjectState, t: float, context: Context) -> bool:
        """A quick look: False when the nudge cannot fire now whatever its trigger says
        (capped, dismissed, in cooldown or snoozed, suppressed by a milestone)."""
        records = state.nudges
        record = records.get(nudge.name) if records is not None else None
        if record is not None:
            if record[_DISMISSED] or record[_FIRES] >= nudge.max_shows:
                return False
            if record[_AT] is not None and t < record[_AT] + nudge.cooldown.total_seconds():
                return False  # (state.due brings it back when the cooldown ends)
            if record[_UNTIL] is not None and t < record[_UNTIL]:
                return False
        return not any(context.has(state, key) for key in self._unless[nudge.name])

    def count(self, state: SubjectState, event: str, t: float) -> bool:
        """Count an event some ``EventCount`` trigger looks at; True if one of them may
        have started to hold (a count reached a trigger's ``n``, or a window changed)."""
        if event not in self._counted:
            return False
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        changed = False
        cap = self._lifetime.get(event)
        if cap:  # counted up to the largest n a trigger asks for: beyond, nothing changes
            key = self._count_keys[event]
            count = records.get(key, 0)
            if count < cap:
                records[key] = count + 1
                changed = count + 1 >= self._lifetime_min[event]
        keep = self._recent.get(event)
        if keep:
            key = self._recent_keys[event]
            times: list[float] = records.setdefault(key, [])
            if len(times) < keep or t > times[0]:
                times.append(t)
                times.sort()
                del times[:-keep]
                changed = True
        return changed

    # ------------------------------------------------------------------ deciding

    def evaluate(
        self,
        state: SubjectState,
        t: float,
        previous: float | None,
        context: Context,
        candidates: Iterable[Nudge] | None = None,
    ) -> list[Action]:
        """Decide, at event time ``t``, which nudges fire; change the state accordingly."""
        everything = candidates is None
        pool = (
            self.nudges
            if candidates is None
            else sorted(set(candidates), key=lambda n: (-n.priority, n.name))
        )
        records = state.nudges if state.nudges is not None else {}
        actions: list[Action] = []
        last = records.get(_LAST)
        for nudge in pool:
            status, _, _ = self._check(nudge, state, t, previous, context)
            if status != "would_fire":
                continue
            if self.rate_limit is not None and last is not None and t < last + self.rate_limit:
                record = self._record(state, nudge)
                if record[_SUPPRESSED] is None or record[_SUPPRESSED] < last:
                    record[_SUPPRESSED] = t  # recorded once per rate-limit period
                    actions.append(("suppressed", nudge, "rate_limited"))
                continue
            record = self._record(state, nudge)
            record[_FIRES] += 1
            record[_AT] = t
            last = t
            assert state.nudges is not None
            # A held-out user uses up the rate limit too: the control group must get what
            # the others get, minus this nudge, or lift would compare with another nudge.
            state.nudges[_LAST] = t
            if nudge.held_out(context.user_id):
                actions.append(("held_out", nudge, nudge.trigger.describe()))
                continue
            pending: list[str] = state.nudges.setdefault(_PENDING, [])
            if nudge.name not in pending:
                pending.append(nudge.name)
            actions.append(("fired", nudge, nudge.trigger.describe()))
        self._drop_suppressed_pending(state, context)
        if everything or actions:
            state.due = self._next_due(state, t, context)
            if everything:
                if state.nudges is None:
                    state.nudges = {}
                state.nudges[_CONFIG] = self.fingerprint
        return actions

    def _record(self, state: SubjectState, nudge: Nudge) -> list[Any]:
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        record: list[Any] | None = records.get(nudge.name)
        if record is None:
            record = records[nudge.name] = [0, None, False, None, None]
        return record

    def _check(
        self,
        nudge: Nudge,
        state: SubjectState,
        t: float,
        previous: float | None,
        context: Context,
        explain: bool = False,
    ) -> tuple[NudgeStatus, str, float | None]:
        """Where a nudge stands at ``t`` before the rate limit: (status, detail, until)."""
        if nudge.start is not None and t < _ts(nudge.start):
            return "not_scheduled", f"starts at {nudge.start}", _ts(nudge.start)
        if nudge.end is not None and t >= _ts(nudge.end):
            return "not_scheduled", f"ended at {nudge.end}", None
        # An explanation follows the evaluation order (audience, then trigger); a decision
        # asks the host's audience predicate only when the trigger holds (it may be slow).
        audience = nudge.audience is not None
        if audience and explain and not self._in_audience(nudge, state, t, context):
            return "not_in_audience", "the user is not in the audience", None
        held, why = self._trigger_holds(nudge.trigger, state, t, previous, context)
        if not held:
            return "trigger_not_met", why, None
        if audience and not explain and not self._in_audience(nudge, state, t, context):
            return "not_in_audience", "the user is not in the audience", None
        for key in self._unless[nudge.name]:
            if context.has(state, key):
                name = key[len(REACHED) :]
                return "suppressed", f"suppressed: milestone {name} reached", None
        record = (state.nudges or {}).get(nudge.name)
        if record is not None:
            if record[_DISMISSED]:
                return "dismissed", "the user dismissed it", None
            if record[_FIRES] >= nudge.max_shows:
                return "max_shows", f"fired {record[_FIRES]} of {nudge.max_shows} times", None
            if record[_UNTIL] is not None and t < record[_UNTIL]:
                return "snoozed", "snoozed by the user", record[_UNTIL]
            cooldown = nudge.cooldown.total_seconds()
            if record[_AT] is not None and t < record[_AT] + cooldown:
                return "cooldown", f"cooldown of {_span(nudge.cooldown)}", record[_AT] + cooldown
        return "would_fire", why, None

    def _trigger_holds(
        self,
        trigger: Trigger,
        state: SubjectState,
        t: float,
        previous: float | None,
        context: Context,
    ) -> tuple[bool, str]:
        records = state.nudges or {}
        if isinstance(trigger, EventCount):
            if trigger.within is None:
                count = records.get(_COUNT + trigger.event, 0)
                return count >= trigger.n, f"{trigger.event} happened {count} of {trigger.n} times"
            times = records.get(_RECENT + trigger.event, [])
            start = t - trigger.within.total_seconds()
            recent = sum(1 for x in times if start <= x <= t)
            return recent >= trigger.n, (
                f"{trigger.event} happened {recent} of {trigger.n} times in the last "
                f"{_span(trigger.within)}"
            )
        if isinstance(trigger, Reached):
            held = context.has(state, reached_key(trigger.milestone))
            return held, f"milestone {trigger.milestone} {'reached' if held else 'not reached'}"
        if isinstance(trigger, NotReached):
            if context.has(state, reached_key(trigger.milestone)):
                return False, f"milestone {trigger.milestone} reached"
            if state.first is None:
                return False, "the user was never active"
            due = state.first + trigger.after.total_seconds()
            if t < due:
                return False, f"{trigger.milestone} not reached yet; due {_iso(due)}"
            return True, f"{trigger.milestone} not reached {_span(trigger.after)} after first seen"
        if isinstance(trigger, Inactive):
            if previous is None:
                return False, "no earlier activity"
            gap = t - previous
            held = gap >= trigger.after.total_seconds()
            return held, f"last active {timedelta(seconds=round(gap))} before"
        assert isinstance(trigger, Declining)
        if self._declining is None:
            return False, "engagement is off"
        held = self._declining(state, t)
        return held, "engagement declining" if held else "engagement not declining"

    def _in_audience(self, nudge: Nudge, state: SubjectState, t: float, context: Context) -> bool:
        audience = nudge.audience
        traits = state.traits or {}
        if isinstance(audience, Mapping):
            for key, wanted in audience.items():
                value = traits.get(key)
                if isinstance(wanted, (list, tuple, set, frozenset)):
                    if value not in wanted:
                        return False
                elif value != wanted:
                    return False
            return True
        assert audience is not None
        view = Audience(
            context.user_id,
            context.account_id,
            MappingProxyType(dict(traits)),
            context.reached(state),
            context.engagement(state, t),
        )
        try:
            return bool(audience(view))
        except Exception:  # a broken predicate keeps the nudge away, never breaks tracking
            logger.exception("audience of nudge %r raised; the user is left out", nudge.name)
            return False

    def _drop_suppressed_pending(self, state: SubjectState, context: Context) -> None:
        """Forget pending nudges an ``unless`` milestone has made pointless."""
        records = state.nudges
        if not records or not records.get(_PENDING):
            return
        records[_PENDING] = [
            name
            for name in records[_PENDING]
            if name in self.by_name and not any(context.has(state, k) for k in self._unless[name])
        ]

    def _next_due(self, state: SubjectState, t: float, context: Context) -> float:
        """The earliest time after ``t`` at which time alone may change a decision.

        (Moments already past are left out: everything was just looked at, at ``t``.)
        """
        moments: list[float] = []
        records = state.nudges or {}
        for nudge in self.nudges:
            record = records.get(nudge.name)
            if record is not None and (record[_DISMISSED] or record[_FIRES] >= nudge.max_shows):
                continue
            if nudge.end is not None and t >= _ts(nudge.end):
                continue
            if nudge.start is not None:
                moments.append(_ts(nudge.start))
            trigger = nudge.trigger
            if isinstance(trigger, NotReached) and not context.has(
                state, reached_key(trigger.milestone)
            ):
                if state.first is not None:
                    moments.append(state.first + trigger.after.total_seconds())
            elif isinstance(trigger, Declining):
                moments.append(self._next_week(t))
            if record is not None:
                if record[_AT] is not None:
                    moments.append(record[_AT] + nudge.cooldown.total_seconds())
                if record[_UNTIL] is not None:
                    moments.append(record[_UNTIL])
                if record[_SUPPRESSED] is not None and self.rate_limit is not None:
                    last = records.get(_LAST)
                    if last is not None:
                        moments.append(last + self.rate_limit)
        return min((m for m in moments if m > t), default=math.inf)

    # ------------------------------------------------------------------ outcomes

    def pending(self, state: SubjectState, context: Context) -> list[tuple[Nudge, float]]:
        """The nudges fired and not yet shown, highest priority first, with fire times
        (those an ``unless`` milestone has made pointless are forgotten)."""
        self._drop_suppressed_pending(state, context)
        records = state.nudges or {}
        found = [
            (self.by_name[name], records[name][_AT])
            for name in records.get(_PENDING, ())
            if name in self.by_name and name in records
        ]
        return sorted(found, key=lambda item: (-item[0].priority, item[0].name))

    def outcome(self, state: SubjectState, name: str, kind: str, t: float, snooze: float) -> bool:
        """Record shown / clicked / dismissed / snoozed; True if the nudge was pending."""
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        pending: list[str] = records.get(_PENDING, [])
        was_pending = name in pending
        if was_pending:
            pending.remove(name)
        if kind in ("dismissed", "snoozed"):
            nudge = self.by_name[name]
            record = self._record(state, nudge)
            if kind == "snoozed":
                record[_UNTIL] = t + snooze
                state.due = min(state.due, record[_UNTIL])
            else:
                record[_DISMISSED] = True
        return was_pending

    def explain(self, state: SubjectState, t: float, context: Context) -> list[NudgeExplanation]:
        """Where every nudge stands for this user at ``t`` (changes nothing)."""
        records = state.nudges or {}
        pending = set(records.get(_PENDING, ()))
        last = records.get(_LAST)
        out: list[NudgeExplanation] = []
        taken = False  # an earlier nudge in priority order would take the rate limit
        for nudge in self.nudges:
            status, detail, until = self._check(nudge, state, t, state.last, context, True)
            fires = records.get(nudge.name, [0])[_FIRES]
            if status == "would_fire":
                limited = self.rate_limit is not None and (
                    taken or (last is not None and t < last + self.rate_limit)
                )
                if limited:
                    status, detail = "rate_limited", "the user was nudged too recently"
                    if last is not None and self.rate_limit is not None:
                        until = last + self.rate_limit
                else:
                    taken = True  # fired or held out, it takes the rate limit
                    if nudge.held_out(context.user_id):
                        status, detail = "held_out", f"in the {nudge.holdout:.0%} control group"
            if nudge.name in pending:  # fired and waiting: what the host should know first
                status, detail = "pending", "fired; waiting to be shown"
            out.append(
                NudgeExplanation(
                    name=nudge.name,
                    status=status,
                    detail=detail,
                    until=_utc(until),
                    fires=fires,
                )
            )
        return out


class Context:
    """Who is being evaluated, and lazy access to what lives outside their state."""

    __slots__ = ("_account_reached", "_engagement", "_reached", "account_id", "user_id")

    def __init__(
        self,
        user_id: str,
        account_id: str | None,
        account_reached: frozenset[str] = frozenset(),
        engagement: Callable[[SubjectState, float], Any] | None = None,
    ) -> None:
        self.user_id = user_id
        self.account_id = account_id
        self._account_reached = account_reached
        self._engagement = engagement
        self._reached: frozenset[str] | None = None

    def has(self, state: SubjectState, key: str) -> bool:
        """Whether the user or their account reached the milestone of ``reached_key`` key."""
        events = state.events
        if events is not None and key in events:
            return True
        return bool(self._account_reached) and key[len(REACHED) :] in self._account_reached

    def reached(self, state: SubjectState) -> frozenset[str]:
        """Milestones reached by the user or by their account (nudges never change it)."""
        if self._reached is None:
            own = state.reached
            both = frozenset(own) | self._account_reached if own else self._account_reached
            self._reached = both
        return self._reached

    def engagement(self, state: SubjectState, t: float) -> Callable[[], Any] | None:
        compute = self._engagement
        if compute is None:
            return None
        return lambda: compute(state, t)


def _next_week(t: float) -> float:
    """The next moment after ``t`` at which a new ISO week may have begun in some zone.

    Local midnight on Monday falls between Monday 00:00 UTC - 14 h (UTC+14) and + 12 h
    (UTC-12): looking at both ends of that band each week catches every zone's new week.
    """
    day = math.floor(t / _DAY)
    monday = (day - (day + 3) % 7) * _DAY  # this ISO week's Monday, 00:00 UTC
    for start in (monday, monday + 7 * _DAY):
        for edge in (start - 14 * 3600.0, start + 12 * 3600.0):
            if edge > t:
                return edge
    raise AssertionError("unreachable: next Monday's band is after t")


def _span(d: timedelta) -> str:
    """A duration for people: "1 day", "2 h", "30 min", "45 s"."""
    seconds = d.total_seconds()
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{seconds:g} s"


def _utc(t: float | None) -> datetime | None:
    """A UTC datetime, or None for no time (or one beyond what datetime holds)."""
    if t is None:
        return None
    try:
        return datetime.fromtimestamp(t, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()
