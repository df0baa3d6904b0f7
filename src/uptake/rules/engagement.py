"""The engagement snapshot: how often, how broadly and how deeply a user or account engages.

Components, each in [0, 1] and computed from distinct days, never raw counts (so bursts and
scripted spam do not inflate them):

- frequency: active days in the last 28 / 28;
- breadth: distinct core features used in the last 28 days / number of core features
  (without a declaration: the features seen so far);
- depth: per feature used in the last 28 days, its distinct days capped at a target
  (default 8), averaged and divided by the target.

Accounts add user breadth (members active in the last 28 days / seats, when the account's
``seats`` trait is known) and touchpoints (days with a customer-success event the host
declares, in a window, against a target). The score is the weighted mean, 0-100; the tier
follows from thresholds. *Declining*: the three latest complete ISO weeks each at most 75%
of the mean of the four weeks before, that mean being at least 2 (active days for a user,
weekly active members for an account).

:class:`EngagementRules` keeps the state these need (pure, no clock) and computes the
snapshot for a given moment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import attrs

from ..definitions import compose_score
from ..errors import ConfigurationError
from .calendar import Calendar, count_days, mark_day, week_of
from .state import SIGNAL_STALE, SubjectState, feature_days, feature_first_use

__all__ = ["Engagement", "EngagementRules", "EngagementSnapshot"]

#: Days a feature or member mask covers: 28 for the components, 8 weeks for "declining".
MASK_DAYS = 64
#: Active days kept for the snapshot: the 7 complete weeks "declining" compares, plus the
#: current week, plus a little lateness.
ACTIVITY_DAYS = 63
WINDOW = 28
USER_COMPONENTS = ("frequency", "breadth", "depth")
ACCOUNT_COMPONENTS = ("frequency", "breadth", "depth", "user_breadth", "touchpoints")
_USER_WEIGHTS = {"frequency": 0.4, "breadth": 0.3, "depth": 0.3}
# A common customer-success weighting: login frequency 20%, core feature usage 30%, user
# breadth 25%, touchpoints 25%.
_ACCOUNT_WEIGHTS = {
    "frequency": 0.2,
    "breadth": 0.15,
    "depth": 0.15,
    "user_breadth": 0.25,
    "touchpoints": 0.25,
}


def _weights(value: object, allowed: tuple[str, ...], what: str) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must map component names to weights, not {value!r}")
    out: dict[str, float] = {}
    for name, weight in value.items():
        if name not in allowed:
            raise ConfigurationError(f"{what}: unknown component {name!r}; use {allowed}")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ConfigurationError(
                f"{what}[{name!r}] must be a finite number >= 0, not {weight!r}"
            )
        out[name] = float(weight)
    if not any(out.values()):
        raise ConfigurationError(f"{what} must give some component a weight above 0")
    return MappingProxyType(out)


def _user_weights(value: object) -> Mapping[str, float]:
    return _weights(value, USER_COMPONENTS, "weights")


def _account_weights(value: object) -> Mapping[str, float]:
    return _weights(value, ACCOUNT_COMPONENTS, "account_weights")


def _names(value: object, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{what} must be a list of names, not {value!r}")
    names = tuple(dict.fromkeys(value))
    if any(not isinstance(n, str) or not n for n in names):
        raise ConfigurationError(f"{what} must hold non-empty strings")
    return names


def _core(value: object) -> tuple[str, ...] | None:
    names = _names(value, "core_features")
    if names == ():
        raise ConfigurationError("core_features must not be empty (None: the features seen)")
    return names


def _touchpoints(value: object) -> tuple[str, ...]:
    return _names(value, "touchpoints") or ()


def _positive_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{what} must be a positive int, not {value!r}")
    return value


def _depth_target(value: object) -> int:
    return _positive_int(value, "depth_target")


def _touchpoint_target(value: object) -> int:
    return _positive_int(value, "touchpoint_target")


def _eq_mapping(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return dict(a) == dict(b)


@attrs.frozen
class Engagement:
    """How the engagement snapshot is computed (``Client(engagement=...)``).

    Args:
        core_features: The features that make up breadth (names given to
            ``feature_used``). Default ``None``: every feature the subject has used.
        weights: User score weights over ``frequency``, ``breadth``, ``depth`` (default
            0.4 / 0.3 / 0.3). Weights are normalised: only their ratios matter.
        account_weights: Account score weights over those plus ``user_breadth`` and
            ``touchpoints`` (default 0.2 / 0.15 / 0.15 / 0.25 / 0.25). A component the
            account has no data for (no ``seats`` trait, no touchpoints declared) is left
            out and the others are rescaled.
        high: Lowest score of the ``"high"`` tier (default 70).
        medium: Lowest score of the ``"medium"`` tier (default 40); below it, ``"low"``.
        depth_target: Distinct days of use in 28 that count as full depth for a feature.
        touchpoints: Event names that are customer-success touchpoints for an account
            (e.g. ``"QBR Attended"``).
        touchpoint_window: How far back touchpoints count (default 90 days, at most 365).
        touchpoint_target: Touchpoint days in that window that count as full marks.
        seats_trait: The ``group`` trait holding the seats an account bought.
        signals: Record "Engagement Tier Changed" and "Engagement Declining" events when a
            user's or account's tier or declining flag changes, even with no
            ``on_engagement_change`` callback (registering one turns them on too).

    Raises:
        ConfigurationError: an unknown component, a negative or all-zero weight, tiers out
            of order, a target below 1, a window out of range.
    """

    core_features: tuple[str, ...] | None = attrs.field(default=None, converter=_core)
    weights: Mapping[str, float] = attrs.field(
        default=_USER_WEIGHTS,
        converter=_user_weights,
        eq=attrs.cmp_using(eq=_eq_mapping),
        hash=False,
    )
    account_weights: Mapping[str, float] = attrs.field(
        default=_ACCOUNT_WEIGHTS,
        converter=_account_weights,
        eq=attrs.cmp_using(eq=_eq_mapping),
        hash=False,
    )
    high: float = 70
    medium: float = 40
    depth_target: int = attrs.field(default=8, converter=_depth_target)
    touchpoints: tuple[str, ...] = attrs.field(default=(), converter=_touchpoints)
    touchpoint_window: timedelta = timedelta(days=90)
    touchpoint_target: int = attrs.field(default=3, converter=_touchpoint_target)
    seats_trait: str = "seats"
    signals: bool = False

    def __attrs_post_init__(self) -> None:
        for name in ("high", "medium"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ConfigurationError(f"{name} must be a number (a score 0-100), not {value!r}")
        if not 0 < self.medium < self.high <= 100:
            raise ConfigurationError(
                f"tiers must satisfy 0 < medium < high <= 100, not medium={self.medium}, "
                f"high={self.high}"
            )
        window = self.touchpoint_window
        if not isinstance(window, timedelta) or not timedelta(days=1) <= window <= timedelta(
            days=365
        ):
            raise ConfigurationError("touchpoint_window must be a timedelta of 1 to 365 days")
        if not isinstance(self.seats_trait, str) or not self.seats_trait:
            raise ConfigurationError("seats_trait must be a non-empty string")
        if not isinstance(self.signals, bool):
            raise ConfigurationError(f"signals must be True or False, not {self.signals!r}")

    def tier(self, score: float) -> Literal["high", "medium", "low"]:
        """The tier a score falls in."""
        if score >= self.high:
            return "high"
        if score >= self.medium:
            return "medium"
        return "low"


@attrs.frozen
class EngagementSnapshot:
    """How engaged a user or an account is at one moment (``Client.engagement``).

    Components are in [0, 1]; ``score`` is their weighted mean times 100. A subject never
    seen has an all-zero snapshot with ``first_seen`` None.

    Attributes:
        user_id: The user (None for an account snapshot).
        account_id: The account (None for a user snapshot).
        at: The moment the snapshot describes (UTC).
        score: 0-100.
        tier: ``"high"``, ``"medium"`` or ``"low"``.
        frequency: Active days in the last 28 / 28.
        breadth: Core features used in the last 28 days / core features.
        depth: Mean distinct days per feature used in the last 28 days, over the target.
        active_days_7: Active days in the last 7 days (including today).
        active_days_28: Active days in the last 28 days.
        feature_days: Per feature used in the last 28 days, its distinct days of use.
        weekly_activity: The last 8 complete ISO weeks, oldest first: active days (user)
            or active members (account).
        declining: The three latest complete weeks each at most 75% of the mean of the
            four before (that mean at least 2).
        milestones_reached: Milestone name to the time it was reached.
        milestones_missed: Milestones whose deadline passed unreached.
        first_seen: The first active event, or None.
        last_seen: The latest active event, or None.
        active_users_28: Account only: members active in the last 28 days.
        seats: Account only: the ``seats`` trait, when known.
        user_breadth: Account only: ``active_users_28 / seats`` (None without seats).
        touchpoints: Account only: touchpoint days in the window over the target (None
            when no touchpoints are declared).
    """

    user_id: str | None
    account_id: str | None
    at: datetime
    score: int
    tier: Literal["high", "medium", "low"]
    frequency: float
    breadth: float
    depth: float
    active_days_7: int
    active_days_28: int
    feature_days: Mapping[str, int]
    weekly_activity: tuple[int, ...]
    declining: bool
    milestones_reached: Mapping[str, datetime]
    milestones_missed: tuple[str, ...]
    first_seen: datetime | None
    last_seen: datetime | None
    active_users_28: int | None = None
    seats: int | None = None
    user_breadth: float | None = None
    touchpoints: float | None = None


def _clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


class _Measure(NamedTuple):
    """What a snapshot and a score are computed from."""

    components: dict[str, float]
    weights: Mapping[str, float]
    weekly: tuple[int, ...]
    used: dict[str, int]
    active_7: int
    active_28: int
    extra: dict[str, Any]


def _utc(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


class EngagementRules:
    """Keeps the engagement state of one scope and computes snapshots (internal)."""

    def __init__(self, config: Engagement, calendar: Calendar, *, account: bool) -> None:
        self.config = config
        self.calendar = calendar
        self.account = account
        self._touchpoints = frozenset(config.touchpoints) if account else frozenset()
        self._touch_width = config.touchpoint_window.days + 7  # some room for late events
        self._seats_trait = config.seats_trait

    def apply(self, state: SubjectState, event: str, day: int, member: str | None) -> None:
        """Record one active event of an account, on calendar day ``day``.

        (Active days and feature days are kept by the milestone rules, asked to keep
        ``ACTIVITY_DAYS`` and ``MASK_DAYS`` of them.)
        """
        if member is not None:
            members = state.members
            if members is None:
                members = state.members = {}
            before = members.get(member, 0)
            after = members[member] = mark_day(before, day, MASK_DAYS)
            if after >> MASK_DAYS != before >> MASK_DAYS and len(members) > 64:
                self._trim_members(members, day)
        if event in self._touchpoints:
            state.touch = mark_day(state.touch, day, self._touch_width)

    @staticmethod
    def _trim_members(members: dict[str, int], day: int) -> None:
        """Forget members not active in the days a mask covers (on a member's new day)."""
        oldest = day - MASK_DAYS
        for name in [n for n, packed in members.items() if packed >> MASK_DAYS < oldest]:
            del members[name]

    def group(self, state: SubjectState, traits: Mapping[str, Any]) -> None:
        """Record the account traits engagement reads (seats)."""
        seats = traits.get(self._seats_trait)
        if (
            isinstance(seats, (int, float))
            and not isinstance(seats, bool)
            and math.isfinite(seats)
            and seats >= 1
            and int(seats) != state.seats
        ):
            state.seats = int(seats)
            if state.signalled:  # user breadth changed: compute the score at the next event
                state.signalled |= SIGNAL_STALE

    def snapshot(
        self,
        state: SubjectState | None,
        now: float,
        *,
        subject: str,
        reached: Mapping[str, float],
        missed: Iterable[str],
    ) -> EngagementSnapshot:
        """The snapshot of a subject at event time ``now``."""
        state = state if state is not None else SubjectState()
        m = self._measure(state, now)
        points = compose_score(m.components, m.weights)
        return EngagementSnapshot(
            user_id=None if self.account else subject,
            account_id=subject if self.account else None,
            at=datetime.fromtimestamp(now, timezone.utc),
            score=points,
            tier=self.config.tier(points),
            frequency=round(m.components["frequency"], 4),
            breadth=round(_clip(m.components["breadth"]), 4),
            depth=round(_clip(m.components["depth"]), 4),
            active_days_7=m.active_7,
            active_days_28=m.active_28,
            feature_days=MappingProxyType(m.used),
            weekly_activity=m.weekly,
            declining=declining(m.weekly),
            milestones_reached=MappingProxyType(
                {
                    name: datetime.fromtimestamp(at, timezone.utc)
                    for name, at in reached.items()
                    if at <= now
                }
            ),
            milestones_missed=tuple(missed),
            first_seen=_utc(state.first),
            last_seen=_utc(state.last),
            **m.extra,
        )

    def score_at(self, state: SubjectState, now: float) -> tuple[int, bool]:
        """The snapshot's ``score`` and ``declining`` at event time ``now``, alone."""
        m = self._measure(state, now)
        return compose_score(m.components, m.weights), declining(m.weekly)

    def _measure(self, state: SubjectState, now: float) -> _Measure:
        """Compute the components of a subject's engagement at event time ``now``."""
        config = self.config
        today = self.calendar.day_of(now)
        start = today - WINDOW + 1
        days = [d for d in (state.days or ()) if d <= today]
        active_28 = sum(1 for d in days if d >= start)
        active_7 = sum(1 for d in days if d > today - 7)
        used = {
            name: n
            for name, packed in sorted((state.features or {}).items())
            if (n := count_days(feature_days(packed), start, today, MASK_DAYS))
        }
        frequency = active_28 / WINDOW
        core = config.core_features
        if core is None:  # the features seen by then
            seen = sum(1 for v in (state.features or {}).values() if feature_first_use(v) <= now)
            breadth = len(used) / seen if seen else 0.0
        else:
            breadth = sum(1 for name in core if name in used) / len(core)
        target = config.depth_target
        if used:
            depth = sum(min(n, target) for n in used.values()) / len(used)
            depth /= target
        else:
            depth = 0.0
        # Complete ISO weeks before the current one, oldest first.
        this_week = week_of(today)
        weeks = range(this_week - 8, this_week)
        components = {"frequency": frequency, "breadth": breadth, "depth": depth}
        extra: dict[str, Any] = {}
        if self.account:
            members = state.members or {}
            active_users = sum(
                1 for packed in members.values() if count_days(packed, start, today, MASK_DAYS)
            )
            weekly = tuple(self._members_in_week(members, w) for w in weeks)
            user_breadth = _clip(active_users / state.seats) if state.seats else None
            touch = None
            if config.touchpoints:
                first = today - config.touchpoint_window.days + 1
                n = count_days(state.touch, first, today, self._touch_width)
                touch = _clip(n / config.touchpoint_target)
            extra = {
                "active_users_28": active_users,
                "seats": state.seats,
                "user_breadth": user_breadth,
                "touchpoints": touch,
            }
            if user_breadth is not None:
                components["user_breadth"] = user_breadth
            if touch is not None:
                components["touchpoints"] = touch
            weights = config.account_weights
        else:
            per_week = {w: 0 for w in weeks}
            for d in days:
                w = week_of(d)
                if w in per_week:
                    per_week[w] += 1
            weekly = tuple(per_week.values())
            weights = config.weights
        return _Measure(components, weights, weekly, used, active_7, active_28, extra)

    def declining_at(self, state: SubjectState, now: float) -> bool:
        """Whether a user's activity is declining at event time ``now`` (the snapshot's
        ``declining``, computed alone)."""
        this_week = week_of(self.calendar.day_of(now))
        per_week = dict.fromkeys(range(this_week - 7, this_week), 0)
        for d in state.days or ():
            w = week_of(d)
            if w in per_week:
                per_week[w] += 1
        return declining(tuple(per_week.values()))

    @staticmethod
    def _members_in_week(members: Mapping[str, int], week: int) -> int:
        monday = week * 7 - 3
        return sum(
            1 for packed in members.values() if count_days(packed, monday, monday + 6, MASK_DAYS)
        )


def declining(weekly: tuple[int, ...]) -> bool:
    """The decline rule over weekly figures, oldest first (at least 7 weeks)."""
    if len(weekly) < 7:
        return False
    recent, before = weekly[-3:], weekly[-7:-3]
    baseline = sum(before) / 4
    return baseline >= 2 and all(x <= 0.75 * baseline for x in recent)
