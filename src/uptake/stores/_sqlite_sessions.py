"""The ``sessions`` table of a SqliteStore: one row per user with an open session.

Every process sharing the file reads and changes a user's session inside one write
transaction, so they all give a visit the same session id, and the process whose
transaction ends a session (replacing it, or taking it when idle) is the only one to
report it.
"""

from __future__ import annotations

import sqlite3
from typing import TypeVar

from .._sessionstate import SessionChange, SessionRecord

__all__ = ["SCHEMA", "SessionChange", "SessionRecord", "get", "take", "update"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    sid TEXT NOT NULL,
    uid TEXT,
    anon TEXT,
    account TEXT,
    started REAL NOT NULL,
    last REAL NOT NULL,
    explicit INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_last ON sessions (last);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started);
"""

_COLUMNS = "key, sid, uid, anon, account, started, last, explicit"


def _record(row: tuple[object, ...]) -> SessionRecord:
    key, sid, uid, anon, account, started, last, explicit = row
    return SessionRecord(
        str(key),
        str(sid),
        None if uid is None else str(uid),
        None if anon is None else str(anon),
        None if account is None else str(account),
        float(started),  # type: ignore[arg-type]
        float(last),  # type: ignore[arg-type]
        bool(explicit),
    )


def get(conn: sqlite3.Connection, key: str) -> SessionRecord | None:
    """The open session of ``key``, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM sessions WHERE key = ?", (key,)).fetchone()
    return None if row is None else _record(row)


def update(conn: sqlite3.Connection, key: str, change: SessionChange[T]) -> T:
    """Apply ``change`` to the session of ``key`` (call inside a write transaction)."""
    current = get(conn, key)
    kept, result = change(current)
    if kept is current:
        return result
    if kept is None:
        conn.execute("DELETE FROM sessions WHERE key = ?", (key,))
    else:
        conn.execute(
            f"INSERT OR REPLACE INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, *kept[1:7], int(kept.explicit)),
        )
    return result


def take(
    conn: sqlite3.Connection, idle_before: float, started_before: float, limit: int
) -> list[SessionRecord]:
    """Delete and return the sessions over (call inside a write transaction)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM sessions WHERE (explicit = 0 AND last < ?) OR started < ? LIMIT ?",
        (idle_before, started_before, limit),
    ).fetchall()
    conn.executemany("DELETE FROM sessions WHERE key = ?", [(row[0],) for row in rows])
    return [_record(row) for row in rows]
