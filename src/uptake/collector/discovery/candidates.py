"""Candidates from the engine's counts: measure each, filter, rank, and keep one per family.

Near-duplicates are handled by *family*: the same event (or feature, or the active-days
or distinct-features rule) at every count k and window N is one family, and the ranked
table shows each family once, at its best-scoring (k, N); ties go to the shorter window,
then the smaller count (the simpler milestone). Every variant that passed the filters is
kept in :attr:`Discovery.variants`; a family whose best variant goes against the outcome
(lift not above 0) is no activation candidate and is left out of the table. A pair (two
families, both required) is shown only when it scores above each of its parts alone: a
pair that merely repeats its stronger part (the usual case when the other part is only
correlated with it) adds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

import attrs

from .options import DiscoverOptions
from .stats import newcombe, phi, score

__all__ = ["KINDS", "Candidate", "Discovery", "measure", "rank", "singles"]

#: What a candidate counts: an event, one feature, distinct active days, distinct
#: features, or a pair of two others.
KINDS = ("event", "feature", "active_days", "features", "pair", "milestone")
#: A signup week counts towards stability when at least this many did and did not.
WEEK_MIN = 10

#: Per signup week: (subjects, subjects with the outcome).
Weekly = Mapping[int, tuple[int, int]]


@attrs.frozen
class Candidate:
    """One candidate rule and how it relates to the outcome (docs/discover.md).

    Attributes:
        kind: One of :data:`KINDS` ("milestone": one declared in the settings file).
        name: The event, feature or declared milestone; None for the other kinds.
        count: At least this many times (events, features used, active days, distinct
            features); 0 for a pair.
        days: Within this many days of first seen (a pair: the longer of its parts).
        parts: A pair's two candidates.
        did: Cohort subjects who met it (``a + b``); ``did_retained`` of them had the
            outcome (``a``).
        not_did: Those who did not (``c + d``); ``not_did_retained`` had the outcome (``c``).
        reach: Share of the cohort that met it.
        precision: Outcome rate among those who met it.
        rate_without: Outcome rate among those who did not.
        recall: Share of the subjects with the outcome who met it.
        phi: The phi coefficient (None when a margin is empty).
        lift: ``precision - rate_without``.
        lift_low, lift_high: Its 95% Newcombe interval.
        score: The ranking score (phi at the family-wise lower bound of the lift).
        weeks: Signup weeks with at least 10 who met it and 10 who did not.
        stability: Share of those weeks whose lift has the overall lift's sign (None
            under two such weeks).
    """

    kind: str
    name: str | None
    count: int
    days: int
    parts: tuple[Candidate, ...]
    did: int
    did_retained: int
    not_did: int
    not_did_retained: int
    reach: float
    precision: float
    rate_without: float
    recall: float | None
    phi: float | None
    lift: float
    lift_low: float
    lift_high: float
    score: float
    weeks: int
    stability: float | None

    @property
    def family(self) -> tuple[str, str | None]:
        """Which family it belongs to (pairs: each pair is its own)."""
        if self.kind == "pair":
            return ("pair", " & ".join(str(p.family) for p in self.parts))
        return (self.kind, self.name)

    @property
    def label(self) -> str:
        """The rule in words: "Report Created at least 3 times within 7 days"."""
        if self.kind == "pair":
            return " AND ".join(p.label for p in self.parts)
        if self.kind == "milestone":
            return f"declared milestone {self.name} (within {self.days} days)"
        times = "once" if self.count == 1 else f"{self.count} times"
        within = f"within {self.days} day{'s' if self.days != 1 else ''}"
        if self.kind == "event":
            return f"{self.name} at least {times} {within}"
        if self.kind == "feature":
            return f"feature {self.name} used at least {times} {within}"
        if self.kind == "active_days":
            return f"active on at least {self.count} of the first {self.days} days"
        return f"at least {self.count} distinct features {within}"


@attrs.frozen
class Discovery:
    """What ``uptake.discover`` found.

    Attributes:
        options: What was looked for.
        timezone: The zone of calendar days.
        engine: What computed it ("duckdb" or "chdb").
        data_end: The last day of the data (None: no event).
        cohort: Subjects first seen early enough to be observed for the outcome window.
        outcome: Of them, those with the outcome.
        first_signup, last_signup: The cohort's first-seen days.
        weeks: Signup weeks in the cohort.
        tested: Candidates that passed the reach filter, plus the pairs tried.
        z: The family-wise normal quantile of the score (Bonferroni over ``tested``).
        candidates: The ranked table, one row per family, best first.
        variants: Every candidate measured, best score first.
        declared: The settings file's milestones, measured as candidates (the same
            figures, outside the ranking).
        not_measured: Declared milestones that could not be measured, and why.
    """

    options: DiscoverOptions
    timezone: str
    engine: str
    data_end: date | None
    cohort: int
    outcome: int
    first_signup: date | None
    last_signup: date | None
    weeks: int
    tested: int
    z: float
    candidates: tuple[Candidate, ...]
    variants: tuple[Candidate, ...]
    declared: tuple[Candidate, ...] = ()
    not_measured: tuple[tuple[str, str], ...] = ()

    @property
    def rate(self) -> float | None:
        """The cohort's outcome rate."""
        return self.outcome / self.cohort if self.cohort else None

    @property
    def strong(self) -> tuple[Candidate, ...]:
        """The ranked candidates whose score is above 0: a lift above 0 after adjusting
        for every candidate tested."""
        return tuple(c for c in self.candidates if c.score > 0)

    @property
    def signup_range(self) -> str:
        """The cohort's first-seen days as text."""
        return f"{self.first_signup} to {self.last_signup}" if self.cohort else "none"


