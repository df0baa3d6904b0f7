"""Opening a SQLite file that several processes may be creating at the same moment.

Workers of one server (gunicorn, uwsgi) start together and open the same new file. In
autocommit mode, ``CREATE TABLE IF NOT EXISTS`` reads the schema and then asks to write;
when another process created the table in between, SQLite refuses at once ("database is
locked", without waiting), and switching a new file to WAL can be refused the same way.
So the schema is created in one ``BEGIN IMMEDIATE`` transaction (which waits for the
write lock), and a setup refused for a lock is tried again until a deadline.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

__all__ = ["open_database"]


def open_database(
    path: str,
    *,
    timeout: float,
    schema: str,
    pragmas: Sequence[str] = (),
    setup_timeout: float = 10.0,
) -> sqlite3.Connection:
    """Open ``path`` in WAL mode and create its ``schema``, however many processes race.

    Args:
        path: The database file (created when missing).
        timeout: The busy timeout, in seconds, the connection keeps afterwards.
        schema: Idempotent statements (``CREATE ... IF NOT EXISTS``), run in one write
            transaction.
        pragmas: Statements run on the connection before the schema.
        setup_timeout: How long opening may wait for other processes' setup.

    Raises:
        sqlite3.Error: the file cannot be opened or set up (still locked after
            ``setup_timeout``, not a database, no such directory, ...).
    """
    deadline = time.monotonic() + setup_timeout
    pause = 0.005
    while True:
        conn = sqlite3.connect(
            path, timeout=setup_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            _set_up(conn, schema, pragmas)
            conn.execute(f"PRAGMA busy_timeout = {max(int(timeout * 1000), 0)}")
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if not _locked(exc) or time.monotonic() + pause > deadline:
                raise
        except BaseException:
            conn.close()
            raise
        time.sleep(pause)  # another process is setting the file up: let it finish
        pause = min(pause * 2, 0.1)


def _set_up(conn: sqlite3.Connection, schema: str, pragmas: Sequence[str]) -> None:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # refused for now (another connection was busy)
            raise sqlite3.OperationalError(f"database is locked (journal mode still {mode})")
    for pragma in pragmas:
        conn.execute(pragma)
    try:
        conn.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _locked(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message
