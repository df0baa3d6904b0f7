"""The collector's event store: a SQLite file (WAL), one row per distinct messageId.

Several collector processes (``uptake serve --workers N``) may write one file: each opens
its own :class:`EventStore`, SQLite serializes their transactions, and a writer that
cannot get the file within ``busy_timeout`` raises ``sqlite3.OperationalError`` (the
collector answers 503, and clients retry).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .ingest import read_body
from .validate import Row

__all__ = ["COLUMNS", "EventStore"]

#: The columns of a stored row, in the order of :data:`uptake.collector.ingest.Row`.
COLUMNS = (
    "message_id",
    "received_at",
    "event_time",
    "timestamp",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "group_id",
    "body",
)

# ``timestamp`` is the event time as ISO 8601 (UTC, "Z") and ``event_time`` the same in
# epoch seconds, both by Segment's rule; stores written before ``event_time`` existed
# have it NULL (the report then reads ``timestamp``, else ``received_at``).
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
    body TEXT NOT NULL,
    event_time REAL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp);
CREATE TABLE IF NOT EXISTS rejected (
    reason TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
"""

_INSERT = (
    f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
_COUNT_REJECTED = (
    "INSERT INTO rejected (reason, count) VALUES (?, ?) "
    "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count"
)


class EventStore:
    """Stores rows in one transaction each call; a messageId seen before is not stored again.

    Thread-safe (one writing connection under a lock, one reading connection under
    another, so counting never waits for a write). Other processes may read the file
    meanwhile (WAL): the report reads it while the collector writes.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        """Open (or create) the store.

        Args:
            path: The SQLite file.
            busy_timeout: How long a write waits for another process's lock on the file
                before :meth:`add` raises ``sqlite3.OperationalError``.

        Raises:
            sqlite3.Error: the file cannot be opened or created (a missing folder, no
                permission, not a SQLite file).
        """
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise
        self._read_lock = threading.Lock()
        self._reader = self._conn
        if self.path != ":memory:" and not self.path.startswith("file:"):
            self._reader = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        else:  # an in-memory database is private to its connection
            self._read_lock = self._lock

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # several workers may open a new file at once
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            if "event_time" not in columns:  # a store from before event_time
                conn.execute("ALTER TABLE events ADD COLUMN event_time REAL")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def add_rows(
        self, rows: Sequence[Row], rejected: Mapping[str, int] | None = None
    ) -> tuple[int, int]:
        """Store ingested rows, and count rejected events by reason, in one transaction.

        Returns:
            (stored, duplicates): a row whose messageId is already stored (or repeated in
            ``rows``) is a duplicate.

        Raises:
            sqlite3.OperationalError: the file is locked (past ``busy_timeout``), the disk
                is full or failing; nothing was stored.
        """
        reasons = [(k, v) for k, v in (rejected or {}).items() if v]
        with self._lock:
            conn = self._conn
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")  # may raise: locked, nothing to roll back
            try:
                conn.executemany(_INSERT, rows)
                stored = conn.total_changes - before
                if reasons:
                    conn.executemany(_COUNT_REJECTED, reasons)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return stored, len(rows) - stored

    def add(self, events: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Validate and store Segment-spec events, as the collector would a batch of them.

        Returns:
            (stored, duplicates); invalid events are counted under ``rejected``.
        """
        ingested = read_body(json.dumps({"batch": list(events)}).encode(), received_at=time.time())
        return self.add_rows(ingested.rows, ingested.reasons())

    def __len__(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def stored(self) -> int:
        """How many events were stored, read in constant time: the highest row id, which
        is the count as long as no row was deleted (the collector deletes none). ``len()``
        counts every row, which takes time in proportion to the store's size."""
        with self._read_lock:
            return int(self._reader.execute("SELECT max(id) FROM events").fetchone()[0] or 0)

    def rejected(self) -> dict[str, int]:
        """Events rejected so far (by every process writing this file), by reason code."""
        with self._read_lock:
            rows = self._reader.execute("SELECT reason, count FROM rejected ORDER BY reason")
            return {str(reason): int(count) for reason, count in rows}

    def events(self) -> Iterator[dict[str, Any]]:
        """Every stored event as stored, in arrival order."""
        with self._read_lock:
            bodies = [row[0] for row in self._reader.execute("SELECT body FROM events ORDER BY id")]
        for body in bodies:
            yield json.loads(body)

    def close(self) -> None:
        with self._lock:
            if self._reader is not self._conn:
                with self._read_lock:
                    self._reader.close()
            self._conn.close()
