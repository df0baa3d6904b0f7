"""Read a collector store straight into the typed table, without a Python loop per event.

The rows come out of SQLite as Arrow batches (``adbc-driver-sqlite``) with the JSON body
of the events whose properties the report reads; DuckDB parses those bodies and applies
the rules of the typed columns (:mod:`.table`), restated in SQL, and the batches go to the
engine as they are. The restatement covers the rows it is exact for: valid JSON with no
``\\u`` escape, no number in exponent form and no long digit run (so no lone surrogate
and no overflowing number), a stored ``event_time``, and no fractional number as the
segment trait. Every other row (rare) takes the Python path, the same one
:func:`uptake.collector.sources.from_store` reads through; the tests hold the two to the
same figures.
"""

from __future__ import annotations

import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...definitions import PAGE_EVENT, SCREEN_EVENT
from ..sources import _AHEAD, _EARLIEST, _WITH_DATA, NO_USER, OUT_OF_RANGE, Source
from .table import COLUMNS

__all__ = ["arrow_batches", "fast_path_available", "read_rows", "trait_path"]

#: Rows whose JSON body the report reads (NULL-safe: an unknown event reads it too).
_DATA = (
    "coalesce((type = 'track' AND event IN ({})) OR type IN ('group', 'identify'), true)".format(
        ", ".join(f"'{e}'" for e in _WITH_DATA)
    )
)
#: What DuckDB's JSON reader accepts and Python's does not (NaN, Infinity, a trailing
#: comma), and numbers that might overflow a double (exponent form, long digit runs).
_ODD = r"NaN|Infinity|,\s*[}\]]|[0-9][eE]|[0-9]{15}"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_ \-.:/]+")


def _text(column: str) -> str:
    return f"CASE WHEN typeof({column}) = 'text' THEN {column} END"


# SQLite: the stored columns as they are. The first row only fixes each column's Arrow
# type (the reader infers types from the first values it sees); it is dropped.
_READ = (
    "SELECT 0 AS seq, 0.5 AS t, '' AS type, '' AS event, '' AS user_id, '' AS anonymous_id, "
    "'' AS group_id, '' AS body UNION ALL SELECT rowid, CASE WHEN typeof(event_time) IN "
    f"('real', 'integer') THEN CAST(event_time AS REAL) END, {_text('type')}, "
    f"{_text('event')}, {_text('user_id')}, {_text('anonymous_id')}, {_text('group_id')}, "
    f"{_text('body')} FROM events"
)


_STORED = {"event_time", "type", "event", "user_id", "anonymous_id", "group_id", "body"}


def fast_path_available() -> bool:
    """Whether the Arrow reader of SQLite and DuckDB are installed."""
    try:
        import adbc_driver_sqlite.dbapi  # noqa: F401
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


def trait_path(key: str | None) -> str | None:
    """The JSON path of a trait; None for no trait, or for a name a path cannot hold."""
    if key is None or not _PLAIN_KEY.fullmatch(key):
        return None
    return f'$.traits."{key}"'


_PATHS = (
    "$.properties.feature",
    "$.properties.milestone",
    "$.properties.scope",
    "$.properties.time_to_reach_s",
    "$.properties.nudge",
    "$.properties.goal",
    "$.properties.goal_within_s",
    "$.properties.duration_s",
    "$.properties.global_holdout",
)


def _repeated(keys: tuple[str, ...]) -> str:
    """DuckDB: whether a body may name one of ``keys`` twice (``properties``, ``traits``,
    or a key the report reads inside them). Such a row takes the Python path, which reads
    the last of the two, as Python's and JavaScript's JSON readers do; DuckDB's reads the
    first. A key named twice at different depths only sends the row to Python, still
    exact. (One regular expression: a few times cheaper than listing the keys.)"""
    either = "|".join(f'"{re.escape(k)}"\\s*:.*"{re.escape(k)}"\\s*:' for k in dict.fromkeys(keys))
    return f"coalesce(regexp_matches(body, '{either}'), false)"


