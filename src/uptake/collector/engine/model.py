"""The report's measures and dimensions as SQL, each defined once, over the typed table.

In the spirit of a Cube.js data model: a few *dimensions* (``day``, ``week``, what is
activity) are columns of the prepared tables ``ev`` (every event up to the report's last
day), ``act`` (activity only), ``ud`` (distinct user-days) and ``uw`` (distinct
user-weeks); each *measure* is one query over them, returning counts that the shared
functions of :mod:`uptake.collector.metrics` turn into figures, so a ratio, a score or a
p-value is computed by the same Python as the reference. The SQL is the common subset of
DuckDB and ClickHouse (window functions only where both agree: ``row_number``, ``lead``
and ``lag`` guarded by row numbers, since ClickHouse gives 0 where DuckDB gives NULL).
"""

from __future__ import annotations

from collections.abc import Iterable

from .backends import Backend
from .table import COLUMNS

__all__ = ["prepare"]

#: The activity dimension: an event counts when it has an activity name that is neither
#: uptake's own nor marked inactive by the host.
ACTIVE = "name IS NOT NULL AND name NOT IN (SELECT name FROM params WHERE role = 'inactive')"
#: The ISO week of a day (Monday to Sunday), as :func:`uptake.rules.calendar.week_of`.
WEEK = "CAST(floor((day + 3) / 7) AS BIGINT)"


def prepare(
    db: Backend,
    *,
    zone: str | None,
    offset: float,
    until: int | None,
    inactive: Iterable[str],
    touchpoints: Iterable[str],
    days_known: bool = False,
) -> None:
    """Build the prepared tables from ``raw`` (whose ``day`` and ``week`` are filled when
    ``days_known``; else they are computed here)."""
    params = [("inactive", n) for n in sorted(set(inactive))]
    params += [("touch", n) for n in sorted(set(touchpoints))]
    db.names("params", params)
    keep = "" if until is None else f" WHERE day <= {int(until)}"
    if days_known:
        db.view("ev", "SELECT * FROM raw" + keep)
    else:
        others = ", ".join(n for n, _ in COLUMNS if n not in ("day", "week"))
        db.table(
            "ev",
            f"SELECT {others}, day, {WEEK} AS week FROM (SELECT {others}, "
            f"{db.day(zone, offset)} AS day FROM raw) d{keep}",
        )
    db.view("act", f"SELECT * FROM ev WHERE {ACTIVE}")
    db.table("ud", "SELECT DISTINCT user, day, week FROM act")
    db.table(
        "uw",
        "SELECT user, week, "
        "row_number() OVER (PARTITION BY user ORDER BY week) AS rn, "
        "count(*) OVER (PARTITION BY user) AS cnt, "
        "lag(week) OVER (PARTITION BY user ORDER BY week) AS prev_week, "
        "lead(week) OVER (PARTITION BY user ORDER BY week) AS next_week "
        "FROM (SELECT DISTINCT user, week FROM ud) w",
    )


def totals() -> str:
    """Events, accounts named anywhere, last day with any event."""
    return "SELECT count(*), count(DISTINCT account), max(day) FROM ev"


def active_totals() -> str:
    """Active users, first and last active day, active accounts."""
    return (
        "SELECT (SELECT count(DISTINCT user) FROM ud), (SELECT min(day) FROM ud), "
        "(SELECT max(day) FROM ud), "
        "(SELECT count(DISTINCT account) FROM act WHERE account IS NOT NULL)"
    )


def _segment_join(segmented: bool) -> tuple[str, str]:
    if not segmented:
        return "'' AS segment", ""
    return (
        "coalesce(s.trait, '(none)') AS segment",
        " LEFT JOIN seg s ON s.user = x.user",
    )


def segments() -> str:
    """Each user's segment: the latest identify or group call of theirs with the trait."""
    return (
        "SELECT user, trait FROM (SELECT user, trait, row_number() OVER "
        "(PARTITION BY user ORDER BY t DESC, seq DESC) AS rn FROM ev "
        "WHERE trait IS NOT NULL) r WHERE rn = 1"
    )


def daily_starts(segmented: bool) -> str:
    """Active users per day (and segment)."""
    seg, join = _segment_join(segmented)
    return f"SELECT {seg}, x.day, count(*) FROM ud x{join} GROUP BY segment, x.day"


