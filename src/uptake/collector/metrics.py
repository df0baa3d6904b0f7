"""The engagement report's numbers, computed from stored events (definitions: docs/report.md).

:func:`compute` takes :data:`Record` tuples (see :mod:`uptake.collector.sources`) and
returns one frozen :class:`Report`. Everything is counted in distinct users and calendar
days in one time zone, as the SDK's own engagement snapshot is, so the two agree.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, timedelta, tzinfo
from typing import Any

import attrs

from ..definitions import ACTIVITY_TYPES, OWN_EVENTS, activity_name, compose_score
from ..rules.calendar import Calendar, week_of
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
    "compute",
]

#: One event as the report reads it: (time, user, account, type, event name, data).
#: ``data`` is the properties of uptake's own events and of "Feature Used", the traits
#: of a group call, else None.
Record = tuple[float, str, "str | None", str, "str | None", "Mapping[str, Any] | None"]

_EPOCH = date(1970, 1, 1)
_MONTH = 30  # MAU: trailing 30 days
_WINDOW = 28  # engagement: the last 28 days


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


def compute(
    records: Iterable[Record],
    *,
    tz: tzinfo | None = None,
    inactive: Iterable[str] = (),
    engagement: Engagement | None = None,
    until: date | None = None,
    skipped: int = 0,
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
    """
    calendar = Calendar(tz)
    config = engagement if engagement is not None else Engagement()
    not_active = OWN_EVENTS | frozenset(inactive)
    rows = sorted(records, key=lambda r: r[0])
    last_allowed = None if until is None else (until - _EPOCH).days
    days_of = [calendar.day_of(r[0]) for r in rows]
    if last_allowed is not None:
        keep = [i for i, d in enumerate(days_of) if d <= last_allowed]
        rows = [rows[i] for i in keep]
        days_of = [days_of[i] for i in keep]

    user_days: dict[str, set[int]] = defaultdict(set)
    first_t: dict[str, float] = {}
    first_acct: dict[str, float] = {}
    day_users: dict[int, set[str]] = defaultdict(set)
    day_events: dict[int, int] = defaultdict(int)
    feature_users: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    acct_days: dict[str, set[int]] = defaultdict(set)
    acct_members: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    acct_features: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    acct_touch: dict[str, set[int]] = defaultdict(set)
    acct_users: dict[str, set[str]] = defaultdict(set)
    seats: dict[str, float] = {}
    milestones: dict[tuple[str, str], dict[str, tuple[float, float | None]]] = {}
    nudge_first: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    suppressed: dict[str, int] = defaultdict(int)
    goals: dict[str, tuple[str, float]] = {}
    touchpoints = frozenset(config.touchpoints)
    any_day: int | None = None

    for (t, user, account, kind, event, data), day in zip(rows, days_of, strict=True):
        any_day = day if any_day is None else max(any_day, day)
        if account is not None:
            acct_users[account].add(user)
        if kind == "group":
            if account is not None and data is not None:
                value = _positive(data.get(config.seats_trait))
                if value is not None and value >= 1:  # as the SDK reads it
                    seats[account] = float(int(value))
            continue
        event = activity_name(kind, event)
        if event is None:
            continue
        if event in touchpoints and account is not None:
            acct_touch[account].add(day)  # as in the SDK: even when marked inactive
        if event in not_active:
            _own_event(event, user, account, t, data, milestones, nudge_first, suppressed, goals)
            continue
        user_days[user].add(day)
        if user not in first_t:
            first_t[user] = t
        day_users[day].add(user)
        day_events[day] += 1
        feature = _name(data.get("feature")) if event == "Feature Used" and data else None
        if feature is not None:
            feature_users[feature][user].add(day)
        if account is not None:
            if account not in first_acct:
                first_acct[account] = t
            acct_days[account].add(day)
            acct_members[account][user].add(day)
            if feature is not None:
                acct_features[account][feature].add(day)

    zone = getattr(tz, "key", None) or (str(tz) if tz is not None else "UTC")
    accounts_seen = len(acct_users)
    if not user_days:
        return Report(
            events=len(rows),
            skipped=skipped,
            users=0,
            accounts=accounts_seen,
            first_day=None,
            last_day=None if any_day is None else _date(any_day),
            daily=(),
            stickiness=None,
            interactions_per_user=None,
            l7=(0,) * 7,
            l28=(0,) * 28,
            lifecycle=(),
            milestones=_milestones(milestones, first_t, first_acct),
            features=(),
            accounts_engagement=(),
            nudges=_nudges(nudge_first, suppressed, goals, rows),
            timezone=zone,
        )
    first = min(day_users)
    # "Today" is the last day with activity: a stray session end after midnight or one
    # clock-skewed identify must not move every window onto an empty day.
    last = last_allowed if last_allowed is not None else max(day_users)
    daily = _daily(day_users, first, last)
    recent = daily[-_MONTH:]
    ratios = [d.dau / d.mau for d in recent if d.mau]
    mau = daily[-1].mau
    month_events = sum(n for d, n in day_events.items() if last - _MONTH < d <= last)
    return Report(
        events=len(rows),
        skipped=skipped,
        users=len(user_days),
        accounts=accounts_seen,
        first_day=_date(first),
        last_day=_date(last),
        daily=daily,
        stickiness=sum(ratios) / len(ratios) if ratios else None,
        interactions_per_user=month_events / mau if mau else None,
        l7=_histogram(user_days, last, 7),
        l28=_histogram(user_days, last, 28),
        lifecycle=_lifecycle(user_days, first, last),
        milestones=_milestones(milestones, first_t, first_acct),
        features=_features(feature_users, last, mau),
        accounts_engagement=_accounts(
            config, calendar, last, acct_days, acct_members, acct_features, acct_touch, seats
        ),
        nudges=_nudges(nudge_first, suppressed, goals, rows),
        timezone=zone,
    )