def _typed_sql(
    seats: str, trait: str | None, now: float, day: str, keys: tuple[str, ...] = ()
) -> str:
    """DuckDB: a batch ``b`` from :data:`_READ` as :data:`.table.COLUMNS`, plus ``reason``
    (0 kept, 1 out of range, 2 no user) and ``plain``."""
    paths = [*_PATHS, seats, trait or "$.none"]
    listed = ", ".join(f"'{p}'" for p in paths)
    v = {
        name: f"j[{i + 1}]"
        for i, name in enumerate(
            (
                "feature",
                "milestone",
                "scope",
                "took",
                "nudge",
                "goal",
                "within",
                "duration",
                "global",
                "seats",
                "trait",
            )
        )
    }

    def text(key: str) -> str:
        return f"CASE WHEN json_type({v[key]}) = 'VARCHAR' THEN nullif({v[key]} ->> '$', '') END"

    def number(key: str) -> str:
        return (
            f"CASE WHEN json_type({v[key]}) IN ('UBIGINT', 'BIGINT', 'DOUBLE') "
            f"THEN CAST({v[key]} AS DOUBLE) END"
        )

    track = "type = 'track' AND event IS NOT NULL"
    nudge = f"{track} AND starts_with(event, 'Nudge ') AND {text('nudge')} IS NOT NULL"
    decision = (
        f"{nudge} AND event IN ('Nudge Fired', 'Nudge Held Out') "
        f"AND {text('goal')} IS NOT NULL AND {number('within')} > 0"
    )
    trait_sql = "NULL"
    if trait is not None:
        kind = f"json_type({v['trait']})"
        trait_sql = (
            f"CASE WHEN type IN ('identify', 'group') THEN CASE WHEN {kind} = 'BOOLEAN' "
            f"THEN {v['trait']} ->> '$' WHEN {kind} IN ('UBIGINT', 'BIGINT') "
            f"THEN {v['trait']} ->> '$' ELSE {text('trait')} END END"
        )
    user = "coalesce(nullif(user_id, ''), nullif(anonymous_id, ''))"
    columns = {
        "seq": "seq",
        "t": "t",
        "user": f"coalesce({user}, '')",
        "account": "nullif(group_id, '')",
        "kind": "type",
        "name": (
            f"CASE WHEN {track} AND event <> '' THEN event WHEN type = 'page' "
            f"THEN '{PAGE_EVENT}' WHEN type = 'screen' THEN '{SCREEN_EVENT}' END"
        ),
        "feature": f"CASE WHEN {track} AND event = 'Feature Used' THEN {text('feature')} END",
        "milestone": f"CASE WHEN {track} AND event = 'Milestone Reached' THEN "
        f"{text('milestone')} END",
        "scope": f"CASE WHEN {text('scope')} = 'account' THEN 'account' ELSE 'user' END",
        "took": (
            f"CASE WHEN json_type({v['took']}) = 'BOOLEAN' AND NOT CAST({v['took']} AS BOOLEAN) "
            f"THEN 0.0 WHEN {number('took')} >= 0 THEN {number('took')} END"
        ),
        "nudge": f"CASE WHEN {nudge} THEN {text('nudge')} END",
        "nudge_kind": (
            f"CASE WHEN {nudge} THEN CASE WHEN event = 'Nudge Held Out' AND "
            f"coalesce({number('global')} > 0, false) THEN 'global holdout' "
            "ELSE lower(event[7:]) END END"
        ),
        "goal": f"CASE WHEN {decision} THEN {text('goal')} END",
        "goal_within": f"CASE WHEN {decision} THEN {number('within')} END",
        "seats": (
            f"CASE WHEN type = 'group' AND {number('seats')} >= 1 "
            f"THEN CAST(trunc({number('seats')}) AS DOUBLE) END"
        ),
        "duration": (
            f"CASE WHEN {track} AND event = 'Session Ended' AND {number('duration')} >= 0 "
            f"THEN {number('duration')} END"
        ),
        "trait": trait_sql,
        "day": day,
        "week": f"CAST(floor(({day} + 3) / 7) AS BIGINT)",
    }
    assert list(columns) == [n for n, _ in COLUMNS]
    odd_trait = f"json_type({v['trait']}) = 'DOUBLE'" if trait is not None else "false"
    plain = (
        "t IS NOT NULL AND abs(t) < 1e300 AND type IS NOT NULL AND (NOT data OR "
        f"(readable AND NOT coalesce({odd_trait}, false) AND NOT {_repeated(keys)}))"
    )
    reason = (
        f"CASE WHEN NOT (t >= {_EARLIEST!r} AND t <= {now + _AHEAD!r}) THEN 1 "
        f"WHEN {user} IS NULL THEN 2 ELSE 0 END"
    )
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
    return (
        f"SELECT {select}, {reason} AS reason, {plain} AS plain FROM (SELECT *, "
        "json_extract(CASE WHEN readable THEN body END, "
        f"[{listed}]) AS j FROM (SELECT *, coalesce(json_valid(body) AND NOT "
        f"regexp_matches(body, '{_ODD}'), false) AS readable FROM (SELECT * REPLACE "
        f"(CASE WHEN data THEN body END AS body) FROM (SELECT *, {_DATA} AS data FROM b) d) r) x) y"
    )


