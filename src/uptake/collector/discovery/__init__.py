"""Activation discovery: which early behaviours go with the outcome (docs/discover.md).

:func:`discover` loads the events into the report's engine (:mod:`..engine`), builds the
cohort and counts every candidate in SQL (:mod:`.queries`), measures each from its 2 x 2
table in closed form (:mod:`.stats`), ranks them one per family (:mod:`.candidates`), and
:mod:`.render` turns the result into text, JSON, HTML and milestones to paste.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import Literal

from ..engine import Loaded
from ..metrics import Record
from ..settings import ReportSettings, load
from .candidates import Candidate, Discovery
from .options import DiscoverOptions
from .render import headline, html_section, lines, milestone_code, settings_entry, to_data
from .run import run, run_loaded

__all__ = [
    "Candidate",
    "DiscoverOptions",
    "Discovery",
    "after_report",
    "discover",
    "headline",
    "html_section",
    "lines",
    "milestone_code",
    "open_source",
    "settings_entry",
    "to_data",
]


def open_source(path: str | os.PathLike[str]) -> Iterable[Record]:
    """Open the records of a collector store (SQLite) or of a JSONL export.

    Raises:
        FileNotFoundError: no such file.
    """
    from ..sources import from_jsonl, from_store

    with open(path, "rb") as handle:
        is_sqlite = handle.read(16) == b"SQLite format 3\x00"
    return from_store(path) if is_sqlite else from_jsonl(path)


def discover(
    source: str | os.PathLike[str] | Iterable[Record] | Loaded,
    *,
    unit: Literal["user", "account"] = "user",
    goal: str | None = None,
    window: tuple[int, int] | None = None,
    days: Sequence[int] = (1, 3, 7, 14),
    max_count: int = 10,
    min_reach: float = 0.05,
    min_users: int = 30,
    pairs: int = 8,
    settings: ReportSettings | str | os.PathLike[str] | None = None,
    until: date | None = None,
    engine: str = "duckdb",
) -> Discovery:
    """Find the early behaviours that go with retention (or a goal), ranked.

    The cohort is every user (or account) first seen at least the outcome window's last
    day before the data ends; a candidate is "did E at least k times within the first N
    days" for every activity event and feature, k = 1 .. ``max_count``, N in ``days``,
    plus distinct active days, distinct features and pairs of the strongest. It is
    correlation: test a candidate by nudging toward it with a holdout.

    Args:
        source: A collector store or JSONL export (a path), event records, or the
            report engine's loaded table (what ``compute(..., on_loaded=...)`` hands its
            hook): then nothing is read again and ``engine`` is the report's.
        unit: ``"user"`` or ``"account"``.
        goal: An event whose occurrence in the window is the outcome (default:
            retention, active on some day of the window).
        window: The outcome window in days after the first-seen day, both included
            (default 28-35 for retention, 0-35 for a goal).
        days: The early windows N, in days from the first event.
        max_count: The largest k tried.
        min_reach: Leave out candidates under this share of the cohort (or over one
            minus it).
        min_users: ... or under this many subjects on either side.
        pairs: How many of the strongest families are combined in pairs.
        settings: The report's settings (or their TOML file): time zone, inactive
            events, and declared milestones (measured too; their windows join ``days``).
        until: Last day of the data used (default: the last event's).
        engine: ``"duckdb"`` or ``"chdb"``.

    Raises:
        ConfigurationError: an option that cannot be used.
        ValueError: an unknown engine.
        ImportError: the engine is not installed (``pip install 'uptake[report]'``).
    """
    if settings is None:
        settings = ReportSettings()
    elif not isinstance(settings, ReportSettings):
        settings = load(os.fspath(settings))
    # the windows of declared milestones join the early windows, so they can be measured
    declared = [
        int(m.within / timedelta(days=1))
        for m in settings.milestones
        if m.within is not None
        and m.within / timedelta(days=1) == int(m.within / timedelta(days=1))
    ]
    options = DiscoverOptions(
        unit=unit,
        goal=goal,
        window=window,
        days=[*days, *declared] if isinstance(days, Sequence) else days,
        max_count=max_count,
        min_reach=min_reach,
        min_users=min_users,
        pairs=pairs,
    )
    if isinstance(source, Loaded):
        return run_loaded(
            source.db,
            source.days_known,
            options,
            tz=settings.tzinfo(),
            inactive=settings.inactive,
            until=until,
            declared=settings.milestones,
        )
    if engine not in ("duckdb", "chdb"):
        raise ValueError(f"engine must be 'duckdb' or 'chdb', not {engine!r}")
    records = open_source(source) if isinstance(source, (str, os.PathLike)) else source
    return run(
        records,
        options,
        tz=settings.tzinfo(),
        inactive=settings.inactive,
        until=until,
        engine=engine,
        seats_trait=settings.seats_trait,
        declared=settings.milestones,
    )


def after_report(
    settings: ReportSettings, until: date | None, into: list[Discovery]
) -> Callable[[Loaded], None]:
    """Return a report hook (``compute(..., on_loaded=...)``) that runs a discovery on
    the table the report loaded and appends it to ``into``.

    It does so only when the report's activity spans the retention window (otherwise
    nobody can be in the cohort) and the data has a cohort: what the report's section
    "What retained users did first" shows. The plain-Python engine has no table and
    never calls the hook.
    """
    from .options import RETENTION_WINDOW

    def hook(loaded: Loaded) -> None:
        first, last = loaded.report.first_day, loaded.report.last_day
        if first is None or last is None or (last - first).days < RETENTION_WINDOW[1]:
            return
        found = discover(loaded, settings=settings, until=until)
        if found.cohort:
            into.append(found)

    return hook