def _name(value: object) -> str | None:
    """A non-empty string from event data, writable (a lone surrogate becomes U+FFFD)."""
    if not isinstance(value, str) or not value:
        return None
    return writable(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def writable(value: str) -> str:
    """A string that can be written out as UTF-8: each lone surrogate becomes one U+FFFD."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def _positive(value: object) -> float | None:
    """A finite number above zero as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def _own_event(
    event: str | None,
    user: str,
    account: str | None,
    t: float,
    data: Mapping[str, Any] | None,
    milestones: dict[tuple[str, str], dict[str, tuple[float, float | None]]],
    nudge_first: dict[tuple[str, str], dict[str, float]],
    suppressed: dict[str, int],
    goals: dict[str, tuple[str, float]],
) -> None:
    """Take in one of uptake's own events (milestones and nudges)."""
    if data is None:
        return
    if event == "Milestone Reached":
        name = _name(data.get("milestone"))
        if name is None:
            return
        scope = "account" if data.get("scope") == "account" else "user"
        subject = account if scope == "account" else user
        if subject is None:
            return
        took = data.get("time_to_reach_s")
        reached = milestones.setdefault((name, scope), {})
        if subject not in reached:  # records are in time order: the first one counts
            reached[subject] = (t, 0.0 if took == 0 else _positive(took))
        return
    name = _name(data.get("nudge"))
    if name is None or event is None:
        return
    if event == "Nudge Suppressed":
        suppressed[name] += 1
        return
    kind = event[len("Nudge ") :].lower()
    nudge_first[(name, kind)].setdefault(user, t)
    if kind in ("fired", "held out"):
        goal, within = _name(data.get("goal")), _positive(data.get("goal_within_s"))
        if goal is not None and within is not None:
            goals[name] = (goal, within)


def _daily(day_users: Mapping[int, set[str]], first: int, last: int) -> tuple[DailyActive, ...]:
    """DAU, WAU and MAU for every day, sliding one window of per-user day counts."""
    out = []
    week: dict[str, int] = defaultdict(int)
    month: dict[str, int] = defaultdict(int)
    for day in range(first, last + 1):
        for window, size in ((week, 7), (month, _MONTH)):
            for user in day_users.get(day, ()):
                window[user] += 1
            for user in day_users.get(day - size, ()):
                window[user] -= 1
                if not window[user]:
                    del window[user]
        out.append(DailyActive(_date(day), len(day_users.get(day, ())), len(week), len(month)))
    return tuple(out)


def _histogram(user_days: Mapping[str, set[int]], last: int, n: int) -> tuple[int, ...]:
    """Users active on exactly k distinct days of the n ending on ``last`` (k = 1..n)."""
    counts = [0] * n
    for days in user_days.values():
        k = sum(1 for d in days if last - n < d <= last)
        if k:
            counts[k - 1] += 1
    return tuple(counts)


def _lifecycle(
    user_days: Mapping[str, set[int]], first: int, last: int
) -> tuple[LifecycleWeek, ...]:
    weeks_of = {user: {week_of(d) for d in days} for user, days in user_days.items()}
    first_week = {user: min(weeks) for user, weeks in weeks_of.items()}
    active: dict[int, set[str]] = defaultdict(set)
    for user, weeks in weeks_of.items():
        for w in weeks:
            active[w].add(user)
    out = []
    last_week = week_of(last)
    for w in range(week_of(first), last_week + 1):
        now, before = active.get(w, set()), active.get(w - 1, set())
        new = sum(1 for u in now if first_week[u] == w)
        returning = len(now & before)
        resurrecting = len(now) - new - returning
        dormant = len(before - now)
        monday = w * 7 - 3
        out.append(
            LifecycleWeek(
                week_start=_date(monday),
                active=len(now),
                new=new,
                returning=returning,
                resurrecting=resurrecting,
                dormant=dormant,
                quick_ratio=(new + resurrecting) / dormant if dormant else None,
                complete=monday + 6 <= last,
            )
        )
    return tuple(out)


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    return sorted_values[max(math.ceil(q * len(sorted_values)) - 1, 0)]


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    if n % 2:
        return sorted_values[mid]
    return (sorted_values[mid - 1] + sorted_values[mid]) / 2


def _milestones(
    milestones: Mapping[tuple[str, str], Mapping[str, tuple[float, float | None]]],
    first_t: Mapping[str, float],
    first_acct: Mapping[str, float],
) -> tuple[MilestoneStat, ...]:
    """Per milestone: subjects reached, as a share of the subjects seen (active users, or
    active accounts, and whoever reached it without other activity), and time to reach it
    (``time_to_reach_s``, else reached minus the subject's first activity)."""
    out = []
    for (name, scope), reached in milestones.items():
        took: list[float] = []
        for subject, (t, seconds) in reached.items():
            firsts = first_t if scope == "user" else first_acct
            if seconds is None and subject in firsts:
                seconds = max(t - firsts[subject], 0.0)
            if seconds is not None:
                took.append(seconds / 86_400)
        took.sort()
        total = len((first_t if scope == "user" else first_acct).keys() | reached.keys())
        out.append(
            MilestoneStat(
                name=name,
                scope=scope,
                reached=len(reached),
                share=len(reached) / total,
                median_days=_median(took) if took else None,
                p90_days=_quantile(took, 0.9) if took else None,
            )
        )
    out.sort(key=lambda m: (-m.share, m.name))
    return tuple(out)


def _features(
    feature_users: Mapping[str, Mapping[str, set[int]]], last: int, mau: int
) -> tuple[FeatureStat, ...]:
    out = []
    for name, users in feature_users.items():
        recent = [sum(1 for d in days if last - _MONTH < d <= last) for days in users.values()]
        recent = [n for n in recent if n]
        out.append(
            FeatureStat(
                name=name,
                users_30=len(recent),
                adoption=len(recent) / mau if mau else 0.0,
                frequency=sum(recent) / len(recent) if recent else 0.0,
                users_ever=len(users),
            )
        )
    out.sort(key=lambda f: (-f.adoption, -f.users_ever, f.name))
    return tuple(out)


def _clip(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def _accounts(
    config: Engagement,
    calendar: Calendar,
    last: int,
    acct_days: Mapping[str, set[int]],
    acct_members: Mapping[str, Mapping[str, set[int]]],
    acct_features: Mapping[str, Mapping[str, set[int]]],
    acct_touch: Mapping[str, set[int]],
    seats: Mapping[str, float],
) -> tuple[AccountStat, ...]:
    """Each account's score as the SDK's account snapshot computes it, at the end of ``last``."""
    start = last - _WINDOW + 1
    this_week = week_of(last)
    weeks = range(this_week - 8, this_week)
    out = []
    for account, days in acct_days.items():
        frequency = sum(1 for d in days if start <= d <= last) / _WINDOW
        features = acct_features.get(account, {})
        used = {f: n for f, ds in features.items() if (n := sum(start <= d <= last for d in ds))}
        if config.core_features is None:
            breadth = len(used) / len(features) if features else 0.0
        else:
            breadth = sum(1 for f in config.core_features if f in used) / len(config.core_features)
        target = config.depth_target
        depth = sum(min(n, target) for n in used.values()) / len(used) / target if used else 0.0
        members = acct_members.get(account, {})
        active_users = sum(1 for ds in members.values() if any(start <= d <= last for d in ds))
        weekly = tuple(
            sum(1 for ds in members.values() if any(week_of(d) == w for d in ds)) for w in weeks
        )
        components = {"frequency": frequency, "breadth": breadth, "depth": depth}
        account_seats = seats.get(account)
        user_breadth = _clip(active_users / account_seats) if account_seats else None
        if user_breadth is not None:
            components["user_breadth"] = user_breadth
        touch = None
        if config.touchpoints:
            since = last - config.touchpoint_window.days + 1
            n = sum(1 for d in acct_touch.get(account, ()) if since <= d <= last)
            touch = _clip(n / config.touchpoint_target)
            components["touchpoints"] = touch
        points = compose_score(components, config.account_weights)
        out.append(
            AccountStat(
                account=account,
                score=points,
                tier=config.tier(points),
                frequency=round(frequency, 4),
                breadth=round(_clip(breadth), 4),
                depth=round(_clip(depth), 4),
                user_breadth=user_breadth,
                touchpoints=touch,
                active_users_28=active_users,
                users=len(members),
                seats=account_seats,
                weekly_active_users=weekly,
                declining=declining(weekly),
            )
        )
    out.sort(key=lambda a: (not a.declining, a.score, a.account))
    return tuple(out)


def _nudges(
    nudge_first: Mapping[tuple[str, str], Mapping[str, float]],
    suppressed: Mapping[str, int],
    goals: Mapping[str, tuple[str, float]],
    rows: list[Record],
) -> tuple[NudgeStat, ...]:
    names = sorted({name for name, _ in nudge_first} | set(suppressed))
    # When each user reached each goal: the goal event, or the milestone of that name.
    wanted = {goal for goal, _ in goals.values()}
    reached: dict[tuple[str, str], list[float]] = defaultdict(list)
    if wanted:
        for t, user, _account, kind, event, data in rows:
            if kind not in ACTIVITY_TYPES or event is None:
                continue
            if event == "Milestone Reached" and data is not None:
                name = _name(data.get("milestone"))
                if name is not None and name in wanted:
                    reached[(name, user)].append(t)
            elif event in wanted:
                reached[(event, user)].append(t)
    out = []
    for name in names:
        groups = {kind: nudge_first.get((name, kind), {}) for kind in _NUDGE_KINDS}
        goal, within = goals.get(name, (None, None))
        converted = {"shown": 0, "held out": 0}
        if goal is not None and within is not None:
            for group in converted:
                for user, t0 in groups[group].items():
                    if any(t0 <= g <= t0 + within for g in reached.get((goal, user), ())):
                        converted[group] += 1
        n_shown, n_held = len(groups["shown"]), len(groups["held out"])
        shown_rate = converted["shown"] / n_shown if goal and n_shown else None
        held_rate = converted["held out"] / n_held if goal and n_held else None
        lift = p_value = None
        if shown_rate is not None and held_rate is not None:
            lift = shown_rate - held_rate
            p_value = _two_proportion_p(converted["shown"], n_shown, converted["held out"], n_held)
        out.append(
            NudgeStat(
                name=name,
                fired=len(groups["fired"]),
                held_out=n_held,
                shown=n_shown,
                clicked=len(groups["clicked"]),
                dismissed=len(groups["dismissed"]),
                suppressed=suppressed.get(name, 0),
                goal=goal,
                goal_within_days=within / 86_400 if within is not None else None,
                shown_converted=converted["shown"] if goal else 0,
                held_out_converted=converted["held out"] if goal else 0,
                shown_rate=shown_rate,
                held_out_rate=held_rate,
                lift=lift,
                p_value=p_value,
            )
        )
    return tuple(out)


_NUDGE_KINDS = ("fired", "held out", "shown", "clicked", "dismissed")


def _two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of a pooled two-proportion z-test; None when it is undefined."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x1 / n1 - x2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))
