"""A JSON object that names a key twice: every reader takes the last value.

That is what Python's ``json``, JavaScript's ``JSON.parse`` and the collector (which
parses an event and stores it re-encoded) do. DuckDB's and SQLite's JSON functions take
the first, so a stored body with a repeated key that the report reads is read the Python
way; ClickHouse's reading takes the last of the key-value pairs (tests/test_report_clickhouse.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest

from uptake.collector.metrics import compute
from uptake.collector.sources import from_jsonl, from_store
from uptake.collector.store import EventStore

from .test_report_engine import dataset

pytest.importorskip("duckdb")

AT = "2026-03-02T10:00:00.000Z"


def body(kind: str, user: str, fields: str, event: str | None = None) -> str:
    """An event's JSON text with ``fields`` (raw JSON members, keys may repeat) appended."""
    named = f'"event":"{event}",' if event else ""
    return f'{{"type":"{kind}",{named}"userId":"{user}","timestamp":"{AT}",{fields}}}'


#: (type, event, user, members): properties or traits with a repeated key, at either level.
REPEATED = [
    ("track", "Feature Used", "r1", '"properties":{"feature":"first","feature":"last"}'),
    (
        "track",
        "Feature Used",
        "r2",
        '"properties":{"feature":"first"},"properties":{"feature":"last"}',
    ),
    ("identify", None, "r1", '"traits":{"plan":"first","plan":"last"}'),
    ("identify", None, "r2", '"traits":{"plan":"first"},"traits":{"plan":"last"}'),
    ("track", "Session Ended", "r1", '"properties":{"duration_s":5,"duration_s":7}'),
]


def store_with_repeated_keys(path: Path) -> None:
    """A store of ordinary events plus rows whose stored bodies repeat a key (as a store
    written by another program may hold them)."""
    events = dataset(4, users=8, days=15)
    for i, e in enumerate(events):
        e["messageId"] = f"m{i}"
    store = EventStore(path)
    store.add(events)
    store.close()
    conn = sqlite3.connect(path)
    with conn:
        for i, (kind, event, user, fields) in enumerate(REPEATED):
            conn.execute(
                "INSERT INTO events (message_id, received_at, timestamp, type, event, user_id, "
                "body, event_time) VALUES (?, 1772445600.5, ?, ?, ?, ?, ?, 1772445600.0)",
                (f"r{i}", AT, kind, event, user, body(kind, user, fields, event)),
            )
    conn.close()


@pytest.mark.parametrize("engine", ["python", "duckdb"])  # chdb reads what DuckDB typed
def test_a_repeated_key_counts_its_last_value_on_every_engine(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store_with_repeated_keys(path)
    got = compute(from_store(path), engine=engine, segment_by="plan")
    features = {f.name for f in got.features}
    assert "last" in features and "first" not in features
    segments = {s.segment for s in got.segments}
    assert "last" in segments and "first" not in segments
    # The JSONL export of the same bodies reads alike (Python's reader throughout).
    export = tmp_path / "events.jsonl"
    conn = sqlite3.connect(path)
    export.write_text("".join(b + "\n" for (b,) in conn.execute("SELECT body FROM events")))
    conn.close()
    from_export = compute(from_jsonl(export), engine="python", segment_by="plan")
    want = compute(from_store(path), engine="python", segment_by="plan")
    assert got == attrs.evolve(want, engine=engine)
    assert from_export.features == want.features and from_export.segments == want.segments
    assert from_export.session_median_s == want.session_median_s


def test_the_fast_store_reading_leaves_repeated_keys_to_python(tmp_path: Path) -> None:
    from uptake.collector.engine.store import arrow_batches

    path = tmp_path / "events.db"
    store_with_repeated_keys(path)
    source = from_store(path)
    assert source.store is not None
    odd: list[int] = []
    batches = arrow_batches(source.store, source, "seats", "plan", odd, "0")
    assert batches is not None
    for _ in batches:
        pass
    conn = sqlite3.connect(path)
    ids = [rowid for (rowid,) in conn.execute("SELECT id FROM events WHERE message_id LIKE 'r%'")]
    conn.close()
    assert set(ids) <= set(odd) and len(odd) == len(ids) + 1  # + the lone surrogate


def test_what_python_reads_of_a_repeated_key() -> None:
    parsed: dict[str, Any] = json.loads(body(*REPEATED[1][:1], "u", REPEATED[1][3]))
    assert parsed["properties"] == {"feature": "last"}
