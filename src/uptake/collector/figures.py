"""The report's figures from counts: one function per figure, shared by the engines.

The SQL engine (:mod:`.engine`) and the plain-Python reference (:mod:`.reference`) both
count; these functions turn the counts into what the report shows (a share, a score, a
quantile, a p-value), so each is written once and the two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, timedelta, tzinfo
from typing import Any

from ..definitions import compose_score, writable
from ..rules.engagement import Engagement, declining
from .lift import ArmSums, Lift, lift_of
from .metrics import (
    AccountStat,
    FeatureStat,
    LifecycleWeek,
    MilestoneStat,
    NudgeStat,
    ProgrammeStat,
    Report,
    RetentionCohort,
    SegmentStat,
    SessionWeek,
)

_EPOCH = date(1970, 1, 1)
MONTH = 30  # MAU: trailing 30 days
WINDOW = 28  # engagement: the last 28 days
#: The events a session view reads.
SESSION_STARTED, SESSION_ENDED = "Session Started", "Session Ended"


def inactive_report(last_day: date | None, **base: object) -> Report:
    """The report of events with no activity in them: every activity figure empty.

    ``base`` holds the fields both engines compute whatever the activity (counts read,
    milestones, nudges, sessions, settings).
    """
    return Report(
        users=0,
        first_day=None,
        last_day=last_day,
        daily=(),
        stickiness=None,
        interactions_per_user=None,
        l7=(0,) * 7,
        l28=(0,) * 28,
        lifecycle=(),
        features=(),
        accounts_engagement=(),
        **base,  # type: ignore[arg-type]
    )


def zone_name(tz: tzinfo | None) -> str:
    """The name a report gives its time zone."""
    return getattr(tz, "key", None) or (str(tz) if tz is not None else "UTC")


def name_of(value: object) -> str | None:
    """A non-empty string from event data, writable (a lone surrogate becomes U+FFFD)."""
    if not isinstance(value, str) or not value:
        return None
    return writable(value)


def positive(value: object) -> float | None:
    """A finite number above zero as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def took_of(value: object) -> float | None:
    """A milestone's ``time_to_reach_s`` in seconds: 0, or a positive number, else None."""
    return 0.0 if value == 0 else positive(value)


def duration_of(value: object) -> float | None:
    """A session's ``duration_s``: a finite number of seconds, 0 or more, else None."""
    return 0.0 if value == 0 and not isinstance(value, bool) else positive(value)


def seats_of(value: object) -> float | None:
    """An account's seats from a group trait, as the SDK reads it: a whole number >= 1."""
    number = positive(value)
    return float(int(number)) if number is not None and number >= 1 else None


def trait_of(value: object) -> str | None:
    """A trait's value as a segment name: a non-empty string, or a number; else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    return name_of(value)


def day_date(day: int) -> date:
    """The date of a day number (days since 1970-01-01)."""
    return _EPOCH + timedelta(days=day)


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    return sorted_values[max(math.ceil(q * len(sorted_values)) - 1, 0)]


def median(sorted_values: list[float]) -> float:
    """The median of a sorted, non-empty list."""
    n = len(sorted_values)
    mid = n // 2
    if n % 2:
        return sorted_values[mid]
    return (sorted_values[mid - 1] + sorted_values[mid]) / 2


def lifecycle_week(
    week: int, last: int, active: int, new: int, returning: int, dormant: int
) -> LifecycleWeek:
    """One ISO week of the lifecycle from its counts."""
    monday = week * 7 - 3
    resurrecting = active - new - returning
    return LifecycleWeek(
        week_start=day_date(monday),
        active=active,
        new=new,
        returning=returning,
        resurrecting=resurrecting,
        dormant=dormant,
        quick_ratio=(new + resurrecting) / dormant if dormant else None,
        complete=monday + 6 <= last,
    )


def session_week(week: int, last: int, sessions: int, users: int) -> SessionWeek:
    """One ISO week of sessions from its counts."""
    monday = week * 7 - 3
    return SessionWeek(
        week_start=day_date(monday),
        sessions=sessions,
        active_users=users,
        per_user=sessions / users if users else None,
        complete=monday + 6 <= last,
    )


def last_complete_week(last: int) -> int:
    """The latest ISO week that ends on or before day ``last``."""
    week = (last + 3) // 7
    return week if week * 7 - 3 + 6 <= last else week - 1


def retention_cohort(week: int, users: int, active: list[int]) -> RetentionCohort:
    """A retention cohort from its size and its active users week by week."""
    return RetentionCohort(
        week_start=day_date(week * 7 - 3),
        users=users,
        active=tuple(active),
        share=tuple(n / users for n in active),
    )


def milestone_stat(
    name: str, scope: str, reached: int, total: int, took_days: list[float]
) -> MilestoneStat:
    """A milestone's figures: ``took_days`` are the times to reach it, in days, sorted."""
    return MilestoneStat(
        name=name,
        scope=scope,
        reached=reached,
        share=reached / total,
        median_days=median(took_days) if took_days else None,
        p90_days=quantile(took_days, 0.9) if took_days else None,
    )


