"""The nudge specification: what a host declares (triggers, :class:`Nudge`) and what it
gets back (:class:`NudgeFired`, :class:`NudgeExplanation`, the :class:`Audience` view).

Value objects only: deciding is :mod:`uptake.rules.nudge_decide`, explaining
:mod:`uptake.rules.nudge_explain`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Literal

import attrs

from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_CHANNEL",
    "Action",
    "Audience",
    "AudienceRule",
    "Declining",
    "EventCount",
    "Inactive",
    "NotReached",
    "Nudge",
    "NudgeExplanation",
    "NudgeFired",
    "NudgeStatus",
    "Reached",
    "Trigger",
]


#: The channel of a nudge that names none: shown inside the product.
DEFAULT_CHANNEL = "in_app"


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
        window = f" within {span(self.within)}" if self.within is not None else ""
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
        return f"{self.milestone} not reached after {span(self.after)}"


@attrs.frozen
class Inactive:
    """Holds when the user comes back after at least ``after`` without an active event."""

    after: timedelta

    def __attrs_post_init__(self) -> None:
        _positive_duration(self.after, "Inactive after")

    def describe(self) -> str:
        return f"back after {span(self.after)} inactive"


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
            means any of them), from ``client.identify``. A callable is asked last, only
            when everything else lets the nudge fire, and never while the store is locked
            (it may read the store or call the client).
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
        channel: Where the host delivers it: ``"in_app"`` (default), ``"email"``, any
            name. Budgets, quiet hours and the rate limit count each channel apart, so
            in-product and out-of-product nudges do not starve each other.

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
    channel: str = attrs.field(default=DEFAULT_CHANNEL, kw_only=True)

    def __attrs_post_init__(self) -> None:
        _name(self.name, "a nudge's name")
        where = f"nudge {self.name!r}"
        _name(self.channel, f"{where}: channel")
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
        start, end = self.start, self.end
        if start is not None and end is not None and timestamp_of(end) <= timestamp_of(start):
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


def in_global_holdout(user: str, fraction: float) -> bool:
    """Whether a user is in the client's global holdout of ``fraction`` (no nudge fires).

    A stable hash of the user id alone, salted apart from every nudge's own holdout hash
    (a nudge name never holds a NUL), so the two are independent and the same in every
    process and language that hashes the same way.
    """
    if not fraction:
        return False
    digest = hashlib.blake2b(f"\x00global\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def timestamp_of(value: datetime) -> float:
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
        channel: The nudge's channel (``"in_app"``, ``"email"``...): where to deliver it.
    """

    name: str
    user_id: str
    account_id: str | None
    payload: Mapping[str, Any]
    timestamp: datetime
    reason: str
    priority: int = 0
    channel: str = DEFAULT_CHANNEL


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
    "over_budget",
    "quiet_hours",
    "held_out",
    "global_holdout",
]


@attrs.frozen
class NudgeExplanation:
    """Why a nudge would or would not fire for a user now (``explain_nudges``).

    It is what the decision for the user's next event at that moment does (the same
    function decides and explains): ``"would_fire"`` and ``"held_out"`` are what that
    event fires or holds out, every other status a nudge it leaves alone (unless the event
    itself changes a trigger, e.g. counts the event an ``EventCount`` waits for).

    Attributes:
        name: The nudge.
        status: ``"would_fire"``, ``"held_out"`` (would fire, but the user is in its
            control group), ``"global_holdout"`` (would fire, but the user is in the
            client's ``global_holdout``: no nudge ever fires for them), ``"pending"``
            (fired, not yet shown, and not due to fire again), or what stops it:
            ``"not_scheduled"``, ``"not_in_audience"``,
            ``"trigger_not_met"``, ``"suppressed"`` (an ``unless`` milestone),
            ``"max_shows"``, ``"dismissed"``, ``"snoozed"``, ``"cooldown"``,
            ``"over_budget"`` (the user's ``nudge_budget`` for its channel is spent),
            ``"quiet_hours"`` (deferred: it is night where the user is),
            ``"rate_limited"``.
        detail: A sentence for humans.
        until: When the blocking condition ends, for cooldown, snooze, budget, quiet
            hours and rate limit.
        fires: How many times it fired for this user so far.
        pending: Whether it fired and waits to be shown (also when it would fire again).
    """

    name: str
    status: NudgeStatus
    detail: str
    until: datetime | None = None
    fires: int = 0
    pending: bool = False


#: One decision: ("fired" | "held_out" | "global_holdout" | "suppressed", nudge, reason).
Action = tuple[str, Nudge, str]


def span(d: timedelta) -> str:
    """A duration for people: "1 day", "2 h", "30 min", "45 s"."""
    seconds = d.total_seconds()
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{seconds:g} s"


def utc(t: float | None) -> datetime | None:
    """A UTC datetime, or None for no time (or one beyond what datetime holds)."""
    if t is None:
        return None
    try:
        return datetime.fromtimestamp(t, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()
