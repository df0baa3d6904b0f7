"""Activation discovery as SQL over the engine's typed table ``raw`` (DuckDB or chdb).

The tables, built once per run, in the common SQL of both engines:

========= ===================================================================
``ev``    every event up to the last day (as the report's ``ev``)
``dact``  activity of subjects: ``s`` (the user, or the account), time, day, name, feature
``dsub``  the cohort: each subject first seen early enough to be observed for the whole
          outcome window, with its first time and day, signup ``week`` and outcome ``y``
``dcnt``  per subject and candidate family (``kid``, see ``dkeys``): how many times it
          happened within each early window, one column ``n0``, ``n1``, ... per window
========= ===================================================================

A family is an event name, a feature, the distinct active days or the distinct
features. What a Python loop then sees are counts of subjects by family, window, count
(capped), signup week and outcome: a few thousand rows whatever the events.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..engine.backends import Backend
from ..engine.model import ACTIVE, WEEK
from ..engine.table import COLUMNS

__all__ = [
    "candidate_counts",
    "cohort",
    "cohort_totals",
    "counts",
    "keys",
    "prepare",
    "rule_counts",
]

DAY = 86_400


def _subject(unit: str) -> str:
    return "account" if unit == "account" else "user"


def prepare(
    db: Backend,
    *,
    day_sql: str,
    days_known: bool,
    until: int | None,
    inactive: Sequence[str],
    goal: str | None,
) -> int | None:
    """Build ``ev`` from ``raw`` and return the last day with an event (None: no event)."""
    params = [("inactive", n) for n in sorted(set(inactive))]
    if goal is not None:
        params.append(("goal", goal))
    db.names("params", params)
    keep = "" if until is None else f" WHERE day <= {int(until)}"
    if days_known:
        db.view("ev", "SELECT * FROM raw" + keep)
    else:
        others = ", ".join(n for n, _ in COLUMNS if n not in ("day", "week"))
        db.table(
            "ev",
            f"SELECT {others}, day, {WEEK} AS week FROM (SELECT {others}, "
            f"{day_sql} AS day FROM raw) d{keep}",
        )
    ((count, last),) = db.rows("SELECT count(*), max(day) FROM ev")
    return int(last) if int(count) else None


def cohort(db: Backend, *, unit: str, window: tuple[int, int], last: int, goal: bool) -> None:
    """Build ``dact`` and ``dsub`` (the cohort and its outcome)."""
    s = _subject(unit)
    start, end = window
    db.view(
        "dact", f"SELECT {s} AS s, t, day, name, feature FROM ev WHERE {ACTIVE} AND {s} IS NOT NULL"
    )
    outcome = (
        f"(SELECT {s} AS s, day FROM ev WHERE {s} IS NOT NULL AND name IN "
        "(SELECT name FROM params WHERE role = 'goal'))"
        if goal
        else "dact"
    )
    # Subjects who reached a goal before its window are no longer at stake: left out.
    leave_out = goal and start > 0
    db.table(
        "dfirst0" if leave_out else "dfirst",
        "SELECT s, min(t) AS first_t, min(day) AS first_day FROM dact GROUP BY s "
        f"HAVING min(day) + {int(end)} <= {int(last)}",
    )
    if leave_out:
        db.table(
            "dfirst",
            "SELECT f.s AS s, f.first_t AS first_t, f.first_day AS first_day FROM dfirst0 f "
            f"LEFT JOIN (SELECT DISTINCT x.s AS s FROM {outcome} x JOIN dfirst0 g "
            f"ON g.s = x.s WHERE x.day < g.first_day + {int(start)}) e ON e.s = f.s "
            "WHERE e.s IS NULL",
        )
    db.table(
        "dsub",
        "SELECT f.s AS s, f.first_t AS first_t, f.first_day AS first_day, "
        f"CAST(floor((f.first_day + 3) / 7) AS BIGINT) AS week, "
        "CASE WHEN o.s IS NULL THEN 0 ELSE 1 END AS y FROM dfirst f LEFT JOIN "
        f"(SELECT DISTINCT x.s AS s FROM {outcome} x JOIN dfirst g ON g.s = x.s "
        f"WHERE x.day >= g.first_day + {int(start)} AND x.day <= g.first_day + {int(end)}) o "
        "ON o.s = f.s",
    )


def counts(db: Backend, days: Sequence[int]) -> None:
    """Build ``dkeys`` and ``dcnt``: per subject and family, counts in each early window."""
    longest = max(days) * DAY
    db.table(
        "dearly",
        "SELECT x.s AS s, d.week AS week, d.y AS y, x.name AS name, x.feature AS feature, "
        "x.t - d.first_t AS age, x.day - d.first_day AS dd FROM dact x "
        f"JOIN dsub d ON d.s = x.s WHERE x.t <= d.first_t + {longest}",
    )
    by_time = ", ".join(
        f"CAST(sum(CASE WHEN age <= {n * DAY} THEN 1 ELSE 0 END) AS BIGINT) AS n{i}"
        for i, n in enumerate(days)
    )
    by_day = ", ".join(
        f"CAST(count(DISTINCT CASE WHEN dd < {n} THEN dd END) AS BIGINT) AS n{i}"
        for i, n in enumerate(days)
    )
    by_feature = ", ".join(
        f"CAST(count(DISTINCT CASE WHEN age <= {n * DAY} THEN feature END) AS BIGINT) AS n{i}"
        for i, n in enumerate(days)
    )
    db.table(
        "dcnt0",
        f"SELECT 'event' AS kind, name AS key, s, week, y, {by_time} FROM dearly "
        "WHERE name NOT IN (SELECT name FROM params WHERE role = 'goal') "
        "GROUP BY name, s, week, y "
        f"UNION ALL SELECT 'feature' AS kind, feature AS key, s, week, y, {by_time} "
        "FROM dearly WHERE feature IS NOT NULL GROUP BY feature, s, week, y "
        f"UNION ALL SELECT 'active_days' AS kind, '' AS key, s, week, y, {by_day} "
        "FROM dearly GROUP BY s, week, y "
        f"UNION ALL SELECT 'features' AS kind, '' AS key, s, week, y, {by_feature} "
        "FROM dearly WHERE feature IS NOT NULL GROUP BY s, week, y",
    )
    db.table(
        "dkeys",
        "SELECT kind, key, CAST(row_number() OVER (ORDER BY kind, key) AS BIGINT) AS kid "
        "FROM (SELECT DISTINCT kind, key FROM dcnt0) k",
    )
    columns = ", ".join(f"c.n{i} AS n{i}" for i in range(len(days)))
    db.table(
        "dcnt",
        f"SELECT k.kid AS kid, c.s AS s, c.week AS week, c.y AS y, {columns} FROM dcnt0 c "
        "JOIN dkeys k ON k.kind = c.kind AND k.key = c.key",
    )


def keys(db: Backend) -> dict[int, tuple[str, str]]:
    """Return each family's id and (kind, key)."""
    return {int(kid): (str(kind), str(key)) for kind, key, kid in db.rows("SELECT * FROM dkeys")}