def _weeks_of(weekly: Weekly, totals: Weekly, lift: float) -> tuple[int, float | None]:
    measured = agreeing = 0
    for week, (n, retained) in totals.items():
        did, a = weekly.get(week, (0, 0))
        if did < WEEK_MIN or n - did < WEEK_MIN:
            continue
        measured += 1
        week_lift = a / did - (retained - a) / (n - did)
        agreeing += (week_lift > 0) == (lift > 0) and week_lift != 0
    return measured, (agreeing / measured if measured >= 2 else None)


def measure(
    kind: str,
    name: str | None,
    count: int,
    days: int,
    weekly: Weekly,
    totals: Weekly,
    z: float,
    parts: tuple[Candidate, ...] = (),
) -> Candidate:
    """Measure a candidate from the subjects who met it, per signup week.

    Both groups (met it, did not) must be non-empty.
    """
    n = sum(t for t, _ in totals.values())
    retained = sum(r for _, r in totals.values())
    did = sum(d for d, _ in weekly.values())
    a = sum(r for _, r in weekly.values())
    b, c = did - a, retained - a
    d = n - did - c
    precision, without = a / did, c / (n - did)
    lift = precision - without
    low, high = newcombe(a, did, c, n - did, 1.959963984540054)
    family_low, _ = newcombe(a, did, c, n - did, z)
    weeks, stability = _weeks_of(weekly, totals, lift)
    return Candidate(
        kind=kind,
        name=name,
        count=count,
        days=days,
        parts=parts,
        did=did,
        did_retained=a,
        not_did=n - did,
        not_did_retained=c,
        reach=did / n,
        precision=precision,
        rate_without=without,
        recall=a / retained if retained else None,
        phi=phi(a, b, c, d),
        lift=lift,
        lift_low=low,
        lift_high=high,
        score=score(family_low, did / n, retained / n),
        weeks=weeks,
        stability=stability,
    )


#: A candidate before measuring: (kind, name, count, days, per-week (did, with outcome)).
Raw = tuple[str, "str | None", int, int, dict[int, tuple[int, int]]]


def singles(
    keys: Mapping[int, tuple[str, str]],
    rows: Iterable[tuple[int, int, int, int, int, int]],
    totals: Weekly,
    options: DiscoverOptions,
) -> list[Raw]:
    """Return the single candidates that pass the reach filter, from the engine's counts."""
    n = sum(t for t, _ in totals.values())
    least = max(options.min_users, options.min_reach * n)
    hist: dict[tuple[int, int], dict[int, dict[int, list[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: [0, 0]))
    )
    for kid, w, k, week, y, subjects in rows:
        cell = hist[(kid, w)][k][week]
        cell[0] += subjects
        cell[1] += subjects if y else 0
    out: list[Raw] = []
    for (kid, w), by_count in sorted(hist.items()):
        kind, key = keys[kid]
        days = options.days[w]
        top = options.max_count if kind != "active_days" else min(options.max_count, days)
        cumulative: dict[int, tuple[int, int]] = {}
        for k in range(top, 0, -1):
            for week, (did, a) in by_count.get(k, {}).items():
                old = cumulative.get(week, (0, 0))
                cumulative[week] = (old[0] + did, old[1] + a)
            did_all = sum(d for d, _ in cumulative.values())
            if kind == "active_days" and k == 1:
                continue  # every subject is active on its first day
            if did_all >= least and n - did_all >= least:
                out.append((kind, key or None, k, days, dict(cumulative)))
    return out


def _order(c: Candidate) -> tuple[float, int, int]:
    return (-c.score, c.days, c.count)


def best_per_family(measured: Sequence[Candidate]) -> list[Candidate]:
    """Return each family's best variant, best first."""
    best: dict[tuple[str, str | None], Candidate] = {}
    for c in sorted(measured, key=_order):
        best.setdefault(c.family, c)
    return sorted(best.values(), key=_order)


def rank(measured: Sequence[Candidate], pairs: Sequence[Candidate]) -> list[Candidate]:
    """Rank the table: one row per family going with the outcome (lift above 0), and the
    pairs that beat both their parts."""
    rows = [c for c in best_per_family(measured) if c.lift > 0]
    rows += [p for p in pairs if all(p.score > part.score for part in p.parts)]
    return sorted(rows, key=_order)