def window_ends(size: int, segmented: bool) -> str:
    """Per day, users whose trailing ``size``-day window stops covering them that day.

    A user active on day x is in the window of days x .. x + size - 1, until their next
    active day starts a new stretch: the stretches are disjoint, so users in the window
    of day d = active-day starts up to d minus ends up to d.
    """
    seg, join = _segment_join(segmented)
    return (
        f"SELECT {seg}, CASE WHEN x.rn < x.cnt AND x.nd < x.day + {size} THEN x.nd "
        f"ELSE x.day + {size} END AS stop, count(*) FROM (SELECT user, day, "
        "row_number() OVER (PARTITION BY user ORDER BY day) AS rn, "
        "count(*) OVER (PARTITION BY user) AS cnt, "
        "lead(day) OVER (PARTITION BY user ORDER BY day) AS nd FROM ud) x"
        f"{join} GROUP BY segment, stop"
    )


def window_events(last: int, segmented: bool) -> str:
    """Active events in the 30 days ending on ``last`` (per segment)."""
    seg, join = _segment_join(segmented)
    return (
        f"SELECT {seg}, count(*) FROM act x{join} "
        f"WHERE x.day > {last - 30} AND x.day <= {last} GROUP BY segment"
    )


def segment_users() -> str:
    """Active users per segment."""
    seg, join = _segment_join(True)
    return f"SELECT {seg}, count(*) FROM (SELECT DISTINCT user FROM ud) x{join} GROUP BY segment"


def histogram(last: int, n: int) -> str:
    """Users by their number of active days among the ``n`` ending on ``last``."""
    return (
        "SELECT k, count(*) FROM (SELECT user, count(*) AS k FROM ud "
        f"WHERE day > {last - n} AND day <= {last} GROUP BY user) h GROUP BY k"
    )


def lifecycle() -> str:
    """Per week: active, new, returning (active the week before), and gone next week."""
    return (
        "SELECT week, count(*), sum(CASE WHEN rn = 1 THEN 1 ELSE 0 END), "
        "sum(CASE WHEN rn > 1 AND prev_week = week - 1 THEN 1 ELSE 0 END), "
        "sum(CASE WHEN rn = cnt OR next_week > week + 1 THEN 1 ELSE 0 END) "
        "FROM uw GROUP BY week"
    )


def retention() -> str:
    """Users by first active week (cohort) and weeks since, who were active then."""
    return (
        "SELECT cohort, week - cohort AS k, count(*) FROM (SELECT user, week, "
        "min(week) OVER (PARTITION BY user) AS cohort FROM uw) c GROUP BY cohort, k"
    )


def session_starts() -> str:
    """ "Session Started" events per week."""
    return "SELECT week, count(*) FROM ev WHERE name = 'Session Started' GROUP BY week"


def session_lengths() -> str:
    """How many "Session Ended" events have a duration."""
    return "SELECT count(*) FROM ev WHERE name = 'Session Ended' AND duration IS NOT NULL"


def session_ranks(ranks: Iterable[int]) -> str:
    """The session lengths at the given 1-based ranks, shortest first."""
    wanted = ", ".join(str(int(r)) for r in sorted(set(ranks)))
    return (
        "SELECT rk, duration FROM (SELECT duration, row_number() OVER (ORDER BY duration) "
        "AS rk FROM ev WHERE name = 'Session Ended' AND duration IS NOT NULL) r "
        f"WHERE rk IN ({wanted})"
    )


def milestones() -> str:
    """Each subject's first "Milestone Reached" per milestone, with the subject's first
    activity (NULL when it never was active)."""
    return (
        "SELECT f.milestone, f.scope, f.t, f.took, a.first FROM (SELECT milestone, scope, "
        "subject, t, took, row_number() OVER (PARTITION BY milestone, scope, subject "
        "ORDER BY t, seq) AS rn FROM (SELECT milestone, scope, t, took, seq, CASE WHEN "
        "scope = 'account' THEN account ELSE user END AS subject FROM ev "
        "WHERE milestone IS NOT NULL) m WHERE subject IS NOT NULL) f "
        "LEFT JOIN (SELECT 'user' AS scope, user AS subject, min(t) AS first FROM act "
        "GROUP BY user UNION ALL SELECT 'account' AS scope, account AS subject, "
        "min(t) AS first FROM act WHERE account IS NOT NULL GROUP BY account) a "
        "ON a.scope = f.scope AND a.subject = f.subject WHERE f.rn = 1"
    )


