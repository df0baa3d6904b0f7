"""Where the report reads events from: the collector's SQLite file, or a JSONL export.

Both give :data:`~uptake.collector.metrics.Record` tuples and count what they skip (no
parseable timestamp, no user or anonymous id, a line that is not a JSON object), so a
report always says how many events it could not use.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..definitions import OWN_EVENTS, parse_time
from .metrics import Record

__all__ = ["Source", "from_events", "from_jsonl", "from_store"]

# Events whose properties the report reads; every other event needs only its columns.
_WITH_DATA = ("Feature Used", *sorted(OWN_EVENTS))


class Source:
    """Records read from somewhere, and how many events were skipped while reading."""

    def __init__(self, records: Iterator[Record]) -> None:
        self._records = records
        self.skipped = 0
        self.read = 0

    def __iter__(self) -> Iterator[Record]:
        return self._records


def _record(
    source: Source,
    timestamp: object,
    kind: object,
    event: object,
    user: object,
    anonymous: object,
    account: object,
    data: object,
) -> Record | None:
    source.read += 1
    t = _time(timestamp)
    who = user if isinstance(user, str) and user else anonymous
    if (
        t is None
        or not _EARLIEST <= t <= time.time() + _AHEAD
        or not isinstance(who, str)
        or not who
        or not isinstance(kind, str)
    ):
        source.skipped += 1
        return None
    return (
        t,
        _text(who),
        _text(account) if isinstance(account, str) and account else None,
        kind,
        _text(event) if isinstance(event, str) else None,
        data if isinstance(data, Mapping) else None,
    )


def _text(value: str) -> str:
    """A string that can be written out: a lone surrogate becomes U+FFFD."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


#: Events outside [1990-01-01, now + 2 days] are skipped: a timestamp from a broken clock
#: would otherwise stretch every daily series over centuries.
_EARLIEST = 631_152_000.0
_AHEAD = 2 * 86_400.0


def _time(value: object) -> float | None:
    """Epoch seconds of an event timestamp; the SDK's own form (UTC, ``Z``) the fast way."""
    if type(value) is str and value[10:11] == "T" and value[-1:] == "Z":
        try:  # Python 3.11+ reads "Z"; the general parser below is a few times slower
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return parse_time(value)


def from_store(path: str | os.PathLike[str]) -> Source:
    """Read the events a collector stored (``uptake serve --db``), read-only.

    The file is opened when the records are first read, and closed once they are all
    read (or the reader is closed).

    Raises:
        FileNotFoundError: no such file (at once).
        sqlite3.DatabaseError: the file is not a collector's event store (when read).
    """
    location = Path(path).resolve()
    if not location.is_file():
        raise FileNotFoundError(f"no event store at {os.fspath(path)}")
    # Only events the report reads properties of have their JSON body parsed at all, and
    # only when those properties (or traits) are an object.
    marks = ",".join("?" * len(_WITH_DATA))
    query = (
        "SELECT timestamp, type, event, user_id, anonymous_id, group_id, "
        f"CASE WHEN type = 'track' AND event IN ({marks}) "
        "AND json_type(body, '$.properties') = 'object' "
        "THEN json_extract(body, '$.properties') "
        "WHEN type = 'group' AND json_type(body, '$.traits') = 'object' "
        "THEN json_extract(body, '$.traits') END FROM events"
    )
    source = Source(iter(()))

    def rows() -> Iterator[Record]:
        conn = sqlite3.connect(f"{location.as_uri()}?mode=ro", uri=True)
        try:
            for timestamp, kind, event, user, anonymous, account, data in conn.execute(
                query, _WITH_DATA
            ):
                parsed = _json(data) if data is not None else None
                record = _record(source, timestamp, kind, event, user, anonymous, account, parsed)
                if record is not None:
                    yield record
        finally:
            conn.close()

    source._records = rows()
    return source


def _json(text: object) -> Any:
    """Parsed JSON, or None for anything that is not a JSON text (or nests too deep)."""
    if not isinstance(text, (str, bytes)):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def from_events(events: Iterable[object]) -> Source:
    """Read events given as Segment-spec dicts (``None`` or a non-dict counts as skipped)."""
    source = Source(iter(()))

    def rows() -> Iterator[Record]:
        for e in events:
            if not isinstance(e, Mapping):
                source.read += 1
                source.skipped += 1
                continue
            kind = e.get("type")
            event = e.get("event")
            data = None
            if kind == "track" and event in _WITH_DATA:
                data = e.get("properties")
            elif kind == "group":
                data = e.get("traits")
            # As the collector files it: a top-level groupId, else the context's.
            account = e.get("groupId")
            context = e.get("context")
            if not account and isinstance(context, Mapping):
                account = context.get("groupId")
            record = _record(
                source,
                e.get("timestamp"),
                kind,
                event,
                e.get("userId"),
                e.get("anonymousId"),
                account,
                data,
            )
            if record is not None:
                yield record

    source._records = rows()
    return source


def from_jsonl(path: str | os.PathLike[str]) -> Source:
    """Read a JSONL export, one event per line (blank lines ignored, bad lines skipped).

    Raises:
        FileNotFoundError: no such file.
    """

    def lines() -> Iterator[object]:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield _json(line.decode("utf-8", "replace"))

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {os.fspath(path)}")
    return from_events(lines())
