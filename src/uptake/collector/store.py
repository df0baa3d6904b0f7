"""The collector's event store: a SQLite file (WAL), one row per distinct messageId."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["EventStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    timestamp TEXT,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    group_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp);
"""


class EventStore:
    """Stores batches all or nothing; a messageId seen before is not stored again.

    Thread-safe (one connection, one lock). Other processes may read the file meanwhile
    (WAL): the report reads it while the collector writes.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        """Open (or create) the store.

        Args:
            path: The SQLite file.
            busy_timeout: How long a write waits for another process's lock on the file
                before :meth:`add` raises ``sqlite3.OperationalError``.
        """
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def add(self, events: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Store a validated batch in one transaction; return (stored, duplicates)."""
        now = time.time()
        rows = [
            (
                e["messageId"],
                now,
                e.get("timestamp"),
                e["type"],
                _text(e.get("event")),
                _text(e.get("userId")),
                _text(e.get("anonymousId")),
                _text(e.get("groupId") or _context_group(e)),
                json.dumps(e, separators=(",", ":")),  # ASCII: lone surrogates survive
            )
            for e in events
        ]
        with self._lock:
            conn = self._conn
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")  # may raise: locked, nothing to roll back
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO events (message_id, received_at, timestamp, type, "
                    "event, user_id, anonymous_id, group_id, body) VALUES (?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            stored = conn.total_changes - before
        return stored, len(rows) - stored

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def events(self) -> Iterator[dict[str, Any]]:
        """Every stored event as sent, in arrival order."""
        with self._lock:
            bodies = [row[0] for row in self._conn.execute("SELECT body FROM events ORDER BY id")]
        for body in bodies:
            yield json.loads(body)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _text(value: str | None) -> str | None:
    """A string SQLite can store (a lone surrogate becomes U+FFFD)."""
    if value is None:
        return None
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _context_group(event: Mapping[str, Any]) -> str | None:
    context = event.get("context")
    if isinstance(context, Mapping):
        group = context.get("groupId")
        return group if isinstance(group, str) else None
    return None
