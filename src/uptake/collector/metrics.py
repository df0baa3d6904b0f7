"""The engagement report's numbers, computed from stored events (definitions: docs/report.md).

:func:`compute` takes :data:`Record` tuples (see :mod:`uptake.collector.sources`) and
returns one frozen :class:`Report`. Everything is counted in distinct users and calendar
days in one time zone, as the SDK's own engagement snapshot is, so the two agree.

The figures are computed by the SQL engine (:mod:`uptake.collector.engine`, DuckDB in
process by default, or chdb) over a typed table of the events; :mod:`.reference` computes
the same in plain Python, the yardstick the engine is tested against. The functions here
that turn counts into a figure (a share, a score, a p-value) are shared by both, so each
is written once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, timedelta, tzinfo
from typing import Any

import attrs

from ..definitions import OWN_EVENTS, compose_score
from ..rules.engagement import Engagement, declining

__all__ = [
    "OWN_EVENTS",
    "AccountStat",
    "DailyActive",
    "FeatureStat",
    "LifecycleWeek",
    "MilestoneStat",
    "NudgeStat",
    "Record",
    "Report",
    "RetentionCohort",
    "SegmentStat",
    "SessionWeek",
    "compute",
]

#: One event as the report reads it: (time, user, account, type, event name, data).
#: ``data`` is the properties of uptake's own events and of "Feature Used", the traits
#: of a group call, else None.
Record = tuple[float, str, "str | None", str, "str | None", "Mapping[str, Any] | None"]

_EPOCH = date(1970, 1, 1)
MONTH = 30  # MAU: trailing 30 days
WINDOW = 28  # engagement: the last 28 days
#: The events a session view reads.
SESSION_STARTED, SESSION_ENDED = "Session Started", "Session Ended"


@attrs.frozen
class DailyActive:
    """Distinct active users on one day and in the 7 and 30 days that end on it."""

    day: date
    dau: int
    wau: int
    mau: int


@attrs.frozen
class LifecycleWeek:
    """One ISO week: users new, returning, resurrecting and gone dormant (vs the week before).

    ``quick_ratio`` is (new + resurrecting) / dormant, None when nobody went dormant.
    ``complete`` is False for the week the report ends in, when it ends before Sunday.
    """

    week_start: date
    active: int
    new: int
    returning: int
    resurrecting: int
    dormant: int
    quick_ratio: float | None
    complete: bool


@attrs.frozen
class MilestoneStat:
    """How many subjects (users, or accounts for account milestones) reached a milestone."""

    name: str
    scope: str
    reached: int
    share: float  # of all users (or accounts) seen
    median_days: float | None  # time to reach: reached_at - first seen
    p90_days: float | None


@attrs.frozen
class FeatureStat:
    """A feature's adoption (share of MAU using it) and frequency over the last 30 days."""

    name: str
    users_30: int
    adoption: float  # users_30 / MAU
    frequency: float  # mean distinct days of use per adopting user, last 30 days
    users_ever: int


@attrs.frozen
class AccountStat:
    """An account's engagement at the end of the report (as the SDK's snapshot computes it)."""

    account: str
    score: int
    tier: str
    frequency: float
    breadth: float
    depth: float
    user_breadth: float | None
    touchpoints: float | None
    active_users_28: int
    users: int
    seats: float | None
    weekly_active_users: tuple[int, ...]  # 8 complete weeks, oldest first
    declining: bool


@attrs.frozen
class NudgeStat:
    """What a nudge did: decisions and outcomes in distinct users, and its lift on the goal.

    Conversion counts users who reached the goal within the goal window after they were
    shown the nudge (shown group) or held out of it (control group).
    """

    name: str
    fired: int
    held_out: int
    shown: int
    clicked: int
    dismissed: int
    suppressed: int  # decisions, not users
    goal: str | None
    goal_within_days: float | None
    shown_converted: int
    held_out_converted: int
    shown_rate: float | None
    held_out_rate: float | None
    lift: float | None  # shown_rate - held_out_rate
    p_value: float | None  # two-proportion z-test


@attrs.frozen
class SessionWeek:
    """One ISO week's sessions: "Session Started" events per user active that week."""

    week_start: date
    sessions: int
    active_users: int
    per_user: float | None  # sessions / active_users
    complete: bool


@attrs.frozen
class RetentionCohort:
    """Users first active in one ISO week, and how many were active in each week after.

    ``active[k]`` users of the cohort were active in week ``week_start + k`` weeks
    (``active[0]`` is the cohort itself); ``share[k]`` is that over ``users``. Only
    complete weeks are listed.
    """

    week_start: date
    users: int
    active: tuple[int, ...]
    share: tuple[float, ...]


