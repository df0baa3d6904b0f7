"""The engine on a ClickHouse server: the model's SQL sent where the events live.

:class:`ClickHouseBackend` is a :class:`~.backends.Backend` over a :class:`Runner`, which
runs one statement at a time on a ClickHouse server (``clickhouse-connect`` over HTTP) or
in process (chdb, as the tests and the benchmark do). Nothing is written to the server's
databases: the prepared tables are temporary tables of the connection's session, gone
when it ends, and the model's views are common table expressions, expanded in each
statement that names them. Only the small results of the measures travel back.
"""

from __future__ import annotations

from typing import Any, Protocol

from .backends import ChdbBackend

__all__ = ["ChdbRunner", "ClickHouseBackend", "Runner", "literal"]


class Runner(Protocol):
    """Runs statements on one ClickHouse session, in order."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query and return its rows as tuples of Python values."""

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing."""

    def close(self) -> None:
        """End the session."""


def literal(text: str) -> str:
    """A string as a ClickHouse string literal (control characters escaped)."""
    out = []
    for ch in text:
        if ch in ("\\", "'"):
            out.append("\\" + ch)
        elif ord(ch) < 32:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


class ClickHouseBackend:
    """The engine's backend over a ClickHouse session: temporary tables, views as CTEs.

    The event table ``raw`` is made by the caller (a ClickHouse source builds it from the
    events table with :meth:`table`), so :meth:`create` and :meth:`append` refuse.
    """

    def __init__(self, runner: Runner, name: str = "clickhouse") -> None:
        self.name = name
        self._run = runner
        self._views: dict[str, str] = {}

    def create(self) -> None:
        raise TypeError("a ClickHouse source's events are read where they are stored")

    def append(self, arrow: Any) -> None:
        raise TypeError("a ClickHouse source's events are read where they are stored")

    def _with(self, select: str) -> str:
        """``select`` with the views defined so far as common table expressions."""
        if not self._views:
            return select
        ctes = ", ".join(f"{name} AS ({body})" for name, body in self._views.items())
        return f"WITH {ctes} {select}"

    def table(self, name: str, select: str) -> None:
        self._views.pop(name, None)
        self._run.command(f"DROP TEMPORARY TABLE IF EXISTS {name}")
        self._run.command(f"CREATE TEMPORARY TABLE {name} ENGINE = Memory AS {self._with(select)}")

    def view(self, name: str, select: str) -> None:
        self._run.command(f"DROP TEMPORARY TABLE IF EXISTS {name}")
        self._views.pop(name, None)
        self._views[name] = select

    def names(self, name: str, rows: list[tuple[str, str]]) -> None:
        self._views.pop(name, None)
        self._run.command(f"DROP TEMPORARY TABLE IF EXISTS {name}")
        self._run.command(
            f"CREATE TEMPORARY TABLE {name} (role String, name String) ENGINE = Memory"
        )
        if rows:
            values = ", ".join(f"({literal(r)}, {literal(n)})" for r, n in rows)
            self._run.command(f"INSERT INTO {name} VALUES {values}")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._run.rows(self._with(sql))

    @staticmethod
    def day(zone: str | None, offset: float) -> str:
        return ChdbBackend.day(zone, offset)

    def close(self) -> None:
        self._run.close()


class ChdbRunner:
    """A :class:`Runner` over a chdb session (ClickHouse in process)."""

    def __init__(self, session: Any = None) -> None:
        self._owned = session is None
        if session is None:
            from chdb import session as chdb_session

            session = chdb_session.Session()
        self.session = session
        self.session.query("SET join_use_nulls = 1")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        result = self.session.query(sql, "ArrowTable")
        columns = [column.to_pylist() for column in result.columns]
        return list(zip(*columns, strict=True)) if columns else []

    def command(self, sql: str) -> None:
        self.session.query(sql)

    def close(self) -> None:
        if self._owned:  # a session handed in stays open for its owner
            self.session.close()
