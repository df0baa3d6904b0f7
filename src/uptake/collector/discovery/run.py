"""Run a discovery: load the events into the engine, count in SQL, measure in closed form."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, timedelta, tzinfo
from itertools import combinations

import attrs

from ...definitions import OWN_EVENTS
from ...rules.calendar import Calendar
from ...rules.milestones import Milestone
from ..engine import _ingest, _zone
from ..engine.backends import Backend, DuckDBBackend, open_backend
from ..figures import _EPOCH, day_date, zone_name
from ..metrics import Record
from ..sources import Source
from . import queries
from .candidates import Candidate, Discovery, Raw, measure, rank, singles
from .options import DiscoverOptions
from .reader import read_store
from .stats import family_z

__all__ = ["run", "run_loaded"]


def run(
    records: Iterable[Record],
    options: DiscoverOptions,
    *,
    tz: tzinfo | None = None,
    inactive: Iterable[str] = (),
    until: date | None = None,
    engine: str = "duckdb",
    seats_trait: str = "seats",
    declared: Sequence[Milestone] = (),
) -> Discovery:
    """Find the candidates in event records (see :func:`uptake.discover`), and measure
    the ``declared`` milestones."""
    zone = _zone(tz)
    db = open_backend(engine)
    try:
        db.create()
        # A store is typed in DuckDB whichever engine runs the queries.
        days_known = isinstance(records, Source) and read_store(
            db, records, DuckDBBackend.day(*zone), Calendar(tz)
        )
        if not days_known:
            days_known = _ingest(db, records, seats_trait, None, tz, zone)
        return run_loaded(
            db, days_known, options, tz=tz, inactive=inactive, until=until, declared=declared
        )
    finally:
        db.close()


def run_loaded(
    db: Backend,
    days_known: bool,
    options: DiscoverOptions,
    *,
    tz: tzinfo | None = None,
    inactive: Iterable[str] = (),
    until: date | None = None,
    declared: Sequence[Milestone] = (),
) -> Discovery:
    """Find the candidates in the events a backend's ``raw`` table already holds (the
    report's, through its hook), and measure the ``declared`` milestones.

    It builds its own tables over ``raw`` (``ev`` and ``params`` included, replacing the
    report's: run it after the report).
    """
    found = _discover(db, options, tz, inactive, until, days_known, _zone(tz))
    return _measure_declared(db, found, declared) if declared and found.cohort else found


def _discover(
    db: Backend,
    options: DiscoverOptions,
    tz: tzinfo | None,
    inactive: Iterable[str],
    until: date | None,
    days_known: bool,
    zone: tuple[str | None, float],
) -> Discovery:
    last = queries.prepare(
        db,
        day_sql=db.day(*zone),
        days_known=days_known,
        until=None if until is None else (until - _EPOCH).days,
        inactive=sorted(OWN_EVENTS | frozenset(inactive)),
        goal=options.goal,
    )
    empty = Discovery(
        options=options,
        timezone=zone_name(tz),
        engine=db.name,
        data_end=None if last is None else day_date(last),
        cohort=0,
        outcome=0,
        first_signup=None,
        last_signup=None,
        weeks=0,
        tested=0,
        z=0.0,
        candidates=(),
        variants=(),
    )
    if last is None:
        return empty
    queries.cohort(
        db,
        unit=options.unit,
        window=options.outcome_window,
        last=last,
        goal=options.goal is not None,
    )
    totals = _totals(db)
    if not totals:
        return empty
    ((first, final),) = db.rows("SELECT min(first_day), max(first_day) FROM dsub")
    queries.counts(db, options.days)
    keys = queries.keys(db)
    rows = queries.candidate_counts(db, len(options.days), options.max_count)
    raw = singles(keys, rows, totals, options)
    picks = _positive_families(raw, totals)[: options.pairs]
    # The adjustment counts every pair the picks could make; only the strong ones are
    # paired (pairing weak rules would be a search the adjustment does not cover).
    tested = len(raw) + math.comb(len(picks), 2)
    z = family_z(tested)
    measured = [measure(*r, totals=totals, z=z) for r in raw]
    scores = {(c.kind, c.name, c.count, c.days): c.score for c in measured}
    picks = [r for r in picks if scores[(r[0], r[1], r[2], r[3])] > 0]
    pairs = list(combinations(range(len(picks)), 2))
    paired = _pairs(db, picks, pairs, keys, measured, totals, options, z)
    cohort = sum(n for n, _ in totals.values())
    return Discovery(
        options=options,
        timezone=zone_name(tz),
        engine=db.name,
        data_end=day_date(last),
        cohort=cohort,
        outcome=sum(r for _, r in totals.values()),
        first_signup=day_date(int(first)),
        last_signup=day_date(int(final)),
        weeks=len(totals),
        tested=tested,
        z=z,
        candidates=tuple(rank(measured, paired)),
        variants=tuple(sorted(measured + paired, key=lambda c: (-c.score, c.days, c.count))),
    )


def _positive_families(raw: list[Raw], totals: dict[int, tuple[int, int]]) -> list[Raw]:
    """Return the best variant of each family positively associated with the outcome, by phi
    (the score before its adjustment, which needs to know how many pairs are tested)."""
    n = sum(t for t, _ in totals.values())
    retained = sum(r for _, r in totals.values())
    best: dict[tuple[str, str | None], tuple[float, Raw]] = {}
    for r in raw:
        did = sum(d for d, _ in r[4].values())
        a = sum(x for _, x in r[4].values())
        lift = a / did - (retained - a) / (n - did)
        spread = did / n * (1 - did / n)
        strength = lift * spread**0.5
        family = (r[0], r[1])
        if lift > 0 and (family not in best or strength > best[family][0]):
            best[family] = (strength, r)
    return [r for _, r in sorted(best.values(), key=lambda x: -x[0])]


def _pairs(
    db: Backend,
    picks: list[Raw],
    pairs: list[tuple[int, int]],
    keys: dict[int, tuple[str, str]],
    measured: list[Candidate],
    totals: dict[int, tuple[int, int]],
    options: DiscoverOptions,
    z: float,
) -> list[Candidate]:
    """Measure the AND of each pair of picked candidates."""
    if not pairs:
        return []
    ids = {(kind, key or None): kid for kid, (kind, key) in keys.items()}
    where = [(ids[(r[0], r[1])], options.days.index(r[3]), r[2]) for r in picks]
    found = {(c.kind, c.name, c.count, c.days): c for c in measured}
    parts = [found[(r[0], r[1], r[2], r[3])] for r in picks]
    weekly: list[dict[int, tuple[int, int]]] = [{} for _ in pairs]
    for week, y, both in queries.rule_counts(db, where, pairs):
        for j, n in enumerate(both):
            old = weekly[j].get(week, (0, 0))
            weekly[j][week] = (old[0] + n, old[1] + (n if y else 0))
    cohort = sum(t for t, _ in totals.values())
    least = max(options.min_users, options.min_reach * cohort)
    out = []
    for (i, j), counts in zip(pairs, weekly, strict=True):
        did = sum(d for d, _ in counts.values())
        if did < least or cohort - did < least:
            continue
        first, second = parts[i], parts[j]
        out.append(
            measure(
                "pair",
                None,
                0,
                max(first.days, second.days),
                counts,
                totals,
                z,
                parts=(first, second),
            )
        )
    return out


def _criteria(
    m: Milestone, unit: str, days: Sequence[int]
) -> list[tuple[str, str | None, int]] | str:
    """Return a declared milestone's criteria as (family kind, key, count), or why it cannot be
    measured as a candidate."""
    if m.scope != unit:
        return f"its scope is {m.scope}; this run's unit is {unit}"
    if m.any_of:
        return "any_of is not measured (only criteria that must all hold)"
    if m.within is None:
        return "no within: nothing ties it to the first days"
    if m.within / timedelta(days=1) not in days:
        return "within is not a whole number of days"
    criteria: list[tuple[str, str | None, int]] = [("event", e, 1) for e in m.all_of]
    criteria += [("event", e, n) for e, n in m.counts.items()]
    if m.features:
        criteria.append(("features", None, m.features))
    if m.active_days:
        criteria.append(("active_days", None, m.active_days))
    return criteria


def _measure_declared(db: Backend, found: Discovery, declared: Sequence[Milestone]) -> Discovery:
    """Measure each declared milestone as a candidate over the same cohort."""
    options = found.options
    ids = {(kind, key or None): kid for kid, (kind, key) in queries.keys(db).items()}
    picks: list[tuple[int, int, int]] = []
    rules: list[tuple[Milestone, list[int]]] = []
    skipped: list[tuple[str, str]] = []
    for m in declared:
        criteria = _criteria(m, options.unit, options.days)
        if isinstance(criteria, str):
            skipped.append((m.name, criteria))
            continue
        assert m.within is not None
        window = options.days.index(int(m.within / timedelta(days=1)))
        missing = [key for kind, key, _ in criteria if (kind, key) not in ids]
        if missing:
            skipped.append((m.name, f"no subject of the cohort did {missing[0]} early"))
            continue
        rule = []
        for kind, key, k in criteria:
            rule.append(len(picks))
            picks.append((ids[(kind, key)], window, k))
        rules.append((m, rule))
    totals = _totals(db)
    weekly: list[dict[int, tuple[int, int]]] = [{} for _ in rules]
    if rules:
        for week, y, met in queries.rule_counts(db, picks, [r for _, r in rules]):
            for j, n in enumerate(met):
                old = weekly[j].get(week, (0, 0))
                weekly[j][week] = (old[0] + n, old[1] + (n if y else 0))
    measured = []
    for (m, _), counts in zip(rules, weekly, strict=True):
        did = sum(d for d, _ in counts.values())
        if did in (0, found.cohort):
            skipped.append(
                (m.name, f"{'no' if did == 0 else 'every'} subject of the cohort reached it")
            )
            continue
        days = int(m.within / timedelta(days=1)) if m.within is not None else 0
        measured.append(measure("milestone", m.name, 0, days, counts, totals, found.z))
    return attrs.evolve(found, declared=tuple(measured), not_measured=tuple(skipped))


def _totals(db: Backend) -> dict[int, tuple[int, int]]:
    """Count cohort subjects and those with the outcome, by signup week."""
    totals: dict[int, tuple[int, int]] = {}
    for week, y, n in queries.cohort_totals(db):
        old = totals.get(week, (0, 0))
        totals[week] = (old[0] + n, old[1] + (n if y else 0))
    return totals