def feature_stat(name: str, users_30: int, days_30: int, users_ever: int, mau: int) -> FeatureStat:
    """A feature's figures: ``days_30`` adds up each adopting user's days of use."""
    return FeatureStat(
        name=name,
        users_30=users_30,
        adoption=users_30 / mau if mau else 0.0,
        frequency=days_30 / users_30 if users_30 else 0.0,
        users_ever=users_ever,
    )


def _clip(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def account_stat(
    config: Engagement,
    account: str,
    active_days: int,
    features: Mapping[str, int],
    active_users: int,
    users: int,
    weekly: tuple[int, ...],
    seats: float | None,
    touch_days: int,
) -> AccountStat:
    """An account's score as the SDK's snapshot computes it, from its counts.

    Args:
        config: The engagement settings.
        account: The account.
        active_days: Its active days in the last 28.
        features: Every feature it ever used, with its days of use in the last 28.
        active_users: Members active in the last 28 days.
        users: Members ever active.
        weekly: Weekly active members in the 8 complete weeks before this one.
        seats: Its seats trait, if known.
        touch_days: Days with a touchpoint in the touchpoint window.
    """
    frequency = active_days / WINDOW
    used = {f: n for f, n in features.items() if n}
    if config.core_features is None:
        breadth = len(used) / len(features) if features else 0.0
    else:
        breadth = sum(1 for f in config.core_features if f in used) / len(config.core_features)
    target = config.depth_target
    depth = sum(min(n, target) for n in used.values()) / len(used) / target if used else 0.0
    components = {"frequency": frequency, "breadth": breadth, "depth": depth}
    user_breadth = _clip(active_users / seats) if seats else None
    if user_breadth is not None:
        components["user_breadth"] = user_breadth
    touch = None
    if config.touchpoints:
        touch = _clip(touch_days / config.touchpoint_target)
        components["touchpoints"] = touch
    points = compose_score(components, config.account_weights)
    return AccountStat(
        account=account,
        score=points,
        tier=config.tier(points),
        frequency=round(frequency, 4),
        breadth=round(_clip(breadth), 4),
        depth=round(_clip(depth), 4),
        user_breadth=user_breadth,
        touchpoints=touch,
        active_users_28=active_users,
        users=users,
        seats=seats,
        weekly_active_users=weekly,
        declining=declining(weekly),
    )


#: What a nudge decision is counted as, from its event name ("Nudge Fired": "fired").
NUDGE_KINDS = ("fired", "held out", "global holdout", "shown", "clicked", "dismissed")


#: Assignment sums by (arm, goal window ended): ``arm`` is "fired", "held out" or
#: "global holdout"; with the latest assignment time of any of them.
Arms = Mapping[tuple[str, bool], ArmSums]
#: How long without a new assignment before an experiment counts as no longer growing.
STILL_GROWING_S = 7 * 86_400.0


def decision_kind(event: str, data: Mapping[str, object]) -> str:
    """Return what a "Nudge ..." event counts as: "fired", "held out", "global holdout" (held out
    with a positive ``global_holdout``), "shown" ..."""
    kind = event[len("Nudge ") :].lower()
    if kind == "held out" and positive(data.get("global_holdout")) is not None:
        return "global holdout"
    return kind


def assignment_lift(
    arms: Arms, last_assigned: float | None, end: float, control: str = "held out"
) -> tuple[Lift | None, int]:
    """Return the lift by assignment of "fired" over ``control`` among users whose window has
    ended, and how many assigned users are still inside it."""
    treated = arms.get(("fired", True), ArmSums())
    held = arms.get((control, True), ArmSums())
    pending = sum(s.n for (arm, done), s in arms.items() if not done and arm in ("fired", control))
    growing = last_assigned is not None and last_assigned >= end - STILL_GROWING_S
    return lift_of(treated, held, growing=growing), pending


def _itt(lift: Lift | None, pending: int) -> dict[str, Any]:
    if lift is None:
        return {"pending": pending}
    return {
        "treated": lift.treated,
        "control": lift.control,
        "pending": pending,
        "treated_rate": lift.treated_rate,
        "control_rate": lift.control_rate,
        "itt_lift": lift.lift,
        "itt_low": lift.low,
        "itt_high": lift.high,
        "mde": lift.mde,
        "variance_reduction": lift.variance_reduction,
        "verdict": lift.verdict,
    }


def programme_stat(arms: Arms, last_assigned: float | None, end: float) -> ProgrammeStat | None:
    """Return the programme's figures against the global holdout (None without one)."""
    if not any(arm == "global holdout" for arm, _ in arms):
        return None
    lift, pending = assignment_lift(arms, last_assigned, end, control="global holdout")
    fields: dict[str, Any] = dict.fromkeys(
        (
            "treated_rate",
            "control_rate",
            "itt_lift",
            "itt_low",
            "itt_high",
            "mde",
            "variance_reduction",
            "verdict",
        )
    )
    fields.update(treated=0, control=0)
    fields.update(_itt(lift, pending))
    return ProgrammeStat(outcome="retained: active 28-35 days after assignment", **fields)


def nudge_stat(
    name: str,
    users: Mapping[str, int],
    suppressed: int,
    goal: tuple[str, float] | None,
    converted: Mapping[str, int],
    itt: tuple[Lift | None, int] | None = None,
) -> NudgeStat:
    """A nudge's figures from its users per decision and its conversions per group, and
    its lift by assignment (``itt``, from :func:`assignment_lift`)."""
    n_shown, n_held = users.get("shown", 0), users.get("held out", 0)
    shown_conv, held_conv = converted.get("shown", 0), converted.get("held out", 0)
    shown_rate = shown_conv / n_shown if goal and n_shown else None
    held_rate = held_conv / n_held if goal and n_held else None
    lift = p_value = None
    if shown_rate is not None and held_rate is not None:
        lift = shown_rate - held_rate
        p_value = _two_proportion_p(shown_conv, n_shown, held_conv, n_held)
    return NudgeStat(
        name=name,
        fired=users.get("fired", 0),
        held_out=n_held,
        shown=n_shown,
        clicked=users.get("clicked", 0),
        dismissed=users.get("dismissed", 0),
        suppressed=suppressed,
        goal=goal[0] if goal else None,
        goal_within_days=goal[1] / 86_400 if goal else None,
        shown_converted=shown_conv if goal else 0,
        held_out_converted=held_conv if goal else 0,
        shown_rate=shown_rate,
        held_out_rate=held_rate,
        lift=lift,
        p_value=p_value,
        global_held_out=users.get("global holdout", 0),
        **(_itt(*itt) if goal and itt is not None else {}),
    )


def _two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of a pooled two-proportion z-test; None when it is undefined."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x1 / n1 - x2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


def by_share(milestones: list[MilestoneStat]) -> tuple[MilestoneStat, ...]:
    """Milestones in report order: the most reached first."""
    return tuple(sorted(milestones, key=lambda m: (-m.share, m.name)))


def by_adoption(features: list[FeatureStat]) -> tuple[FeatureStat, ...]:
    """Features in report order: the most adopted first."""
    return tuple(sorted(features, key=lambda f: (-f.adoption, -f.users_ever, f.name)))


def by_concern(accounts: list[AccountStat]) -> tuple[AccountStat, ...]:
    """Accounts in report order: declining first, then the lowest scores."""
    return tuple(sorted(accounts, key=lambda a: (not a.declining, a.score, a.account)))


def by_size(segments: list[SegmentStat]) -> tuple[SegmentStat, ...]:
    """Segments in report order: the most users first."""
    return tuple(sorted(segments, key=lambda s: (-s.users, s.segment)))
