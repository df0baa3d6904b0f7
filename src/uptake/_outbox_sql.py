"""The SQLite side of the outbox: its schema, statements and row helpers.

Kept apart from :mod:`uptake.outbox` (the buffer's behaviour: leases, the writer thread,
settling) so that each file holds one job.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence

logger = logging.getLogger("uptake")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (lease_until) WHERE lease_until > 0;
CREATE TABLE IF NOT EXISTS outbox_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    events INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO outbox_totals VALUES (1, 0, 0);
"""
# Totals are kept by hand in the same transaction as each change: cheaper than triggers.
_ADD_TOTALS = "UPDATE outbox_totals SET events = events + ?, bytes = bytes + ? WHERE id = 1"
# Python's sqlite3 lets go of the GIL at every step of a statement, and getting it back
# waits behind a busy host thread (up to 5 ms each time). So rows go in a few hundred per
# INSERT, and a claim is a single statement that returns one row: every batch of events
# costs a handful of steps, not one or two per event.
_INSERT_ROWS = 400
# The oldest unclaimed rows whose running size fits max_bytes (at least one), aggregated
# into one row: their ids and sizes as JSON arrays and their bodies as one hex string
# (hex, so a body that is not valid UTF-8 cannot break the claim).
_CLAIM = """
SELECT json_group_array(id), json_group_array(size), group_concat(hex(body), '')
FROM (
    SELECT id, size, body, SUM(size + 1) OVER (ORDER BY id) AS running
    FROM outbox WHERE lease_until < :now ORDER BY id LIMIT :rows
)
WHERE running <= :max_bytes OR running = size + 1
"""
_IDS = "SELECT value FROM json_each(?)"
_GROUP_SIZE = 512  # pending events that wake the writer before the interval is up
_RECLAIM_EVERY_S = 30.0
_CLAIM_ROWS = 4096
_RETRY_WRITES_S = (0.5, 30.0)  # after a failed commit the writer waits 0.5 s, doubling to 30
# Connections inherited from a parent process: kept referenced so that they are never
# closed (closing one would act on the parent's SQLite handle); never used.
_abandoned: list[sqlite3.Connection] = []
_EVERYTHING = 1 << 62  # a mark above every row id


def reclaim_from_dead_owners(conn: sqlite3.Connection, now: float, me: str, path: object) -> None:
    """Release the leases of processes of this host that died while sending."""
    host = socket.gethostname()
    owners = conn.execute(
        "SELECT DISTINCT lease_owner FROM outbox WHERE lease_until > ?", (now,)
    ).fetchall()
    for (owner,) in owners:
        if owner and owner != me and _dead_on_this_host(owner, host):
            released = conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?",
                (owner,),
            ).rowcount
            logger.info("outbox %s: reclaimed %d events from a process that died", path, released)


def trim(
    conn: sqlite3.Connection, path: object, max_events: int, max_bytes: int
) -> tuple[int, int] | None:
    """Drop the oldest rows beyond the bounds; return (count, oldest id) if any.

    Runs inside the caller's write transaction, so the totals it reads are exact.
    Rows leased for sending are spared.
    """
    events, nbytes = conn.execute("SELECT events, bytes FROM outbox_totals WHERE id = 1").fetchone()
    if events <= max_events and nbytes <= max_bytes:
        return None
    excess_events = max(0, events - max_events)
    excess_bytes = max(0, nbytes - max_bytes)
    victims: list[int] = []
    freed = 0
    cursor = conn.execute(
        "SELECT id, size FROM outbox WHERE lease_until < ? ORDER BY id", (time.time(),)
    )
    while len(victims) < excess_events or freed < excess_bytes:
        rows = cursor.fetchmany(1024)
        if not rows:
            break
        for row_id, size in rows:
            if len(victims) >= excess_events and freed >= excess_bytes:
                break
            victims.append(row_id)
            freed += size
    cursor.close()
    if not victims:
        return None
    conn.execute(f"DELETE FROM outbox WHERE id IN ({_IDS})", (_json_ids(victims),))
    conn.execute(_ADD_TOTALS, (-len(victims), -freed))
    logger.warning(
        "outbox %s is full (max_events=%d, max_bytes=%d); dropped its %d oldest events",
        path,
        max_events,
        max_bytes,
        len(victims),
    )
    return len(victims), victims[0]


@functools.lru_cache(maxsize=4)
def _insert_sql(rows: int) -> str:
    return "INSERT INTO outbox (body, size) VALUES " + ",".join(["(?, ?)"] * rows)


def _json_ids(ids: Iterator[int] | Sequence[int] | set[int]) -> str:
    return "[" + ",".join(str(i) for i in ids) + "]"


def _load_ids(text: str | None) -> list[int]:
    if not text or text == "[]":
        return []
    return [int(part) for part in text[1:-1].split(",")]


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    """Cut the concatenated bodies of a claim back into messages, by their sizes."""
    out = []
    pos = 0
    for size in sizes:
        out.append(data[pos : pos + size])
        pos += size
    return out


def _dead_on_this_host(owner: str, host: str) -> bool:
    """Whether a lease owner ("host:pid:token") is a process of this host that has exited."""
    parts = owner.split(":")
    if len(parts) < 3 or ":".join(parts[:-2]) != host:
        return False
    try:
        pid = int(parts[-2])
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # another buffer of this very process: alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def insert(conn: sqlite3.Connection, group: Sequence[bytes]) -> None:
    """Insert rows and update the totals, a few hundred rows per statement."""
    for start in range(0, len(group), _INSERT_ROWS):
        chunk = group[start : start + _INSERT_ROWS]
        params = [value for m in chunk for value in (m, len(m))]
        conn.execute(_insert_sql(len(chunk)), params)
    conn.execute(_ADD_TOTALS, (len(group), sum(len(m) for m in group)))


def claim(
    conn: sqlite3.Connection, now: float, max_bytes: int, owner: str, until: float
) -> tuple[list[int], list[bytes]] | None:
    """Lease the oldest free rows within ``max_bytes`` to ``owner``; their ids and bodies.

    Call inside a write transaction. None when no row is free.
    """
    ids_json, sizes_json, joined = conn.execute(
        _CLAIM, {"now": now, "rows": _CLAIM_ROWS, "max_bytes": max_bytes}
    ).fetchone()
    ids = _load_ids(ids_json)
    if not ids:
        return None
    conn.execute(
        "UPDATE outbox SET lease_owner = ?, lease_until = ? "
        f"WHERE id IN ({_IDS}) AND lease_until < ?",
        (owner, until, ids_json, now),
    )
    return ids, _split(bytes.fromhex(joined), _load_ids(sizes_json))


def settle(conn: sqlite3.Connection, done: str, kept: str | None, owner: str) -> None:
    """Delete the delivered rows ``done`` and free the rows ``kept`` (JSON id lists).

    Only rows still leased to ``owner`` are touched; call inside a write transaction.
    """
    if kept is not None:
        conn.execute(
            f"UPDATE outbox SET lease_owner = NULL, lease_until = 0 "
            f"WHERE id IN ({_IDS}) AND lease_owner = ?",
            (kept, owner),
        )
    count, size = conn.execute(
        f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox "
        f"WHERE id IN ({_IDS}) AND lease_owner = ?",
        (done, owner),
    ).fetchone()
    conn.execute(f"DELETE FROM outbox WHERE id IN ({_IDS}) AND lease_owner = ?", (done, owner))
    conn.execute(_ADD_TOTALS, (-count, -size))
