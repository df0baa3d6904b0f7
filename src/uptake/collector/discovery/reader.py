"""Read a collector store into the engine's typed table with only what discovery needs.

Discovery reads an event's time, subject, type and name, and a "Feature Used" event's
feature: no other property. So SQLite hands over those columns, and extracts the feature
itself from the few bodies that hold one, instead of passing every JSON body on; that is
about twice as fast as the report's reader (:mod:`..engine.store`) on a large store.
The typed columns follow the same rules (:mod:`..engine.table`); the columns discovery
does not read are left NULL. A row this reader cannot type exactly (no stored time, or a
feature body that is not plain JSON text: an escape that might be a lone surrogate) takes
the Python path the report uses.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...definitions import PAGE_EVENT, SCREEN_EVENT
from ...rules.calendar import Calendar
from ..engine.backends import Backend, load
from ..engine.store import fast_path_available
from ..engine.table import COLUMNS, batches
from ..sources import _AHEAD, _EARLIEST, Source

__all__ = ["read_store"]

_FEATURE = "type = 'track' AND event = 'Feature Used'"
# The first row only fixes each column's Arrow type; it is dropped.
_READ = (
    "SELECT 0 AS seq, 0.5 AS t, '' AS type, '' AS event, '' AS user_id, '' AS anonymous_id, "
    "'' AS group_id, '' AS feature, 0 AS plain UNION ALL SELECT rowid, CASE WHEN "
    "typeof(event_time) IN ('real', 'integer') THEN CAST(event_time AS REAL) END, "
    "CASE WHEN typeof(type) = 'text' THEN type END, "
    "CASE WHEN typeof(event) = 'text' THEN event END, "
    "CASE WHEN typeof(user_id) = 'text' THEN user_id END, "
    "CASE WHEN typeof(anonymous_id) = 'text' THEN anonymous_id END, "
    "CASE WHEN typeof(group_id) = 'text' THEN group_id END, "
    f"CASE WHEN {_FEATURE} AND typeof(body) = 'text' AND json_valid(body) AND "
    "json_type(body, '$.properties.feature') = 'text' "
    "THEN json_extract(body, '$.properties.feature') END, "
    "typeof(event_time) IN ('real', 'integer') AND typeof(type) = 'text' AND "
    f"(NOT coalesce({_FEATURE}, 0) OR (typeof(body) = 'text' AND json_valid(body) "
    "AND instr(body, '\\u') = 0)) FROM events"
)


def _typed(day: str, now: float) -> str:
    """DuckDB: a batch ``b`` of :data:`_READ` as :data:`..engine.table.COLUMNS`."""
    user = "coalesce(nullif(user_id, ''), nullif(anonymous_id, ''))"
    track = "type = 'track' AND event IS NOT NULL"
    columns = {
        "seq": "seq",
        "t": "t",
        "user": user,
        "account": "nullif(group_id, '')",
        "kind": "type",
        "name": (
            f"CASE WHEN {track} AND event <> '' THEN event WHEN type = 'page' "
            f"THEN '{PAGE_EVENT}' WHEN type = 'screen' THEN '{SCREEN_EVENT}' END"
        ),
        "feature": f"CASE WHEN {track} AND event = 'Feature Used' THEN nullif(feature, '') END",
        "day": day,
        "week": f"CAST(floor(({day} + 3) / 7) AS BIGINT)",
    }
    kinds = {"int": "BIGINT", "float": "DOUBLE", "text": "VARCHAR"}
    select = ", ".join(
        f"{columns[name]} AS {name}"
        if name in columns
        else f"CAST(NULL AS {kinds[kind]}) AS {name}"
        for name, kind in COLUMNS
    )
    return (
        f"SELECT {select} FROM b WHERE plain AND t >= {_EARLIEST!r} AND t <= {now + _AHEAD!r} "
        f"AND {user} IS NOT NULL"
    )


def _batches(path: Path, day: str, odd: list[int]) -> Iterator[Any]:
    import adbc_driver_sqlite.dbapi as adbc
    import duckdb

    sql = _typed(day, time.time())
    uri = path.resolve().as_uri() + "?mode=ro"
    con = duckdb.connect(config={"threads": 1, "memory_limit": "256MB"})
    try:
        with adbc.connect(uri) as conn, conn.cursor() as cur:
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "131072"})
            cur.execute(_READ)
            first = True
            for batch in cur.fetch_record_batch():
                if first:
                    batch, first = batch.slice(1), False
                con.register("b", batch)
                odd.extend(
                    seq for (seq,) in con.execute("SELECT seq FROM b WHERE NOT plain").fetchall()
                )
                yield con.sql(sql).to_arrow_table()
                con.unregister("b")
    finally:
        con.close()


def read_store(db: Backend, source: Source, day: str, calendar: Calendar) -> bool:
    """Load a collector store's events into ``raw`` if this reader can; False if not."""
    store = source.store
    if store is None or not fast_path_available():
        return False
    conn = sqlite3.connect(Path(store).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    finally:
        conn.close()
    if not columns >= {
        "event_time",
        "type",
        "event",
        "user_id",
        "anonymous_id",
        "group_id",
        "body",
    }:
        return False
    odd: list[int] = []
    for arrow in _batches(Path(store), day, odd):
        db.append(arrow)
    for i in range(0, len(odd), 500):
        ids = ", ".join(str(int(rowid)) for rowid in odd[i : i + 500])
        load(db, batches(source.numbered(f"rowid IN ({ids})"), "seats", None, calendar))
    return True