def features(last: int) -> str:
    """Per feature: users ever, users in the last 30 days, and their days of use added up."""
    return (
        "SELECT feature, count(*), sum(CASE WHEN n > 0 THEN 1 ELSE 0 END), sum(n) FROM "
        "(SELECT feature, user, count(DISTINCT CASE WHEN day > "
        f"{last - 30} AND day <= {last} THEN day END) AS n FROM act "
        "WHERE feature IS NOT NULL GROUP BY feature, user) f GROUP BY feature"
    )


def account_activity(start: int, last: int) -> str:
    """Per active account: active days and members active in the window, members ever."""
    inside = f"day >= {start} AND day <= {last}"
    return (
        f"SELECT account, count(DISTINCT CASE WHEN {inside} THEN day END), "
        f"count(DISTINCT CASE WHEN {inside} THEN user END), count(DISTINCT user) "
        "FROM act WHERE account IS NOT NULL GROUP BY account"
    )


def account_features(start: int, last: int) -> str:
    """Per account and feature ever used: its days of use in the window."""
    return (
        f"SELECT account, feature, count(DISTINCT CASE WHEN day >= {start} AND day <= {last} "
        "THEN day END) FROM act WHERE account IS NOT NULL AND feature IS NOT NULL "
        "GROUP BY account, feature"
    )


def account_weeks(first_week: int, end_week: int) -> str:
    """Weekly active members per account in weeks first_week .. end_week - 1."""
    return (
        "SELECT account, week, count(DISTINCT user) FROM act WHERE account IS NOT NULL "
        f"AND week >= {first_week} AND week < {end_week} GROUP BY account, week"
    )


def account_touchpoints(since: int, last: int) -> str:
    """Per account: days with a touchpoint (active or not) in the window."""
    return (
        "SELECT account, count(DISTINCT day) FROM ev WHERE account IS NOT NULL AND "
        "name IN (SELECT name FROM params WHERE role = 'touch') "
        f"AND day >= {since} AND day <= {last} GROUP BY account"
    )


def account_seats() -> str:
    """Per account: the seats of its latest group call that gives them."""
    return (
        "SELECT account, seats FROM (SELECT account, seats, row_number() OVER (PARTITION BY "
        "account ORDER BY t DESC, seq DESC) AS rn FROM ev WHERE kind = 'group' AND "
        "account IS NOT NULL AND seats IS NOT NULL) s WHERE rn = 1"
    )


def nudge_users() -> str:
    """Per nudge and decision: distinct users; "suppressed" counts decisions."""
    return (
        "SELECT nudge, nudge_kind, CASE WHEN nudge_kind = 'suppressed' THEN count(*) "
        "ELSE count(DISTINCT user) END FROM ev WHERE nudge IS NOT NULL "
        "GROUP BY nudge, nudge_kind"
    )


_GOALS = (
    "SELECT nudge, goal, goal_within FROM (SELECT nudge, goal, goal_within, row_number() "
    "OVER (PARTITION BY nudge ORDER BY t DESC, seq DESC) AS rn FROM ev "
    "WHERE goal IS NOT NULL) g WHERE rn = 1"
)


def nudge_goals() -> str:
    """Per nudge: the goal and window of its latest fired or held-out decision naming one."""
    return _GOALS


def nudge_conversions() -> str:
    """Per nudge: users shown it (or held out) who reached its goal within its window
    after their first such decision."""
    return (
        "SELECT f.nudge, f.nudge_kind, count(DISTINCT f.user) FROM (SELECT nudge, "
        "nudge_kind, user, min(t) AS t0 FROM ev WHERE nudge_kind IN ('shown', 'held out') "
        f"GROUP BY nudge, nudge_kind, user) f JOIN ({_GOALS}) g ON g.nudge = f.nudge "
        "JOIN (SELECT user, name AS target, t FROM ev WHERE name IN (SELECT goal FROM "
        f"({_GOALS}) gn) UNION ALL SELECT user, milestone AS target, t FROM ev WHERE "
        f"milestone IN (SELECT goal FROM ({_GOALS}) gm)) r "
        "ON r.user = f.user AND r.target = g.goal "
        "WHERE r.t >= f.t0 AND r.t <= f.t0 + g.goal_within GROUP BY f.nudge, f.nudge_kind"
    )


