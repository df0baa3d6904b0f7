"""Where the engine's SQL runs: DuckDB or chdb (ClickHouse) in process.

A backend loads typed batches (:mod:`.table`) into a table ``raw``, runs statements, and
returns rows as tuples. The few places where the two SQL dialects differ are its methods:
the calendar day of an event time in a time zone, and how a table is created.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from typing import Any, Protocol

from .table import COLUMNS, REQUIRED

__all__ = ["Backend", "ChdbBackend", "DuckDBBackend", "load", "open_backend"]

_ZONE = re.compile(r"[A-Za-z0-9_+\-/]+")


def zone_literal(zone: str) -> str:
    """An IANA zone name, checked, as an SQL string literal."""
    if not _ZONE.fullmatch(zone):
        raise ValueError(f"not an IANA time zone name: {zone!r}")
    return f"'{zone}'"


class Backend(Protocol):
    """An SQL engine holding the event table."""

    name: str

    def create(self) -> None:
        """Create the (empty) table ``raw`` of :data:`.table.COLUMNS`."""

    def append(self, arrow: Any) -> None:
        """Append an Arrow table of :data:`.table.COLUMNS` to ``raw``."""

    def table(self, name: str, select: str) -> None:
        """Create (or replace) table ``name`` as the result of ``select``."""

    def view(self, name: str, select: str) -> None:
        """Create (or replace) view ``name`` of ``select``."""

    def names(self, name: str, rows: list[tuple[str, str]]) -> None:
        """Create table ``name`` (role, name) holding ``rows``."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""

    def day(self, zone: str | None, offset: float) -> str:
        """The SQL of the calendar day number of ``t`` in ``zone`` (or at a fixed offset)."""

    def close(self) -> None:
        """Free what the backend holds."""


#: DuckDB's memory limit for the report (it spills to disk beyond it).
MEMORY_LIMIT = "900MB"

_DUCK_TYPES = {"int": "BIGINT", "float": "DOUBLE", "text": "VARCHAR"}


class DuckDBBackend:
    """DuckDB in process, in memory (spilling to a temporary directory when short)."""

    name = "duckdb"

    def __init__(self) -> None:
        import duckdb

        # Bounded memory: past the limit DuckDB spills to a temporary directory of its own
        # (not ".tmp" in the working directory, its default).
        self._spill = tempfile.TemporaryDirectory(prefix="uptake-report-")
        self._con = duckdb.connect(
            config={
                "preserve_insertion_order": False,
                "memory_limit": MEMORY_LIMIT,
                "temp_directory": self._spill.name,
            }
        )

    def create(self) -> None:
        columns = ", ".join(f"{n} {_DUCK_TYPES[kind]}" for n, kind in COLUMNS)
        self._con.execute(f"CREATE OR REPLACE TABLE raw ({columns})")

    def append(self, arrow: Any) -> None:
        self._con.register("_batch", arrow)
        self._con.execute("INSERT INTO raw SELECT * FROM _batch")
        self._con.unregister("_batch")

    def _drop(self, name: str, unless: str) -> None:
        """Drop ``name`` if it is not a ``unless`` ("BASE TABLE" or "VIEW"): DuckDB
        replaces a table by a table, a view by a view, and nothing else."""
        found = self._con.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()
        if found and found[0][0] != unless:
            kind = "VIEW" if found[0][0] == "VIEW" else "TABLE"
            self._con.execute(f"DROP {kind} {name}")

    def table(self, name: str, select: str) -> None:
        self._drop(name, "BASE TABLE")
        self._con.execute(f"CREATE OR REPLACE TABLE {name} AS {select}")

    def view(self, name: str, select: str) -> None:
        self._drop(name, "VIEW")
        self._con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")

    def names(self, name: str, rows: list[tuple[str, str]]) -> None:
        self._con.execute(f"CREATE OR REPLACE TABLE {name} (role VARCHAR, name VARCHAR)")
        if rows:
            self._con.executemany(f"INSERT INTO {name} VALUES (?, ?)", rows)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._con.execute(sql).fetchall()

    @staticmethod
    def day(zone: str | None, offset: float) -> str:
        if zone is None:
            return f"CAST(floor((t + {offset!r}) / 86400) AS BIGINT)"
        local = f"epoch(timezone({zone_literal(zone)}, to_timestamp(floor(t))))"
        return f"CAST(floor((t + ({local} - floor(t))) / 86400) AS BIGINT)"

    def close(self) -> None:
        self._con.close()
        self._spill.cleanup()