def read_rows(uri: str, query: str, ready: queue.Queue[Any], stop: threading.Event) -> None:
    """Put the rows of ``query`` on the store ``uri`` on ``ready`` as Arrow batches, then
    None (or the error); give up when ``stop`` is set. Runs in a reader thread."""
    import adbc_driver_sqlite.dbapi as adbc

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    try:
        with adbc.connect(uri) as conn, conn.cursor() as cur:
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "131072"})
            cur.execute(query)
            for batch in cur.fetch_record_batch():
                if not put(batch):
                    return
        put(None)
    except Exception as exc:  # handed to the consumer, which raises it
        put(exc)


def arrow_batches(
    path: str | os.PathLike[str],
    source: Source,
    seats_trait: str,
    segment_by: str | None,
    odd: list[int],
    day: str,
) -> Iterator[Any] | None:
    """The plain rows of a store as Arrow tables of :data:`.table.COLUMNS`, counting what
    they skip in ``source`` and noting the row ids of the others in ``odd``; ``day`` is
    DuckDB's SQL of an event's day. None when the settings need the Python path for every
    row."""
    import duckdb

    seats, trait = trait_path(seats_trait), trait_path(segment_by)
    if seats is None or (segment_by is not None and trait is None):
        return None
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    finally:
        conn.close()
    if not columns >= _STORED:  # not a store, or one from before event_time: Python's
        return None
    keys = ("properties", "traits", *(p.rsplit(".", 1)[1] for p in _PATHS), seats_trait)
    if segment_by is not None:
        keys += (segment_by,)
    sql = _typed_sql(seats, trait, time.time(), day, keys)
    names = ", ".join(n for n, _ in COLUMNS)
    labels = {1: OUT_OF_RANGE, 2: NO_USER}

    def batches() -> Iterator[Any]:
        # SQLite reads the next batches in a thread while DuckDB types this one.
        ready: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        reader = threading.Thread(
            target=read_rows,
            args=(uri, _READ, ready, stop),
            name="uptake-store-reader",
            daemon=True,
        )
        reader.start()
        # One thread: the engine and the reader have the rest.
        con = duckdb.connect(config={"threads": 1, "memory_limit": "256MB"})
        try:
            first = True
            while (batch := ready.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                if first:
                    batch, first = batch.slice(1), False
                con.register("b", batch)
                con.execute(f"CREATE OR REPLACE TEMP TABLE typed AS {sql}")
                con.unregister("b")
                source.read += batch.num_rows
                for reason, n in con.execute(
                    "SELECT reason, count(*) FROM typed WHERE plain AND reason > 0 GROUP BY reason"
                ).fetchall():
                    source.skipped_by[labels[reason]] += n
                others = con.execute("SELECT seq FROM typed WHERE NOT plain").fetchall()
                odd.extend(seq for (seq,) in others)
                source.read -= len(others)  # counted when the Python path reads them
                yield con.sql(
                    f"SELECT {names} FROM typed WHERE plain AND reason = 0"
                ).to_arrow_table()
        finally:
            stop.set()
            con.close()
            reader.join()

    return batches()