#: Each user's first assignment per nudge (fired, held out or global holdout): the moment
#: intent to treat measures from.
_FIRST = (
    "SELECT nudge, user, nudge_kind AS arm, t AS t0, day AS d0 FROM (SELECT nudge, user, "
    "nudge_kind, t, day, row_number() OVER (PARTITION BY nudge, user ORDER BY t, seq) AS rn "
    "FROM ev WHERE nudge_kind IN ('fired', 'held out', 'global holdout')) f WHERE rn = 1"
)
_ARMS = f"SELECT * FROM ({_FIRST}) a0 WHERE arm <> 'global holdout'"
#: When a goal (an event or a milestone) was reached, per user.
_TARGETS = (
    f"SELECT user, name AS target, t FROM ev WHERE name IN (SELECT goal FROM ({_GOALS}) gn) "
    f"UNION ALL SELECT user, milestone AS target, t FROM ev WHERE milestone IN "
    f"(SELECT goal FROM ({_GOALS}) gm)"
)


def _pre(assigned: str, per_nudge: bool) -> str:
    """Per assigned user: active days in the 28 days before the assignment day (CUPED)."""
    key, group = ("a.nudge AS nudge, ", "a.nudge, ") if per_nudge else ("", "")
    return (
        f"SELECT {key}a.user AS user, count(*) AS x FROM ({assigned}) a JOIN ud u "
        f"ON u.user = a.user WHERE u.day >= a.d0 - 28 AND u.day < a.d0 GROUP BY {group}a.user"
    )


def _sums(nudge: str, arm: str, done: str, assigned: str, joins: str) -> str:
    x, y = "coalesce(p.x, 0)", "coalesce(c.y, 0)"
    return (
        f"SELECT {nudge} AS gn, {arm} AS ga, CASE WHEN {done} THEN 1 ELSE 0 END AS gd, "
        f"count(*), sum({y}), sum({x}), sum({x} * {x}), sum({x} * {y}), max(a.t0) "
        f"FROM ({assigned}) a {joins} GROUP BY gn, ga, gd"
    )


def nudge_arms() -> str:
    """Per nudge, arm (fired or held out) and whether the goal window has ended: users by
    their first assignment, and the sums of reached-the-goal ``y`` and pre-assignment
    active days ``x`` (``y``, ``x``, ``x²``, ``xy``), and the latest assignment."""
    converted = (
        f"SELECT a.nudge AS nudge, a.user AS user, 1 AS y FROM ({_ARMS}) a JOIN ({_GOALS}) g "
        f"ON g.nudge = a.nudge JOIN ({_TARGETS}) r ON r.user = a.user AND r.target = g.goal "
        "WHERE r.t >= a.t0 AND r.t <= a.t0 + g.goal_within GROUP BY a.nudge, a.user"
    )
    joins = (
        f"JOIN ({_GOALS}) g ON g.nudge = a.nudge LEFT JOIN ({converted}) c ON "
        f"c.nudge = a.nudge AND c.user = a.user LEFT JOIN ({_pre(_ARMS, True)}) p "
        "ON p.nudge = a.nudge AND p.user = a.user"
    )
    done = "a.t0 + g.goal_within <= (SELECT max(t) FROM ev)"
    return _sums("a.nudge", "a.arm", done, _ARMS, joins)


#: Days after the first assignment in which a user counts as retained (the programme).
RETAINED_FROM, RETAINED_TO = 28, 35


def programme_arms() -> str:
    """The whole nudge programme: users by the arm of their first assignment to any nudge
    (global holdout or not), retained = active on a day 28-35 days after it, with the
    same sums as :func:`nudge_arms`."""
    first = (
        "SELECT user, arm, t0, d0 FROM (SELECT user, nudge_kind AS arm, t AS t0, day AS d0, "
        "row_number() OVER (PARTITION BY user ORDER BY t, seq) AS rn FROM ev WHERE "
        "nudge_kind IN ('fired', 'held out', 'global holdout')) f WHERE rn = 1"
    )
    retained = (
        f"SELECT a.user AS user, 1 AS y FROM ({first}) a JOIN ud u ON u.user = a.user WHERE "
        f"u.day >= a.d0 + {RETAINED_FROM} AND u.day <= a.d0 + {RETAINED_TO} GROUP BY a.user"
    )
    joins = (
        f"LEFT JOIN ({retained}) c ON c.user = a.user LEFT JOIN ({_pre(first, False)}) p "
        "ON p.user = a.user"
    )
    arm = "CASE WHEN a.arm = 'global holdout' THEN 'global holdout' ELSE 'fired' END"
    done = f"a.d0 + {RETAINED_TO} <= (SELECT max(day) FROM ev)"
    return _sums("''", arm, done, first, joins)
