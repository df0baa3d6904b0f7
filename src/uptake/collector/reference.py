"""The report's figures in plain Python: the yardstick the SQL engine is tested against.

One pass over the records, in time order, into sets of days per user, account and
feature; then the shared functions of :mod:`.metrics` turn the counts into figures. It
holds every active (user, day) pair in memory, so it suits tests and small stores; the
report itself runs on :mod:`uptake.collector.engine`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, tzinfo
from typing import Any

from ..definitions import OWN_EVENTS, activity_name
from ..rules.calendar import Calendar, week_of
from ..rules.engagement import Engagement
from .figures import (
    _EPOCH,
    MONTH,
    NUDGE_KINDS,
    SESSION_ENDED,
    SESSION_STARTED,
    WINDOW,
    account_stat,
    by_adoption,
    by_concern,
    by_share,
    by_size,
    day_date,
    decision_kind,
    duration_of,
    feature_stat,
    inactive_report,
    last_complete_week,
    lifecycle_week,
    median,
    milestone_stat,
    name_of,
    positive,
    quantile,
    retention_cohort,
    seats_of,
    session_week,
    took_of,
    trait_of,
    zone_name,
)
from .metrics import DailyActive, Record, Report, SegmentStat
from .reference_lift import nudge_lift, programme

__all__ = ["compute_reference"]


def compute_reference(
    records: Iterable[Record],
    *,
    tz: tzinfo | None = None,
    inactive: Iterable[str] = (),
    engagement: Engagement | None = None,
    until: date | None = None,
    skipped: int = 0,
    segment_by: str | None = None,
) -> Report:
    """Compute the report in plain Python (arguments as :func:`.metrics.compute`)."""
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
    day_events: dict[int, list[str]] = defaultdict(list)
    feature_users: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    acct_members: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    acct_features: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    acct_touch: dict[str, set[int]] = defaultdict(set)
    accounts_seen: set[str] = set()
    seats: dict[str, float] = {}
    traits: dict[str, str] = {}
    milestones: dict[tuple[str, str], dict[str, tuple[float, float | None]]] = {}
    nudge_first: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    suppressed: dict[str, int] = defaultdict(int)
    assigned: dict[str, dict[str, tuple[float, int, str]]] = defaultdict(dict)
    goals: dict[str, tuple[str, float]] = {}
    reached_at: dict[tuple[str, str], list[float]] = defaultdict(list)
    session_starts: dict[int, int] = defaultdict(int)
    lengths: list[float] = []
    touchpoints = frozenset(config.touchpoints)
    any_day: int | None = None

    for (t, user, account, kind, raw_event, data), day in zip(rows, days_of, strict=True):
        any_day = day if any_day is None else max(any_day, day)
        if account is not None:
            accounts_seen.add(account)
        if segment_by is not None and kind in ("identify", "group") and data is not None:
            trait = trait_of(data.get(segment_by))
            if trait is not None:
                traits[user] = trait
        if kind == "group":
            value = seats_of(data.get(config.seats_trait)) if data is not None else None
            if account is not None and value is not None:
                seats[account] = value
            continue
        event = activity_name(kind, raw_event)
        if event is None:
            continue
        reached_at[(event, user)].append(t)
        if event in touchpoints and account is not None:
            acct_touch[account].add(day)  # as in the SDK: even when marked inactive
        if event in not_active:
            if event == SESSION_STARTED:
                session_starts[week_of(day)] += 1
            elif event == SESSION_ENDED and data is not None:
                length = duration_of(data.get("duration_s"))
                if length is not None:
                    lengths.append(length)
            elif data is not None:
                _own_event(
                    event,
                    user,
                    account,
                    t,
                    data,
                    milestones,
                    nudge_first,
                    suppressed,
                    assigned,
                    day,
                )
                _goal(event, user, t, data, goals, reached_at)
            continue
        user_days[user].add(day)
        first_t.setdefault(user, t)
        day_events[day].append(user)
        feature = name_of(data.get("feature")) if event == "Feature Used" and data else None
        if feature is not None:
            feature_users[feature][user].add(day)
        if account is not None:
            first_acct.setdefault(account, t)
            acct_members[account][user].add(day)
            if feature is not None:
                acct_features[account][feature].add(day)

    lengths.sort()
    end_t = rows[-1][0] if rows else 0.0
    base: dict[str, Any] = {
        "events": len(rows),
        "skipped": skipped,
        "accounts": len(accounts_seen),
        "timezone": zone_name(tz),
        "milestones": _milestones(milestones, first_t, first_acct),
        "nudges": _nudges(nudge_first, suppressed, goals, reached_at, assigned, user_days, end_t),
        "programme": programme(assigned[""], user_days, end_t, max(days_of, default=0))
        if any(kind == "global holdout" for _, _, kind in assigned[""].values())
        else (),
        "session_lengths": len(lengths),
        "session_median_s": median(lengths) if lengths else None,
        "session_p90_s": quantile(lengths, 0.9) if lengths else None,
        "segment_by": segment_by,
        "engine": "python",
    }
    if not user_days:
        return inactive_report(None if any_day is None else day_date(any_day), **base)
    first = min(min(days) for days in user_days.values())
    # "Today" is the last day with activity: a stray session end after midnight or one
    # clock-skewed identify must not move every window onto an empty day.
    last = last_allowed if last_allowed is not None else max(max(d) for d in user_days.values())
    headline = _headline(user_days, day_events, first, last)
    daily, stickiness, per_user = headline
    segments = []
    if segment_by is not None:
        groups: dict[str, set[str]] = defaultdict(set)
        for user in user_days:
            groups[traits.get(user, "(none)")].add(user)
        for segment, members in groups.items():
            days = {u: user_days[u] for u in members}
            events = {d: [u for u in us if u in members] for d, us in day_events.items()}
            s_daily, s_stick, s_per = _headline(days, events, first, last)
            end = s_daily[-1]
            segments.append(
                SegmentStat(segment, len(members), end.dau, end.wau, end.mau, s_stick, s_per)
            )
    active_weeks: dict[int, set[str]] = defaultdict(set)
    for user, active_days in user_days.items():
        for d in active_days:
            active_weeks[week_of(d)].add(user)
    return Report(
        users=len(user_days),
        first_day=day_date(first),
        last_day=day_date(last),
        daily=daily,
        stickiness=stickiness,
        interactions_per_user=per_user,
        l7=_histogram(user_days, last, 7),
        l28=_histogram(user_days, last, 28),
        lifecycle=_lifecycle(user_days, first, last),
        features=_features(feature_users, last, daily[-1].mau),
        accounts_engagement=_accounts(config, last, acct_members, acct_features, acct_touch, seats),
        sessions=tuple(
            session_week(w, last, session_starts.get(w, 0), len(active_weeks.get(w, ())))
            for w in range(week_of(first), week_of(last) + 1)
        ),
        retention=_retention(user_days, last),
        segments=by_size(segments),
        **base,
    )


def _headline(
    user_days: Mapping[str, set[int]], day_events: Mapping[int, list[str]], first: int, last: int
) -> tuple[tuple[DailyActive, ...], float | None, float | None]:
    """Daily active users, stickiness and interactions per user over some users."""
    day_users: dict[int, set[str]] = defaultdict(set)
    for user, days in user_days.items():
        for d in days:
            day_users[d].add(user)
    daily = []
    week: dict[str, int] = defaultdict(int)
    month: dict[str, int] = defaultdict(int)
    for day in range(first, last + 1):
        for window, size in ((week, 7), (month, MONTH)):
            for user in day_users.get(day, ()):
                window[user] += 1
            for user in day_users.get(day - size, ()):
                window[user] -= 1
                if not window[user]:
                    del window[user]
        daily.append(DailyActive(day_date(day), len(day_users.get(day, ())), len(week), len(month)))
    ratios = [d.dau / d.mau for d in daily[-MONTH:] if d.mau]
    mau = daily[-1].mau
    month_events = sum(len(us) for d, us in day_events.items() if last - MONTH < d <= last)
    return (
        tuple(daily),
        sum(ratios) / len(ratios) if ratios else None,
        month_events / mau if mau else None,
    )


def _own_event(
    event: str,
    user: str,
    account: str | None,
    t: float,
    data: Mapping[str, Any],
    milestones: dict[tuple[str, str], dict[str, tuple[float, float | None]]],
    nudge_first: dict[tuple[str, str], dict[str, float]],
    suppressed: dict[str, int],
    assigned: dict[str, dict[str, tuple[float, int, str]]],
    day: int,
) -> None:
    """Take in a milestone or a nudge decision."""
    if event == "Milestone Reached":
        name = name_of(data.get("milestone"))
        scope = "account" if data.get("scope") == "account" else "user"
        subject = account if scope == "account" else user
        if name is not None and subject is not None:
            reached = milestones.setdefault((name, scope), {})
            # Records are in time order: the first one counts.
            reached.setdefault(subject, (t, took_of(data.get("time_to_reach_s"))))
        return
    name = name_of(data.get("nudge"))
    if name is None or not event.startswith("Nudge "):
        return
    if event == "Nudge Suppressed":
        suppressed[name] += 1
        return
    kind = decision_kind(event, data)
    nudge_first[(name, kind)].setdefault(user, t)
    if kind in ("fired", "held out", "global holdout"):  # assignments, first one counts
        assigned[name].setdefault(user, (t, day, kind))
        assigned[""].setdefault(user, (t, day, kind))


def _goal(
    event: str,
    user: str,
    t: float,
    data: Mapping[str, Any],
    goals: dict[str, tuple[str, float]],
    reached_at: dict[tuple[str, str], list[float]],
) -> None:
    """Note a nudge's goal (the latest fired or held-out decision that names one), and
    when a user reached a milestone (a goal can be a milestone)."""
    if event == "Milestone Reached":
        name = name_of(data.get("milestone"))
        if name is not None:
            reached_at[(name, user)].append(t)
    elif event in ("Nudge Fired", "Nudge Held Out"):
        nudge, goal = name_of(data.get("nudge")), name_of(data.get("goal"))
        within = positive(data.get("goal_within_s"))
        if nudge is not None and goal is not None and within is not None:
            goals[nudge] = (goal, within)


def _histogram(user_days: Mapping[str, set[int]], last: int, n: int) -> tuple[int, ...]:
    """Users active on exactly k distinct days of the n ending on ``last`` (k = 1..n)."""
    counts = [0] * n
    for days in user_days.values():
        k = sum(1 for d in days if last - n < d <= last)
        if k:
            counts[k - 1] += 1
    return tuple(counts)


def _lifecycle(user_days: Mapping[str, set[int]], first: int, last: int) -> tuple[Any, ...]:
    weeks_of = {user: {week_of(d) for d in days} for user, days in user_days.items()}
    first_week = {user: min(weeks) for user, weeks in weeks_of.items()}
    active: dict[int, set[str]] = defaultdict(set)
    for user, weeks in weeks_of.items():
        for w in weeks:
            active[w].add(user)
    out = []
    for w in range(week_of(first), week_of(last) + 1):
        now, before = active.get(w, set()), active.get(w - 1, set())
        new = sum(1 for u in now if first_week[u] == w)
        out.append(lifecycle_week(w, last, len(now), new, len(now & before), len(before - now)))
    return tuple(out)


def _retention(user_days: Mapping[str, set[int]], last: int) -> tuple[Any, ...]:
    end = last_complete_week(last)
    cohorts: dict[int, list[set[int]]] = defaultdict(list)
    for days in user_days.values():
        weeks = {week_of(d) for d in days}
        cohorts[min(weeks)].append(weeks)
    return tuple(
        retention_cohort(
            c, len(members), [sum(c + k in w for w in members) for k in range(end - c + 1)]
        )
        for c, members in sorted(cohorts.items())
        if c <= end
    )


def _milestones(
    milestones: Mapping[tuple[str, str], Mapping[str, tuple[float, float | None]]],
    first_t: Mapping[str, float],
    first_acct: Mapping[str, float],
) -> tuple[Any, ...]:
    """Per milestone: subjects reached, as a share of the subjects seen (active users, or
    active accounts, and whoever reached it without other activity), and time to reach it
    (``time_to_reach_s``, else reached minus the subject's first activity)."""
    out = []
    for (name, scope), reached in milestones.items():
        firsts = first_t if scope == "user" else first_acct
        took: list[float] = []
        for subject, (t, seconds) in reached.items():
            if seconds is None and subject in firsts:
                seconds = max(t - firsts[subject], 0.0)
            if seconds is not None:
                took.append(seconds / 86_400)
        took.sort()
        total = len(firsts.keys() | reached.keys())
        out.append(milestone_stat(name, scope, len(reached), total, took))
    return by_share(out)


def _features(
    feature_users: Mapping[str, Mapping[str, set[int]]], last: int, mau: int
) -> tuple[Any, ...]:
    out = []
    for name, users in feature_users.items():
        recent = [sum(1 for d in days if last - MONTH < d <= last) for days in users.values()]
        recent = [n for n in recent if n]
        out.append(feature_stat(name, len(recent), sum(recent), len(users), mau))
    return by_adoption(out)


def _accounts(
    config: Engagement,
    last: int,
    acct_members: Mapping[str, Mapping[str, set[int]]],
    acct_features: Mapping[str, Mapping[str, set[int]]],
    acct_touch: Mapping[str, set[int]],
    seats: Mapping[str, float],
) -> tuple[Any, ...]:
    """Each account's score as the SDK's account snapshot computes it, at the end of ``last``."""
    start = last - WINDOW + 1
    this_week = week_of(last)
    since = last - config.touchpoint_window.days + 1
    out = []
    for account, members in acct_members.items():
        days = set().union(*members.values())
        features = {
            f: sum(start <= d <= last for d in ds)
            for f, ds in acct_features.get(account, {}).items()
        }
        weekly = tuple(
            sum(1 for ds in members.values() if any(week_of(d) == w for d in ds))
            for w in range(this_week - 8, this_week)
        )
        out.append(
            account_stat(
                config,
                account,
                active_days=sum(1 for d in days if start <= d <= last),
                features=features,
                active_users=sum(
                    1 for ds in members.values() if any(start <= d <= last for d in ds)
                ),
                users=len(members),
                weekly=weekly,
                seats=seats.get(account),
                touch_days=sum(1 for d in acct_touch.get(account, ()) if since <= d <= last),
            )
        )
    return by_concern(out)


def _nudges(
    nudge_first: Mapping[tuple[str, str], Mapping[str, float]],
    suppressed: Mapping[str, int],
    goals: Mapping[str, tuple[str, float]],
    reached_at: Mapping[tuple[str, str], list[float]],
    assigned: Mapping[str, Mapping[str, tuple[float, int, str]]],
    user_days: Mapping[str, set[int]],
    end: float,
) -> tuple[Any, ...]:
    names = sorted({name for name, _ in nudge_first} | set(suppressed))
    out = []
    for name in names:
        groups = {kind: nudge_first.get((name, kind), {}) for kind in NUDGE_KINDS}
        goal = goals.get(name)
        converted = {"shown": 0, "held out": 0}
        if goal is not None:
            target, within = goal
            for group in converted:
                for user, t0 in groups[group].items():
                    times = reached_at.get((target, user), ())
                    converted[group] += any(t0 <= g <= t0 + within for g in times)
        users = {kind: len(members) for kind, members in groups.items()}
        first = assigned.get(name, {})
        out.append(
            nudge_lift(
                name,
                users,
                suppressed.get(name, 0),
                goal,
                converted,
                first,
                user_days,
                reached_at,
                end,
            )
        )
    return tuple(out)