@attrs.frozen
class SegmentStat:
    """The headline metrics of the users in one segment (a trait's value)."""

    segment: str
    users: int
    dau: int
    wau: int
    mau: int
    stickiness: float | None
    interactions_per_user: float | None


@attrs.frozen
class Report:
    """Everything the engagement report shows; see docs/report.md for each definition."""

    events: int
    skipped: int
    users: int
    accounts: int
    first_day: date | None
    last_day: date | None
    daily: tuple[DailyActive, ...]
    stickiness: float | None
    interactions_per_user: float | None
    l7: tuple[int, ...]
    l28: tuple[int, ...]
    lifecycle: tuple[LifecycleWeek, ...]
    milestones: tuple[MilestoneStat, ...]
    features: tuple[FeatureStat, ...]
    accounts_engagement: tuple[AccountStat, ...]
    nudges: tuple[NudgeStat, ...]
    timezone: str
    #: ``skipped`` by reason, most frequent first (see ``sources.SKIP_REASONS``).
    skipped_by: tuple[tuple[str, int], ...] = ()
    #: Sessions per active user in each ISO week of the report.
    sessions: tuple[SessionWeek, ...] = ()
    #: "Session Ended" events with a ``duration_s``, and their median and p90 (seconds).
    session_lengths: int = 0
    session_median_s: float | None = None
    session_p90_s: float | None = None
    #: Weekly retention cohorts, oldest first (complete weeks only).
    retention: tuple[RetentionCohort, ...] = ()
    #: The trait the users are segmented by (``compute(..., segment_by=...)``), and the
    #: headline metrics per value of it, the most users first.
    segment_by: str | None = None
    segments: tuple[SegmentStat, ...] = ()
    #: What computed the figures: "duckdb", "chdb", "clickhouse" or "python".
    engine: str = "python"


ENGINES = ("duckdb", "chdb", "python")


def compute(
    records: Iterable[Record],
    *,
    tz: tzinfo | None = None,
    inactive: Iterable[str] = (),
    engagement: Engagement | None = None,
    until: date | None = None,
    skipped: int = 0,
    segment_by: str | None = None,
    engine: str | None = None,
) -> Report:
    """Compute the report from event records (any order).

    Args:
        records: The events, as :data:`Record` tuples.
        tz: Time zone of calendar days and weeks (default UTC).
        inactive: Host events that are not activity (uptake's own never are).
        engagement: Weights, tiers and core features of the account scores (the SDK's
            defaults when None).
        until: Last day of the report (default: the last day with an event); later
            events are left out.
        skipped: Events the reader could not use, shown in the report.
        segment_by: A user trait (from identify or group calls) to break the headline
            metrics down by.
        engine: "duckdb" (the default when it is installed), "chdb" (ClickHouse in
            process) or "python" (the plain-Python reference, the default without DuckDB).

    Raises:
        ValueError: an unknown engine.
        ImportError: the engine asked for is not installed.
    """
    if engine is None:
        try:
            import duckdb  # noqa: F401
        except ImportError:
            engine = "python"
        else:
            engine = "duckdb"
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    options: dict[str, Any] = {
        "tz": tz,
        "inactive": inactive,
        "engagement": engagement,
        "until": until,
        "skipped": skipped,
        "segment_by": segment_by,
    }
    if engine == "python":
        from .reference import compute_reference

        return compute_reference(records, **options)
    from .engine import compute_sql

    report: Report = compute_sql(records, backend=engine, **options)
    return report


def zone_name(tz: tzinfo | None) -> str:
    """The name a report gives its time zone."""
    return getattr(tz, "key", None) or (str(tz) if tz is not None else "UTC")


def name_of(value: object) -> str | None:
    """A non-empty string from event data, writable (a lone surrogate becomes U+FFFD)."""
    if not isinstance(value, str) or not value:
        return None
    return writable(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def writable(value: str) -> str:
    """A string that can be written out as UTF-8: each lone surrogate becomes one U+FFFD."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


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
NUDGE_KINDS = ("fired", "held out", "shown", "clicked", "dismissed")


def nudge_stat(
    name: str,
    users: Mapping[str, int],
    suppressed: int,
    goal: tuple[str, float] | None,
    converted: Mapping[str, int],
) -> NudgeStat:
    """A nudge's figures from its users per decision and its conversions per group."""
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
