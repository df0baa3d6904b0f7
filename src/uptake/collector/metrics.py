"""The engagement report's numbers, computed from stored events (definitions: docs/report.md).

:func:`compute` takes :data:`Record` tuples (see :mod:`uptake.collector.sources`) and
returns one frozen :class:`Report`. Everything is counted in distinct users and calendar
days in one time zone, as the SDK's own engagement snapshot is, so the two agree.

The figures are computed by the SQL engine (:mod:`uptake.collector.engine`, DuckDB in
process by default, or chdb) over a typed table of the events; :mod:`.reference` computes
the same in plain Python, the yardstick the engine is tested against. The functions that
turn counts into a figure (a share, a score, a p-value) are shared by both
(:mod:`.figures`), so each is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, tzinfo
from typing import TYPE_CHECKING, Any

import attrs

from ..definitions import OWN_EVENTS
from ..rules.engagement import Engagement

if TYPE_CHECKING:
    from .engine import Loaded

__all__ = [
    "OWN_EVENTS",
    "AccountStat",
    "DailyActive",
    "FeatureStat",
    "LifecycleWeek",
    "MilestoneStat",
    "NudgeStat",
    "ProgrammeStat",
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
    # Intent to treat: users by their first assignment (fired or held out), whose goal
    # window has ended; CUPED-adjusted lift with an anytime-valid interval (see lift.py).
    global_held_out: int = 0  # users held out by the client's global holdout
    treated: int = 0
    control: int = 0
    pending: int = 0  # assigned users whose goal window has not ended yet
    treated_rate: float | None = None
    control_rate: float | None = None
    itt_lift: float | None = None
    itt_low: float | None = None
    itt_high: float | None = None
    mde: float | None = None
    variance_reduction: float | None = None
    verdict: str | None = None


@attrs.frozen
class ProgrammeStat:
    """What the whole nudge programme does: users assigned to any nudge against the
    client's global holdout, by their first assignment; retained = active on a day 28 to
    35 days after it (fields as :class:`NudgeStat`'s intent-to-treat ones)."""

    outcome: str
    treated: int  # users nudged (or held out of one nudge): the programme as it runs
    control: int  # users in the global holdout
    pending: int
    treated_rate: float | None
    control_rate: float | None
    itt_lift: float | None
    itt_low: float | None
    itt_high: float | None
    mde: float | None
    variance_reduction: float | None
    verdict: str | None


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
    #: What computed the figures: "duckdb", "chdb" or "python".
    engine: str = "python"
    #: The nudge programme against the global holdout (one row, when there is one).
    programme: tuple[ProgrammeStat, ...] = ()


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
    on_loaded: Callable[[Loaded], None] | None = None,
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

    report: Report = compute_sql(records, backend=engine, on_loaded=on_loaded, **options)
    return report