_CH_TYPES = {"int": "Int64", "float": "Float64", "text": "String"}


class ChdbBackend:
    """ClickHouse in process (chdb), in a temporary session."""

    name = "chdb"

    def __init__(self) -> None:
        from chdb import session

        self._session = session.Session()
        self._session.query("SET join_use_nulls = 1")

    def create(self) -> None:
        columns = ", ".join(
            f"{n} {_CH_TYPES[kind] if n in REQUIRED else f'Nullable({_CH_TYPES[kind]})'}"
            for n, kind in COLUMNS
        )
        self._session.query("DROP TABLE IF EXISTS raw")
        self._session.query(f"CREATE TABLE raw ({columns}) ENGINE = Memory")

    def append(self, arrow: Any) -> None:
        _batch = arrow  # chdb finds the table by its variable name
        self._session.query("INSERT INTO raw SELECT * FROM Python(_batch)")

    def table(self, name: str, select: str) -> None:
        self._session.query(f"DROP TABLE IF EXISTS {name}")
        self._session.query(f"CREATE TABLE {name} ENGINE = Memory AS {select}")

    def view(self, name: str, select: str) -> None:
        self._session.query(f"DROP TABLE IF EXISTS {name}")
        self._session.query(f"CREATE VIEW {name} AS {select}")

    def names(self, name: str, rows: list[tuple[str, str]]) -> None:
        import pyarrow as pa

        self._session.query(f"DROP TABLE IF EXISTS {name}")
        self._session.query(f"CREATE TABLE {name} (role String, name String) ENGINE = Memory")
        if rows:
            _names = pa.table({"role": [r for r, _ in rows], "name": [n for _, n in rows]})
            self._session.query(f"INSERT INTO {name} SELECT * FROM Python(_names)")
            del _names

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        result = self._session.query(sql, "ArrowTable")
        columns = [column.to_pylist() for column in result.columns]
        return list(zip(*columns, strict=True)) if columns else []

    @staticmethod
    def day(zone: str | None, offset: float) -> str:
        if zone is None:
            return f"toInt64(floor((t + {offset!r}) / 86400))"
        local = f"timeZoneOffset(toDateTime(toInt64(floor(t)), {zone_literal(zone)}))"
        return f"toInt64(floor((t + {local}) / 86400))"

    def close(self) -> None:
        self._session.close()


#: Rows appended to an engine at once: fewer, larger appends cost less than many small
#: (a million rows per append took DuckDB 0.47 s of CPU per million, against 1.19 s in
#: batches of 131,072).
APPEND_ROWS = 1 << 20


def append_all(db: Backend, tables: Iterable[Any], rows: int = APPEND_ROWS) -> None:
    """Append Arrow tables of :data:`.table.COLUMNS` to ``db``, about ``rows`` at a time."""
    import pyarrow as pa

    pending: list[Any] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        if held >= rows:
            db.append(pa.concat_tables(pending))
            pending, held = [], 0
    if pending:
        db.append(pa.concat_tables(pending))


def load(db: Backend, batches: Iterable[list[list[Any]]]) -> None:
    """Append typed batches (column lists, :func:`.table.batches`) to ``raw``."""
    import pyarrow as pa

    schema = _arrow_schema()
    for batch in batches:
        db.append(
            pa.Table.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(batch, schema, strict=True)],
                schema=schema,
            )
        )


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"int": pa.int64(), "float": pa.float64(), "text": pa.string()}
    return pa.schema([pa.field(n, types[kind], nullable=n not in REQUIRED) for n, kind in COLUMNS])


def open_backend(name: str) -> Backend:
    """A fresh backend by name: "duckdb" or "chdb"."""
    if name == "duckdb":
        return DuckDBBackend()
    if name == "chdb":
        return ChdbBackend()
    raise ValueError(f"unknown engine {name!r}")
