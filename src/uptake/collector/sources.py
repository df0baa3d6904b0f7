"""Where the report reads events from: the collector's SQLite file, or a JSONL export.

Both give :data:`~uptake.collector.metrics.Record` tuples and count what they skip, by
reason (:data:`SKIP_REASONS`), so a report always says how many events it could not use
and why. An event's time follows Segment's rule (:func:`~uptake.collector.ingest.event_time`):
``timestamp``, else ``originalTimestamp`` corrected by the client's clock skew, else
``receivedAt``; the collector stores that time with each event.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..definitions import OWN_EVENTS, writable
from .ingest import event_time, read_time
from .metrics import Record

__all__ = ["SKIP_REASONS", "Source", "from_events", "from_jsonl", "from_store"]

# Events whose properties the report reads; every other event needs only its columns.
_WITH_DATA = ("Feature Used", *sorted(OWN_EVENTS))

#: Why the report leaves an event out.
SKIP_REASONS = (
    NO_TIME := "no usable time",
    OUT_OF_RANGE := "time before 1990 or over 2 days ahead",
    NO_USER := "no user or anonymous id",
    NO_TYPE := "no event type",
    NOT_AN_OBJECT := "not a JSON object",
    UNREADABLE := "unreadable stored event",
)


class Source:
    """Records read from somewhere, and how many events were skipped while reading, by
    reason (:data:`SKIP_REASONS`)."""

    def __init__(self, records: Iterator[Record]) -> None:
        self._records = records
        self.skipped_by: Counter[str] = Counter()
        self.read = 0
        #: The collector store read, if any (the report engine reads it through SQL).
        self.store: Path | None = None
        self._where: Callable[[str], Iterator[tuple[int, Record]]] | None = None

    def numbered(self, where: str) -> Iterator[tuple[int, Record]]:
        """The store's records that meet an SQL condition, with their row ids.

        Raises:
            ValueError: the source is not a collector store.
        """
        if self._where is None:
            raise ValueError("not a collector store")
        return self._where(where)

    @property
    def skipped(self) -> int:
        """How many events were skipped, for every reason."""
        return sum(self.skipped_by.values())

    def skip(self, reason: str) -> None:
        self.skipped_by[reason] += 1

    def __iter__(self) -> Iterator[Record]:
        return self._records


def _record(
    source: Source,
    t: float | None,
    kind: object,
    event: object,
    user: object,
    anonymous: object,
    account: object,
    data: object,
) -> Record | None:
    source.read += 1
    who = user if isinstance(user, str) and user else anonymous
    reason = None
    if t is None:
        reason = NO_TIME
    elif not _EARLIEST <= t <= time.time() + _AHEAD:
        reason = OUT_OF_RANGE
    elif not isinstance(who, str) or not who:
        reason = NO_USER
    elif not isinstance(kind, str):
        reason = NO_TYPE
    if reason is not None:
        source.skip(reason)
        return None
    assert t is not None and isinstance(who, str) and isinstance(kind, str)
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
    return writable(value)


#: Events outside [1990-01-01, now + 2 days] are skipped: a timestamp from a broken clock
#: would otherwise stretch every daily series over centuries.
_EARLIEST = 631_152_000.0
_AHEAD = 2 * 86_400.0


_time = read_time


def _finite(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    return None


def from_store(path: str | os.PathLike[str]) -> Source:
    """Read the events a collector stored (``uptake serve --db``), read-only.

    The file is opened when the records are first read, and closed once they are all
    read (or the reader is closed). A row that cannot be used (its stored JSON unreadable,
    say) is skipped and counted, never fatal.

    Raises:
        FileNotFoundError: no such file (at once).
        sqlite3.DatabaseError: the file is not a collector's event store (when read).
    """
    location = Path(path).resolve()
    if not location.is_file():
        raise FileNotFoundError(f"no event store at {os.fspath(path)}")
    # Only events the report reads properties of have their JSON body parsed at all, and
    # only when those properties (or traits) are an object. A body that is not JSON
    # gives 0, so that one bad row is skipped rather than failing the whole query.
    marks = ",".join("?" * len(_WITH_DATA))
    source = Source(iter(()))

    def rows(where: str = "1") -> Iterator[tuple[int, Record]]:
        conn = sqlite3.connect(f"{location.as_uri()}?mode=ro", uri=True)
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            query = (
                "SELECT rowid, "
                f"{'event_time' if 'event_time' in columns else 'NULL'}, timestamp, "
                "received_at, type, event, user_id, anonymous_id, group_id, "
                f"CASE WHEN NOT ((type = 'track' AND event IN ({marks})) "
                "OR type IN ('group', 'identify')) "
                "THEN NULL WHEN NOT json_valid(body) THEN 0 "
                # SQLite reads the first of two keys alike, Python the last: the body
                f"WHEN {_twice('properties')} OR {_twice('traits')} THEN '!' || body "
                "WHEN type = 'track' AND json_type(body, '$.properties') = 'object' "
                "THEN json_extract(body, '$.properties') "
                "WHEN type IN ('group', 'identify') AND json_type(body, '$.traits') = 'object' "
                f"THEN json_extract(body, '$.traits') END FROM events WHERE {where}"
            )
            for (
                rowid,
                when,
                stamp,
                received,
                kind,
                event,
                user,
                anonymous,
                account,
                data,
            ) in conn.execute(query, _WITH_DATA):
                parsed = None
                if isinstance(data, str) and data.startswith("!"):  # the whole body
                    whole = _strict_json(data[1:])
                    if whole is None:
                        source.read += 1
                        source.skip(UNREADABLE)
                        continue
                    inner = whole.get("properties" if kind == "track" else "traits")
                    parsed = inner if isinstance(inner, dict) else None
                elif data is not None:
                    parsed = _strict_json(data)
                    if parsed is None:
                        source.read += 1
                        source.skip(UNREADABLE)
                        continue
                t = _finite(when)
                if t is None:  # a store from before event_time: Segment's rule, as far as
                    t = _time(stamp)  # the columns go (no originalTimestamp column)
                    if t is None:
                        t = _finite(received)
                record = _record(source, t, kind, event, user, anonymous, account, parsed)
                if record is not None:
                    yield rowid, record
        finally:
            conn.close()

    source._records = (record for _, record in rows())
    source.store = location
    source._where = rows
    return source


def _twice(key: str) -> str:
    """SQLite: whether ``"key"`` appears at least twice in ``body``."""
    quoted = f"'\"{key}\"'"
    return f"instr(substr(body, instr(body, {quoted}) + {len(key) + 2}), {quoted}) > 0"


def _json(text: object) -> Any:
    """Parsed JSON, or None for anything that is not a JSON text (or nests too deep)."""
    if not isinstance(text, (str, bytes)):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _not_finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _strict_json(text: object) -> dict[str, Any] | None:
    """A stored object (properties, traits) as a dict; None when it is not JSON, not an
    object, or holds a number that is not finite."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text, parse_float=_not_finite, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def from_events(events: Iterable[object]) -> Source:
    """Read events given as Segment-spec dicts (``None`` or a non-dict counts as skipped)."""
    source = Source(iter(()))

    def rows() -> Iterator[Record]:
        for e in events:
            if not isinstance(e, Mapping):
                source.read += 1
                source.skip(NOT_AN_OBJECT)
                continue
            kind = e.get("type")
            event = e.get("event")
            data = None
            if kind == "track" and event in _WITH_DATA:
                data = e.get("properties")
            elif kind in ("group", "identify"):
                data = e.get("traits")
            # As the collector files it: a top-level groupId, else the context's.
            account = e.get("groupId")
            context = e.get("context")
            if not account and isinstance(context, Mapping):
                account = context.get("groupId")
            record = _record(
                source,
                _event_time(e),
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


def _event_time(event: Mapping[str, Any]) -> float | None:
    """Segment's rule over an exported event; None when it has no usable time at all."""
    stamp = _time(event.get("timestamp"))
    if stamp is not None:
        return stamp
    original = _time(event.get("originalTimestamp"))
    received = _time(event.get("receivedAt"))
    if received is None:
        return original
    return event_time(None, original, _time(event.get("sentAt")), received)


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
