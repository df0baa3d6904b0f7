"""The engine's one table: each event parsed once, at ingestion, into typed columns.

Every later figure is SQL over these columns (see :mod:`.model`); nothing reads an event's
JSON again. A column holds a value only where the event gives a usable one (the rules of
:mod:`uptake.collector.metrics`: a name is a non-empty string, a time a finite number),
else NULL.

========== ========================================================================
column     meaning
========== ========================================================================
seq        position in the input (ties in time keep input order, as a stable sort)
t          event time, epoch seconds
user       user id, else anonymous id
account    account (``groupId``), if any
kind       message type: track, page, screen, identify, group ...
name       the name it counts under as activity (``activity_name``), else NULL
feature    "Feature Used": its ``feature``
milestone  "Milestone Reached": its ``milestone``; ``scope`` user or account, ``took``
           its ``time_to_reach_s``
nudge      a "Nudge ..." event: its ``nudge``; ``nudge_kind`` fired, held out, shown ...
           ("global holdout": held out with a positive ``global_holdout``);
           ``goal`` and ``goal_within`` (seconds) on a fired or held-out decision
seats      a group call: the account's seats trait
duration   "Session Ended": its ``duration_s``
trait      an identify or group call: the value of the segment trait
day, week  calendar day number and ISO week in the report's zone, when known at loading
           (else computed in SQL from ``t``)
========== ========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ...definitions import activity_name
from ...rules.calendar import Calendar, week_of
from ..figures import (
    SESSION_ENDED,
    decision_kind,
    duration_of,
    name_of,
    positive,
    seats_of,
    took_of,
    trait_of,
)
from ..metrics import Record

__all__ = ["BATCH", "COLUMNS", "batches"]

#: Column name and type: "int", "float" or "text"; all but the first five may be NULL.
COLUMNS = (
    ("seq", "int"),
    ("t", "float"),
    ("user", "text"),
    ("account", "text"),
    ("kind", "text"),
    ("name", "text"),
    ("feature", "text"),
    ("milestone", "text"),
    ("scope", "text"),
    ("took", "float"),
    ("nudge", "text"),
    ("nudge_kind", "text"),
    ("goal", "text"),
    ("goal_within", "float"),
    ("seats", "float"),
    ("duration", "float"),
    ("trait", "text"),
    ("day", "int"),
    ("week", "int"),
)
#: The columns that are never NULL.
REQUIRED = frozenset({"seq", "t", "user", "kind"})
#: Records per batch handed to the engine.
BATCH = 131_072


def _typed(
    seq: int, record: Record, seats_trait: str, segment_by: str | None, calendar: Calendar | None
) -> tuple[Any, ...]:
    """One record as a row of :data:`COLUMNS`."""
    t, user, account, kind, event, data = record
    day = None if calendar is None else calendar.day_of(t)
    name = activity_name(kind, event)
    feature = milestone = scope = took = nudge = nudge_kind = goal = within = None
    seats = duration = trait = None
    if data is not None:
        if name == "Feature Used":
            feature = name_of(data.get("feature"))
        elif name == "Milestone Reached":
            milestone = name_of(data.get("milestone"))
            scope = "account" if data.get("scope") == "account" else "user"
            took = took_of(data.get("time_to_reach_s"))
        elif name == SESSION_ENDED:
            duration = duration_of(data.get("duration_s"))
        elif name is not None and name.startswith("Nudge "):
            nudge = name_of(data.get("nudge"))
            if nudge is not None:
                nudge_kind = decision_kind(name, data)
                if nudge_kind in ("fired", "held out", "global holdout"):
                    goal, within = name_of(data.get("goal")), positive(data.get("goal_within_s"))
                    if goal is None or within is None:
                        goal = within = None
        elif kind == "group":
            seats = seats_of(data.get(seats_trait))
        if segment_by is not None and kind in ("identify", "group"):
            trait = trait_of(data.get(segment_by))
    return (
        seq,
        t,
        user,
        account,
        kind,
        name,
        feature,
        milestone,
        scope,
        took,
        nudge,
        nudge_kind,
        goal,
        within,
        seats,
        duration,
        trait,
        day,
        None if day is None else week_of(day),
    )


def batches(
    records: Iterable[tuple[int, Record]],
    seats_trait: str,
    segment_by: str | None,
    calendar: Calendar | None = None,
) -> Iterator[list[list[Any]]]:
    """Numbered records as typed rows, in column-major batches of at most :data:`BATCH`
    (with their days in ``calendar``'s zone, if given)."""
    rows: list[tuple[Any, ...]] = []
    for seq, record in records:
        rows.append(_typed(seq, record, seats_trait, segment_by, calendar))
        if len(rows) == BATCH:
            yield [list(column) for column in zip(*rows, strict=True)]
            rows = []
    if rows:
        yield [list(column) for column in zip(*rows, strict=True)]
