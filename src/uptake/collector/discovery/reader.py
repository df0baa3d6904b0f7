"""Read a collector store into the engine's typed table with only what discovery needs.

Discovery reads an event's time, subject, type and name, and a "Feature Used" event's
feature: no other property. So SQLite hands over those columns, and extracts the feature
itself from the few bodies that hold one, instead of passing every JSON body on; that is
less work than the report's reader (:mod:`..engine.store`), which types every property
it reads.
The typed columns follow the same rules (:mod:`..engine.table`); the columns discovery
does not read are left NULL. A row this reader cannot type exactly (no stored time, or a
feature body that is not plain JSON text: an escape that might be a lone surrogate) takes
the Python path the report uses.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...definitions import PAGE_EVENT, SCREEN_EVENT
from ...rules.calendar import Calendar
from ..engine.backends import Backend, append_all, load
from ..engine.store import _ODD, fast_path_available, read_rows
from ..engine.table import COLUMNS, batches
from ..sources import _AHEAD, _EARLIEST, Source

__all__ = ["read_store"]


_FEATURE = "type = 'track' AND event = 'Feature Used'"
# SQLite: the stored columns, and the body of "Feature Used" events only. The first row
# only fixes each column's Arrow type; it is dropped.
_READ = (
    "SELECT 0 AS seq, 0.5 AS t, '' AS type, '' AS event, '' AS user_id, '' AS anonymous_id, "
    "'' AS group_id, '' AS body UNION ALL SELECT rowid, CASE WHEN "
    "typeof(event_time) IN ('real', 'integer') THEN CAST(event_time AS REAL) END, "
    "CASE WHEN typeof(type) = 'text' THEN type END, "
    "CASE WHEN typeof(event) = 'text' THEN event END, "
    "CASE WHEN typeof(user_id) = 'text' THEN user_id END, "
    "CASE WHEN typeof(anonymous_id) = 'text' THEN anonymous_id END, "
    "CASE WHEN typeof(group_id) = 'text' THEN group_id END, "
    f"CASE WHEN {_FEATURE} AND typeof(body) = 'text' THEN body END FROM events"
)


def _typed(day: str, now: float) -> str:
    """DuckDB: a batch ``b`` of :data:`_READ` as :data:`..engine.table.COLUMNS` plus
    ``plain`` (False: the row takes the Python path)."""
    user = "coalesce(nullif(user_id, ''), nullif(anonymous_id, ''))"
    track = "type = 'track' AND event IS NOT NULL"
    feature = "json_extract(body, '$.properties.feature')"
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
        "feature": (
            f"CASE WHEN readable AND json_type({feature}) = 'VARCHAR' "
            f"THEN nullif({feature} ->> '$', '') END"
        ),
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
    # What DuckDB's JSON reader accepts and Python's does not, or a "\u" escape that may
    # be a lone surrogate: such a body takes the Python path.
    readable = (
        f"coalesce(json_valid(body) AND NOT regexp_matches(body, '{_ODD}') "
        "AND NOT contains(body, '\\u'), false)"
    )
    plain = f"t IS NOT NULL AND type IS NOT NULL AND (NOT coalesce({_FEATURE}, false) OR readable)"
    return (
        f"SELECT {select}, {plain} AS plain, t >= {_EARLIEST!r} AND t <= {now + _AHEAD!r} "
        f"AND {user} IS NOT NULL AS kept FROM (SELECT *, {readable} AS readable FROM b) r"
    )


def _batches(path: Path, day: str, odd: list[int]) -> Iterator[Any]:
    """Yield the plain rows as typed Arrow tables; the row ids of the others go to ``odd``.

    SQLite reads the next batches in a thread while DuckDB types this one.
    """
    import duckdb
    import pyarrow.compute as pc

    names = [n for n, _ in COLUMNS]
    uri = path.resolve().as_uri() + "?mode=ro"
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    reader = threading.Thread(
        target=read_rows, args=(uri, _READ, ready, stop), name="uptake-discover-reader", daemon=True
    )
    reader.start()
    con = duckdb.connect(config={"threads": 1, "memory_limit": "256MB"})
    try:
        sql = _typed(day, time.time())
        first = True
        while (batch := ready.get()) is not None:
            if isinstance(batch, BaseException):
                raise batch
            if first:
                batch, first = batch.slice(1), False
            con.register("b", batch)
            typed = con.sql(sql).to_arrow_table()
            con.unregister("b")
            plain = typed.column("plain")
            odd.extend(typed.filter(pc.invert(plain)).column("seq").to_pylist())
            yield typed.filter(pc.and_(plain, typed.column("kept"))).select(names)
    finally:
        stop.set()
        con.close()
        reader.join()


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
    append_all(db, _batches(Path(store), day, odd))
    for i in range(0, len(odd), 500):
        ids = ", ".join(str(int(rowid)) for rowid in odd[i : i + 500])
        load(db, batches(source.numbered(f"rowid IN ({ids})"), "seats", None, calendar))
    return True
