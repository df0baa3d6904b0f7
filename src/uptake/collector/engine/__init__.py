"""The report's analytical engine: a typed event table and the metrics as SQL over it.

:func:`compute_sql` loads the records into one typed table (:mod:`.table`) in DuckDB or
chdb (:mod:`.backends`), runs the measures of :mod:`.model` and assembles a
:class:`~uptake.collector.metrics.Report` with the shared functions of
:mod:`uptake.collector.metrics`, the same ones the plain-Python reference uses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timezone, tzinfo
from typing import Any

import attrs

from ...definitions import OWN_EVENTS
from ...rules.calendar import Calendar
from ...rules.engagement import Engagement
from ..figures import (
    _EPOCH,
    MONTH,
    WINDOW,
    account_stat,
    assignment_lift,
    by_adoption,
    by_concern,
    by_share,
    by_size,
    day_date,
    feature_stat,
    inactive_report,
    last_complete_week,
    lifecycle_week,
    milestone_stat,
    nudge_stat,
    programme_stat,
    retention_cohort,
    session_week,
    zone_name,
)
from ..lift import ArmSums
from ..metrics import DailyActive, Record, Report, SegmentStat
from ..sources import Source
from . import model
from .backends import Backend, DuckDBBackend, load, open_backend
from .store import arrow_batches, fast_path_available
from .table import batches

__all__ = ["Loaded", "compute_sql", "report_from"]


@attrs.frozen
class Loaded:
    """The engine's typed event table, handed to a hook once the report is computed.

    Another analysis over the same events (activation discovery) can run on ``db``
    instead of reading the source again; the table is ``raw`` (:mod:`.table`), its
    ``day`` and ``week`` filled when ``days_known``. The backend is closed when the hook
    returns.
    """

    db: Backend
    days_known: bool
    report: Report


def compute_sql(
    records: Iterable[Record],
    *,
    backend: str = "duckdb",
    tz: tzinfo | None = None,
    inactive: Iterable[str] = (),
    engagement: Engagement | None = None,
    until: date | None = None,
    skipped: int = 0,
    segment_by: str | None = None,
    on_loaded: Callable[[Loaded], None] | None = None,
) -> Report:
    """Compute the report on an SQL engine (arguments as :func:`.metrics.compute`)."""
    config = engagement if engagement is not None else Engagement()
    zone_key, offset = _zone(tz)  # a bad zone fails before any record is read
    db = open_backend(backend)
    try:
        db.create()
        days_known = _ingest(db, records, config.seats_trait, segment_by, tz, (zone_key, offset))
        report = report_from(
            db,
            tz=tz,
            inactive=inactive,
            engagement=config,
            until=until,
            skipped=skipped,
            segment_by=segment_by,
            zone=(zone_key, offset),
            days_known=days_known,
        )
        if on_loaded is not None:
            on_loaded(Loaded(db, days_known, report))
        return report
    finally:
        db.close()


def _ingest(
    db: Backend,
    records: Iterable[Record],
    seats_trait: str,
    segment_by: str | None,
    tz: tzinfo | None,
    zone: tuple[str | None, float],
) -> bool:
    """Load the records into ``raw``: a collector store through SQL where it can.

    Returns whether the days are known (filled at loading).
    """
    store = getattr(records, "store", None)
    if isinstance(records, Source) and store is not None and fast_path_available():
        odd: list[int] = []
        fast = arrow_batches(store, records, seats_trait, segment_by, odd, DuckDBBackend.day(*zone))
        if fast is not None:
            for arrow in fast:  # batch by batch: joining them into larger appends
                db.append(arrow)  # cost the 10M report 150 MB of peak RSS
            calendar = Calendar(tz)
            for i in range(0, len(odd), 500):
                ids = ", ".join(str(int(rowid)) for rowid in odd[i : i + 500])
                rest = records.numbered(f"rowid IN ({ids})")
                load(db, batches(rest, seats_trait, segment_by, calendar))
            return True
    load(db, batches(enumerate(records), seats_trait, segment_by))
    return False


def _zone(tz: tzinfo | None) -> tuple[str | None, float]:
    """The IANA name of a zone, or None and its fixed offset in seconds."""
    if tz is None or tz is timezone.utc:
        return None, 0.0
    key = getattr(tz, "key", None)
    if isinstance(key, str):
        return key, 0.0
    fixed = tz.utcoffset(None)
    if fixed is None:
        raise ValueError(f"the SQL engine needs an IANA zone (ZoneInfo) or a fixed offset: {tz!r}")
    return None, fixed.total_seconds()


def report_from(
    db: Backend,
    *,
    tz: tzinfo | None,
    inactive: Iterable[str],
    engagement: Engagement,
    until: date | None,
    skipped: int,
    segment_by: str | None,
    zone: tuple[str | None, float] | None = None,
    days_known: bool = False,
) -> Report:
    """Compute the report over the table ``raw`` a backend holds."""
    config = engagement
    zone_key, offset = zone if zone is not None else _zone(tz)
    last_allowed = None if until is None else (until - _EPOCH).days
    model.prepare(
        db,
        zone=zone_key,
        offset=offset,
        until=last_allowed,
        inactive=OWN_EVENTS | frozenset(inactive),
        touchpoints=config.touchpoints,
        days_known=days_known,
    )
    ((events, accounts, any_day),) = db.rows(model.totals())
    ((users, first, last_active, active_accounts),) = db.rows(model.active_totals())
    lengths, median_s, p90_s = _session_lengths(db)
    nudges, programme = _nudges(db)
    base: dict[str, Any] = {
        "events": int(events),
        "skipped": skipped,
        "accounts": int(accounts),
        "timezone": zone_name(tz),
        "nudges": nudges,
        "programme": programme,
        "session_lengths": lengths,
        "session_median_s": median_s,
        "session_p90_s": p90_s,
        "segment_by": segment_by,
        "engine": db.name,
    }
    users = int(users or 0)
    base["milestones"] = _milestones(db, users, int(active_accounts or 0))
    if not users:
        # (ClickHouse gives 0, not NULL, as the max of nothing)
        return inactive_report(day_date(int(any_day)) if events else None, **base)
    first = int(first)
    last = last_allowed if last_allowed is not None else int(last_active)
    series = _headline(db, first, last, segmented=False)
    daily, stickiness, per_user = series[""]
    segments = []
    if segment_by is not None:
        db.table("seg", model.segments())
        sizes = {s: int(n) for s, n in db.rows(model.segment_users())}
        for segment, (s_daily, s_stick, s_per) in _headline(db, first, last, True).items():
            end = s_daily[-1]
            segments.append(
                SegmentStat(segment, sizes[segment], end.dau, end.wau, end.mau, s_stick, s_per)
            )
    weeks = {int(w): tuple(int(x) for x in rest) for w, *rest in db.rows(model.lifecycle())}
    starts = {int(w): int(n) for w, n in db.rows(model.session_starts())}
    week_range = range((first + 3) // 7, (last + 3) // 7 + 1)
    return Report(
        users=users,
        first_day=day_date(first),
        last_day=day_date(last),
        daily=daily,
        stickiness=stickiness,
        interactions_per_user=per_user,
        l7=_histogram(db, last, 7),
        l28=_histogram(db, last, 28),
        lifecycle=tuple(
            lifecycle_week(
                w,
                last,
                weeks.get(w, (0, 0, 0, 0))[0],
                weeks.get(w, (0, 0, 0, 0))[1],
                weeks.get(w, (0, 0, 0, 0))[2],
                weeks.get(w - 1, (0, 0, 0, 0))[3],
            )
            for w in week_range
        ),
        features=by_adoption(
            [
                feature_stat(str(name), int(n30), int(days or 0), int(ever), daily[-1].mau)
                for name, ever, n30, days in db.rows(model.features(last))
            ]
        ),
        accounts_engagement=_accounts(db, config, last),
        sessions=tuple(
            session_week(w, last, starts.get(w, 0), weeks.get(w, (0,))[0]) for w in week_range
        ),
        retention=_retention(db, last),
        segments=by_size(segments),
        **base,
    )


def _headline(
    db: Backend, first: int, last: int, segmented: bool
) -> dict[str, tuple[tuple[DailyActive, ...], float | None, float | None]]:
    """Daily active users, stickiness and interactions per user (per segment)."""
    starts: dict[str, dict[int, int]] = defaultdict(dict)
    for segment, day, n in db.rows(model.daily_starts(segmented)):
        starts[segment][int(day)] = int(n)
    ends: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
    for size in (7, MONTH):
        for segment, stop, n in db.rows(model.window_ends(size, segmented)):
            ends[(segment, size)][int(stop)] = int(n)
    month_events = {s: int(n) for s, n in db.rows(model.window_events(last, segmented))}
    out = {}
    for segment, by_day in starts.items():
        week_ends, month_ends = ends[(segment, 7)], ends[(segment, MONTH)]
        # Stretches that began before the first day and ended by then count for nothing.
        wau = mau = 0
        daily = []
        for day in range(first, last + 1):
            dau = by_day.get(day, 0)
            wau += dau - week_ends.get(day, 0)
            mau += dau - month_ends.get(day, 0)
            daily.append(DailyActive(day_date(day), dau, wau, mau))
        ratios = [d.dau / d.mau for d in daily[-MONTH:] if d.mau]
        end_mau = daily[-1].mau
        out[segment] = (
            tuple(daily),
            sum(ratios) / len(ratios) if ratios else None,
            month_events.get(segment, 0) / end_mau if end_mau else None,
        )
    return out


def _histogram(db: Backend, last: int, n: int) -> tuple[int, ...]:
    counts = [0] * n
    for k, users in db.rows(model.histogram(last, n)):
        counts[int(k) - 1] = int(users)
    return tuple(counts)


def _retention(db: Backend, last: int) -> tuple[Any, ...]:
    end = last_complete_week(last)
    cells: dict[int, dict[int, int]] = defaultdict(dict)
    for cohort, k, n in db.rows(model.retention()):
        cells[int(cohort)][int(k)] = int(n)
    return tuple(
        retention_cohort(c, row[0], [row.get(k, 0) for k in range(end - c + 1)])
        for c, row in sorted(cells.items())
        if c <= end
    )


def _session_lengths(db: Backend) -> tuple[int, float | None, float | None]:
    ((n,),) = db.rows(model.session_lengths())
    n = int(n)
    if not n:
        return 0, None, None
    mid = n // 2
    median_ranks = [mid + 1] if n % 2 else [mid, mid + 1]
    p90_rank = max(math.ceil(0.9 * n) - 1, 0) + 1
    values = {
        int(rank): float(v) for rank, v in db.rows(model.session_ranks([*median_ranks, p90_rank]))
    }
    median_s = values[mid + 1] if n % 2 else (values[mid] + values[mid + 1]) / 2
    return n, median_s, values[p90_rank]


def _milestones(db: Backend, users: int, accounts: int) -> tuple[Any, ...]:
    took: dict[tuple[str, str], list[float]] = defaultdict(list)
    reached: dict[tuple[str, str], int] = defaultdict(int)
    inactive: dict[tuple[str, str], int] = defaultdict(int)
    for name, scope, t, seconds, first in db.rows(model.milestones()):
        key = (str(name), str(scope))
        reached[key] += 1
        if first is None:
            inactive[key] += 1
        elif seconds is None:
            seconds = max(t - first, 0.0)
        if seconds is not None:
            took[key].append(seconds / 86_400)
    out = []
    for key, n in reached.items():
        total = (users if key[1] == "user" else accounts) + inactive[key]
        out.append(milestone_stat(key[0], key[1], n, total, sorted(took[key])))
    return by_share(out)


def _accounts(db: Backend, config: Engagement, last: int) -> tuple[Any, ...]:
    start = last - WINDOW + 1
    this_week = (last + 3) // 7
    since = last - config.touchpoint_window.days + 1
    features: dict[str, dict[str, int]] = defaultdict(dict)
    for account, feature, n in db.rows(model.account_features(start, last)):
        features[account][feature] = int(n)
    weekly: dict[str, dict[int, int]] = defaultdict(dict)
    for account, week, n in db.rows(model.account_weeks(this_week - 8, this_week)):
        weekly[account][int(week)] = int(n)
    touch: Mapping[str, int] = {}
    if config.touchpoints:
        touch = {a: int(n) for a, n in db.rows(model.account_touchpoints(since, last))}
    seats = {a: float(s) for a, s in db.rows(model.account_seats())}
    out = []
    for account, days, active_users, members in db.rows(model.account_activity(start, last)):
        weeks = weekly.get(account, {})
        out.append(
            account_stat(
                config,
                account,
                active_days=int(days),
                features=features.get(account, {}),
                active_users=int(active_users),
                users=int(members),
                weekly=tuple(weeks.get(w, 0) for w in range(this_week - 8, this_week)),
                seats=seats.get(account),
                touch_days=touch.get(account, 0),
            )
        )
    return by_concern(out)


def _arms(db: Backend, sql: str) -> dict[str, tuple[dict[tuple[str, bool], ArmSums], float]]:
    """Per nudge: assignment sums by (arm, window ended), and the latest assignment."""
    out: dict[str, tuple[dict[tuple[str, bool], ArmSums], float]] = {}
    for nudge, arm, done, n, y, x, x2, xy, last in db.rows(sql):
        sums, latest = out.get(nudge, ({}, -math.inf))
        sums[(str(arm), bool(done))] = ArmSums(
            int(n), float(y), float(y), float(x), float(x2), float(xy)
        )
        out[nudge] = (sums, max(latest, float(last)))
    return out


def _nudges(db: Backend) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    users: dict[str, dict[str, int]] = defaultdict(dict)
    for nudge, kind, n in db.rows(model.nudge_users()):
        users[nudge][kind] = int(n)
    goals = {n: (str(g), float(w)) for n, g, w in db.rows(model.nudge_goals())}
    converted: dict[str, dict[str, int]] = defaultdict(dict)
    arms: dict[str, tuple[dict[tuple[str, bool], ArmSums], float]] = {}
    end = 0.0
    if users:
        ((end,),) = db.rows("SELECT max(t) FROM ev")
    if goals:
        for nudge, kind, n in db.rows(model.nudge_conversions()):
            converted[nudge][kind] = int(n)
        arms = _arms(db, model.nudge_arms())
    programme: tuple[Any, ...] = ()
    if any("global holdout" in kinds for kinds in users.values()):
        sums, last = _arms(db, model.programme_arms()).get("", ({}, -math.inf))
        stat = programme_stat(sums, last, float(end))
        programme = () if stat is None else (stat,)
    return tuple(
        nudge_stat(
            name,
            users[name],
            users[name].get("suppressed", 0),
            goals.get(name),
            converted.get(name, {}),
            assignment_lift(*arms[name], float(end)) if name in arms else None,
        )
        for name in sorted(users)
    ), programme