def cohort_totals(db: Backend) -> list[tuple[int, int, int]]:
    """Count cohort subjects by signup week and outcome: (week, y, subjects)."""
    return [
        (int(w), int(y), int(n))
        for w, y, n in db.rows("SELECT week, y, count(*) FROM dsub GROUP BY week, y")
    ]


def candidate_counts(
    db: Backend, windows: int, cap: int
) -> list[tuple[int, int, int, int, int, int]]:
    """Count subjects by family, window index, count (capped), signup week and outcome."""
    parts = [
        f"SELECT kid, {i} AS w, least(n{i}, {int(cap)}) AS k, week, y, count(*) AS subjects "
        f"FROM dcnt WHERE n{i} > 0 GROUP BY kid, k, week, y"
        for i in range(windows)
    ]
    return [
        (int(kid), int(w), int(k), int(week), int(y), int(n))
        for kid, w, k, week, y, n in db.rows(" UNION ALL ".join(parts))
    ]


def rule_counts(
    db: Backend, picks: Sequence[tuple[int, int, int]], rules: Sequence[Sequence[int]]
) -> list[tuple[int, int, list[int]]]:
    """Count subjects who met every criterion of each rule, by signup week and outcome.

    ``picks`` are criteria (family id, window index, at least this count); a rule (a
    pair, or a declared milestone) lists the picks it needs. Returns (week, y,
    [subjects per rule]).
    """
    flags = ", ".join(
        f"max(CASE WHEN kid = {int(kid)} AND n{int(w)} >= {int(k)} THEN 1 ELSE 0 END) AS f{j}"
        for j, (kid, w, k) in enumerate(picks)
    )
    both = ", ".join(
        "CAST(sum(" + " * ".join(f"f{int(i)}" for i in rule) + ") AS BIGINT)" for rule in rules
    )
    rows = db.rows(
        f"SELECT week, y, {both} FROM (SELECT s, week, y, {flags} FROM dcnt "
        "GROUP BY s, week, y) p GROUP BY week, y"
    )
    return [(int(w), int(y), [int(v) for v in rest]) for w, y, *rest in rows]
