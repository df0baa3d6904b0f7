"""SqliteStore: rule state in a SQLite file shared by every process of one machine."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from .._rulestate import SubjectState
from .._sessionstate import SessionChange, SessionRecord
from .._sqlite import open_database
from ..errors import ConfigurationError
from . import _sqlite_sessions as _sessions

__all__ = ["SqliteStore"]

T = TypeVar("T")

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS subjects (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    seen REAL NOT NULL
) WITHOUT ROWID;
"""
    + _sessions.SCHEMA
)


def _single(states: list[SubjectState], change: Callable[..., T], *args: Any) -> T:
    return change(states[0], *args)


# Connections inherited from a parent process: kept referenced so they are never closed
# (closing one would act on the parent's SQLite handle); never used.
_abandoned: list[sqlite3.Connection] = []


class SqliteStore:
    """Keeps rule state in a SQLite file that all processes of one machine share.

    Each update reads, changes and writes a subject's state in one write transaction, so
    two gunicorn workers seeing the same user's events apply them one after the other and
    a milestone is reached exactly once. Thread-safe and fork-safe.

    Args:
        path: The database file. Its directory must exist and be writable.
        timeout: Longest wait, in seconds, for another thread's or process's write to
            finish. It is spent on the tracking thread, so keep it short: past it, that
            event is left out of the rules (logged), never the host blocked for long.

    Raises:
        ConfigurationError: the file cannot be created or opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 0.5) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._open()
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the store {self.path!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def __len__(self) -> int:
        with self._lock:
            row = self._connection().execute("SELECT COUNT(*) FROM subjects").fetchone()
        return int(row[0])

    def update(self, key: str, change: Callable[..., T], *args: Any) -> T:
        """Call ``change(state, *args)`` on the state of ``key`` in one transaction.

        Raises:
            TimeoutError: the store stayed busy for longer than ``timeout``.
            sqlite3.Error: the file could not be read or written.
        """
        result: T = self.update_many((key,), _single, change, *args)
        return result

    def update_many(self, keys: Sequence[str], change: Callable[..., T], *args: Any) -> T:
        """Call ``change([state of each key], *args)`` for all the keys in one transaction.

        Raises:
            TimeoutError: the store stayed busy for longer than ``timeout``.
            sqlite3.Error: the file could not be read or written.
        """
        with self._write() as conn:
            states = []
            for key in keys:
                row = conn.execute("SELECT state FROM subjects WHERE key = ?", (key,)).fetchone()
                states.append(SubjectState.from_json(json.loads(row[0])) if row else SubjectState())
            result = change(states, *args)
            now = time.time()
            conn.executemany(
                "INSERT INTO subjects (key, state, seen) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET state = excluded.state, seen = excluded.seen",
                [
                    (key, json.dumps(state.to_json(), separators=(",", ":")), now)
                    for key, state in zip(keys, states, strict=True)
                ],
            )
        return result

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Hold this process's lock and one write transaction (committed on success).

        Raises:
            TimeoutError: the store stayed busy for longer than ``timeout``.
        """
        if not self._lock.acquire(timeout=self.timeout):
            raise TimeoutError(f"the store {self.path!r} stayed busy for {self.timeout}s")
        try:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # another process held the lock too long
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                raise TimeoutError(
                    f"the store {self.path!r} stayed locked for {self.timeout}s"
                ) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ sessions

    def session_update(self, key: str, change: SessionChange[T]) -> T:
        """Call ``change(record or None)`` on the open session of ``key`` in one transaction.

        ``change`` returns ``(record to keep, result)``: the record it was given keeps the
        row as it is, ``None`` deletes it, another record replaces it. It is first called
        on a plain read; only when it changes something is it called again, inside a
        write transaction, and that call decides. Every process
        sharing the file sees the same session (see docs/stores.md, "Sessions").

        Raises:
            TimeoutError: the store stayed busy for longer than ``timeout``.
            sqlite3.Error: the file could not be read or written.
        """
        # First a plain read: most events leave the session as it is.
        if not self._lock.acquire(timeout=self.timeout):
            raise TimeoutError(f"the store {self.path!r} stayed busy for {self.timeout}s")
        try:
            current = _sessions.get(self._connection(), key)
        finally:
            self._lock.release()
        kept, result = change(current)
        if kept is current:
            return result
        with self._write() as conn:  # read again under the write lock, and decide there
            return _sessions.update(conn, key, change)

    def session_get(self, key: str) -> SessionRecord | None:
        """The open session of ``key``, or None."""
        with self._lock:
            return _sessions.get(self._connection(), key)

    def session_take(
        self, idle_before: float, started_before: float, limit: int
    ) -> list[SessionRecord]:
        """Delete and return (at most ``limit``) sessions over: automatic ones last active
        before ``idle_before``, any started before ``started_before``. Each is returned
        to exactly one caller, whichever process it runs in."""
        with self._write() as conn:
            return _sessions.take(conn, idle_before, started_before, limit)

    def get(self, key: str) -> SubjectState | None:
        """The state of ``key``, or None."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT state FROM subjects WHERE key = ?", (key,))
                .fetchone()
            )
        return SubjectState.from_json(json.loads(row[0])) if row else None

    def delete(self, key: str) -> bool:
        """Forget ``key``; True if it was known."""
        with self._lock:
            cursor = self._connection().execute("DELETE FROM subjects WHERE key = ?", (key,))
        return cursor.rowcount > 0

    def after_fork_in_child(self) -> None:
        """Use a connection of the child's own (the parent's is kept, never touched)."""
        if self._conn is not None:
            _abandoned.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        # Safe when several processes create the file at once (workers starting together).
        return open_database(
            self.path,
            timeout=self.timeout,
            schema=_SCHEMA,
            pragmas=("PRAGMA synchronous=NORMAL",),
        )
