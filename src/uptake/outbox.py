"""SqliteBuffer: a durable outbox on disk, so accepted events survive crashes and outages.

Events are appended to a SQLite table (WAL mode) and deleted only once the collector has
acknowledged their batch. Several processes may share one file (gunicorn workers): a
process *claims* the rows it sends with a lease; rows whose owner died are reclaimed
when the lease ends, or at once when the owner is a dead process on this host.

Durability window: with ``commit_interval=0.05`` (the default) ``track()`` only appends to
an in-memory list, and a writer thread commits it every 50 ms at most, in one transaction;
an event is on disk within ``commit_interval`` of being accepted (while the disk works).
``commit_interval=0`` commits every event inside ``track()`` (about 10x the caller cost;
see docs/delivery.md). Commits use ``synchronous=NORMAL``: they survive the process being
killed, not a power cut.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._outbox_sql import (
    _EVERYTHING,
    _GROUP_SIZE,
    _RECLAIM_EVERY_S,
    _RETRY_WRITES_S,
    _SCHEMA,
    _abandoned,
    _json_ids,
    claim,
    insert,
    reclaim_from_dead_owners,
    settle,
    trim,
)
from ._sqlite import open_database
from .buffer import Batch, OnDrop
from .errors import ConfigurationError

logger = logging.getLogger("uptake")

__all__ = ["SqliteBuffer"]


class SqliteBuffer:
    """A durable outbox: pass ``buffer=uptake.SqliteBuffer("uptake-outbox.db")``.

    Args:
        path: The database file. Its directory must exist and be writable.
        commit_interval: Longest time, in seconds, an accepted event waits in memory before
            it is committed to disk; ``0`` commits inside every tracking call.
        max_events: Most events kept on disk; beyond it the oldest are dropped and counted
            (``stats.dropped_by_reason["outbox_full"]``).
        max_bytes: Most encoded bytes kept on disk; same treatment beyond it.
        lease: Seconds a process owns the rows it is sending. Must outlast one batch's
            retries; by default the client's ``retry_timeout`` plus ``timeout`` plus 30 s.

    Raises:
        ConfigurationError: the file cannot be created or opened.
    """

    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        commit_interval: float = 0.05,
        max_events: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        lease: float | None = None,
    ) -> None:
        if not isinstance(commit_interval, (int, float)) or not commit_interval >= 0:
            raise ConfigurationError(f"commit_interval must be >= 0, not {commit_interval!r}")
        for name, value in (("max_events", max_events), ("max_bytes", max_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, not {value!r}")
        if lease is not None and (not isinstance(lease, (int, float)) or not lease > 0):
            raise ConfigurationError(f"lease must be a positive number of seconds, not {lease!r}")
        self.path = os.fspath(path)
        self.commit_interval = float(commit_interval)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.lease = lease
        self.write_errors = 0  # failed writes; events stay in memory meanwhile
        self._max_pending = 100_000
        self._max_pending_bytes = 64 * 1024 * 1024
        self._on_drop: OnDrop | None = None
        self._conn: sqlite3.Connection | None = None
        self._init_process_state()
        try:
            self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(f"cannot open the outbox {self.path!r}: {exc}") from exc

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()  # guards the connection
        self._commit_lock = threading.Lock()  # one commit (or fallback take) at a time
        self._pending_lock = threading.Lock()  # guards the pending deque
        self._writer_lock = threading.Lock()
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._sending_from_memory = 0  # events taken from memory, not yet settled
        # Delivered batches whose rows could not be deleted yet (the file was locked):
        # (done ids, kept ids) as JSON arrays, retried before the next use of the file.
        self._unsettled: list[tuple[str, str | None]] = []
        self._conn = None
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._has_pending = threading.Event()
        self._closing = threading.Event()
        self._closed = False
        self._writer: threading.Thread | None = None
        self._next_reclaim = 0.0
        self._degraded = False

    def __repr__(self) -> str:
        return f"SqliteBuffer({self.path!r}, commit_interval={self.commit_interval})"

    @property
    def degraded(self) -> bool:
        """True while writes fail (disk full, read-only): events wait in memory meanwhile."""
        return self._degraded

    # ------------------------------------------------------------------ Buffer protocol

    def configure(self, *, max_events: int, max_bytes: int, on_drop: OnDrop, lease: float) -> None:
        """Take the client's bounds for events held in memory before they are committed."""
        self._max_pending = max_events
        self._max_pending_bytes = max_bytes
        self._on_drop = on_drop
        if self.lease is None:
            self.lease = lease

    def put(self, message: bytes) -> bool:
        """Accept one encoded event: commit it now, or hand it to the writer thread.

        May call the ``on_drop`` callback (when a commit makes the file overflow), so the
        caller must not hold a lock that callback takes.
        """
        if self.commit_interval == 0 and not self._degraded:
            try:
                with self._lock, self._transaction() as conn:
                    insert(conn, (message,))
                    dropped = self._trim(conn)
            except sqlite3.Error as exc:
                self._write_failed(exc)
            else:
                if dropped and self._on_drop is not None:
                    self._on_drop("outbox_full", *dropped)
                return True
        size = len(message)
        with self._pending_lock:
            pending = self._pending
            if (
                len(pending) >= self._max_pending
                or self._pending_bytes + size > self._max_pending_bytes
            ):
                return False
            pending.append(message)
            self._pending_bytes += size
            count = len(pending)
        if count == 1 or count >= _GROUP_SIZE:
            self._has_pending.set()
            writer = self._writer
            if writer is None or not writer.is_alive():
                self._start_writer()
        return True

    def take(self, max_bytes: int) -> Batch | None:
        """Claim the oldest unclaimed rows (committing what is pending first)."""
        self._commit_pending()
        try:
            with self._lock:
                self._settle_later()
                batch = self._claim(max_bytes)
        except sqlite3.Error as exc:
            self._write_failed(exc)
            batch = None
        if batch is None and self._degraded:
            return self._take_pending(max_bytes)
        return batch

    def settle(self, batch: Batch, keep: Sequence[tuple[int, int]] = ()) -> None:
        """Delete the batch's rows, except ``keep`` ranges, which are released for later.

        Only rows this process still holds the lease of are touched: a row whose lease
        ran out and that another process claimed is that process's to settle.
        """
        if not batch.ids:  # taken from memory while the disk was failing
            kept = [m for start, stop in keep for m in batch.messages[start:stop]]
            with self._commit_lock, self._pending_lock:
                self._pending.extendleft(reversed(kept))
                self._pending_bytes += sum(len(m) for m in kept)
                self._sending_from_memory -= len(batch)
            return
        kept_ids = {batch.ids[i] for start, stop in keep for i in range(start, stop)}
        done = _json_ids(i for i in batch.ids if i not in kept_ids)
        with self._lock:
            # Settled in order: a batch that could not be settled before goes first.
            self._unsettled.append((done, _json_ids(kept_ids) if kept_ids else None))
            try:
                self._settle_later()
            except sqlite3.Error as exc:
                # Kept (with their lease) and retried on the next use of the file, so that
                # neither this process's flush() waits on them nor they are sent twice.
                logger.error(
                    "outbox %s: could not remove a delivered batch (will retry): %s",
                    self.path,
                    exc,
                )

    def mark(self) -> int:
        """Commit what is pending; return the newest row id in the outbox.

        If what is pending cannot be committed now (the disk refuses it), those events
        will get row ids only later: the mark then covers every row, present and future,
        so that flush() waits for all of them rather than miss the late ones.
        """
        if not self._commit_pending():
            return _EVERYTHING
        try:
            with self._lock:
                row = self._connection().execute("SELECT MAX(id) FROM outbox").fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0] or 0)

    def drained(self, mark: int) -> bool:
        """True when no row numbered up to ``mark`` is left (by any process).

        While the disk refuses writes, events waiting in memory or being sent from memory
        are not settled either. (Otherwise what waits in memory is newer than the mark.)
        """
        if self._sending_from_memory or (self._degraded and self._pending):
            return False
        try:
            with self._lock:
                self._settle_later()
                row = (
                    self._connection()
                    .execute("SELECT 1 FROM outbox WHERE id <= ? LIMIT 1", (mark,))
                    .fetchone()
                )
        except sqlite3.Error:  # the file is out of reach: judge by what is in memory
            return not self._pending
        return row is None

    def backlog(self) -> int:
        """Events accepted but not yet committed (cheap: tracking calls ask it in bursts)."""
        return len(self._pending)

    def __len__(self) -> int:
        """Events waiting: those not yet committed, plus every row in the file.

        The file is shared: its rows include other processes' events and events left by
        earlier runs, all of which this process may end up sending.
        """
        stored = 0
        if not self._closed:
            try:
                with self._lock:
                    row = (
                        self._connection()
                        .execute("SELECT events FROM outbox_totals WHERE id = 1")
                        .fetchone()
                    )
                stored = int(row[0])
            except sqlite3.Error:
                pass
        return stored + len(self._pending)

    def close(self) -> int:
        """Commit what is pending, release this process's leases, close the file.

        Safe to call twice. Returns how many events could not be written (lost with the
        process).
        """
        self._closing.set()
        self._has_pending.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(1.0)
        if not self._closed:
            self._commit_pending()
            try:
                with self._lock:
                    if self._conn is not None:
                        self._settle_later()  # before the leases go: else sent twice
                        self._conn.execute(
                            "UPDATE outbox SET lease_owner = NULL, lease_until = 0 "
                            "WHERE lease_owner = ?",
                            (self._owner,),
                        )
                        self._conn.close()
                        self._conn = None
            except sqlite3.Error as exc:
                logger.error("outbox %s: error while closing: %s", self.path, exc)
            self._closed = True
        with self._pending_lock:
            lost = len(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
        return lost

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child: own connection and lease owner, nothing pending.

        Events still pending in the parent are the parent's to commit; rows already in the
        file may be sent by any process sharing it, the child included.
        """
        if self._conn is not None:
            _abandoned.append(self._conn)  # never closed here: it is the parent's handle
        self._init_process_state()

    # ------------------------------------------------------------------ internals

    def _connection(self) -> sqlite3.Connection:
        """The open connection (call with ``_lock`` held); reopens it when needed.

        Raises:
            sqlite3.Error: the file cannot be opened now (or the buffer is closed).
        """
        if self._conn is None:
            if self._closed:
                raise sqlite3.OperationalError("the outbox is closed")
            try:
                self._conn = self._open()
            except OSError as exc:
                raise sqlite3.OperationalError(str(exc)) from exc
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the connection (call with ``_lock`` held)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    _abandoned.append(conn)  # stuck in a transaction: start a new one
                    self._conn = None
            raise

    def _open(self) -> sqlite3.Connection:
        """Open the file, moving it aside first if it is not a database."""
        try:
            return self._open_file()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # cannot open (missing directory, locked, ...): not corruption
            aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            logger.error(
                "outbox %s is unreadable (%s); moved aside to %s, starting a fresh one",
                self.path,
                exc,
                aside,
            )
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
            return self._open_file()

    def _open_file(self) -> sqlite3.Connection:
        if not Path(self.path).parent.is_dir():
            raise sqlite3.OperationalError(f"directory {Path(self.path).parent} does not exist")
        # Safe when several processes create the file at once (workers starting together).
        return open_database(
            self.path,
            timeout=10.0,
            schema=_SCHEMA,
            pragmas=(
                "PRAGMA synchronous=NORMAL",
                "PRAGMA journal_size_limit=4194304",  # truncate the WAL after checkpoints
            ),
        )

    def _start_writer(self) -> None:
        with self._writer_lock:
            if (self._writer is not None and self._writer.is_alive()) or self._closing.is_set():
                return
            thread = threading.Thread(target=self._write_loop, name="uptake-outbox", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter exiting: the worker commits instead
                return
            self._writer = thread

    def _write_loop(self) -> None:
        backoff = _RETRY_WRITES_S[0]
        while not self._closing.is_set():
            try:
                self._has_pending.wait()
                self._closing.wait(self.commit_interval)  # gather a group, unless closing
                if self._commit_pending():
                    backoff = _RETRY_WRITES_S[0]
                else:  # the disk refused: try again later, not in a tight loop
                    self._closing.wait(backoff)
                    backoff = min(backoff * 2, _RETRY_WRITES_S[1])
            except Exception:  # never let a bug stop the commits silently
                logger.exception("unexpected error in the outbox writer")
                self._closing.wait(backoff)

    def _commit_pending(self) -> bool:
        """Write what is pending; False when the disk refused it."""
        with self._commit_lock:
            # Only this method and _take_pending remove from the deque, both under
            # _commit_lock, so the group copied here is still at its head afterwards.
            with self._pending_lock:
                if not self._pending:
                    self._has_pending.clear()
                    return True
                group = list(self._pending)
            try:
                with self._lock, self._transaction() as conn:
                    insert(conn, group)
                    dropped = self._trim(conn)
            except sqlite3.Error as exc:
                self._write_failed(exc)
                return False
            with self._pending_lock:
                for _ in range(len(group)):
                    self._pending_bytes -= len(self._pending.popleft())
                if not self._pending:
                    self._has_pending.clear()
        if dropped and self._on_drop is not None:  # outside the locks: it calls back up
            self._on_drop("outbox_full", *dropped)
        if self._degraded:
            self._degraded = False
            logger.warning("outbox %s is writable again; events go to disk again", self.path)
        return True

    def _settle_later(self) -> None:
        """Delete the rows of delivered batches not settled yet (call with ``_lock`` held).

        Raises:
            sqlite3.Error: the file is still locked or out of reach; they stay queued.
        """
        while self._unsettled:
            done, kept = self._unsettled[0]
            with self._transaction() as conn:
                settle(conn, done, kept, self._owner)
            del self._unsettled[0]

    def _write_failed(self, exc: sqlite3.Error) -> None:
        self.write_errors += 1
        if not self._degraded:
            self._degraded = True
            logger.error(
                "outbox %s: writing failed (%s); keeping events in memory until it works",
                self.path,
                exc,
            )

    def _take_pending(self, max_bytes: int) -> Batch | None:
        with self._commit_lock, self._pending_lock:
            if not self._pending:
                return None
            out: list[bytes] = []
            size = 0
            while self._pending:
                cost = len(self._pending[0]) + 1
                if out and size + cost > max_bytes:
                    break
                out.append(self._pending.popleft())
                size += cost
            self._pending_bytes -= size - len(out)
            self._sending_from_memory += len(out)
        return Batch(out, 1 << 62, 1 << 62)

    def _claim(self, max_bytes: int) -> Batch | None:
        now = time.time()
        if now >= self._next_reclaim:
            self._next_reclaim = now + _RECLAIM_EVERY_S
            reclaim_from_dead_owners(self._connection(), now, self._owner, self.path)
        with self._transaction() as conn:
            claimed = claim(conn, now, max_bytes, self._owner, now + (self.lease or 360.0))
        if claimed is None:
            return None
        ids, messages = claimed
        return Batch(messages, min(ids), max(ids), ids)

    def _trim(self, conn: sqlite3.Connection) -> tuple[int, int] | None:
        """Drop the oldest rows beyond the bounds; return (count, oldest id) if any."""
        return trim(conn, self.path, self.max_events, self.max_bytes)
