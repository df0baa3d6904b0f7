"""The report computed where the events live: a table of Segment-shaped events in ClickHouse.

The mapping's SQL and the model run in chdb (ClickHouse in process) over the same events
the plain-Python reference and DuckDB read, and every figure must be equal; then the same
path runs end to end over a real socket, ``uptake report clickhouse://127.0.0.1:PORT/...``
against a loopback server that speaks ClickHouse's HTTP interface (tests/clickhouse_server.py),
with its errors; and against a real ClickHouse server when ``UPTAKE_TEST_CLICKHOUSE_URL``
names one.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest

from uptake.collector.metrics import Report, compute
from uptake.collector.sources import from_events

from .test_report_engine import ZONES, dataset

pytest.importorskip("chdb")
pytest.importorskip("clickhouse_connect")

from uptake.collector.clickhouse import (
    PASSWORD_ENV,
    ClickHouseError,
    ClickHouseLocation,
    compute_clickhouse,
    parse_url,
)
from uptake.collector.engine.remote import ChdbRunner, literal

from .clickhouse_server import ChdbHttpServer, chdb_http_server

AT = "2026-03-02T10:00:00.250Z"


def odd_events() -> list[dict[str, Any]]:
    """Events the readers skip or read with care, each by the same rule."""
    return [
        {"type": "track", "event": "Viewed", "anonymousId": "anon-1", "timestamp": AT},
        {"type": "track", "event": "Viewed", "userId": "", "anonymousId": "a2", "timestamp": AT},
        {"type": "track", "event": "Viewed", "timestamp": AT},  # no user
        {"type": "track", "event": "Viewed", "userId": "u1"},  # no time
        {"type": "track", "event": "Viewed", "userId": "u1", "timestamp": "1971-01-01T00:00:00Z"},
        {"event": "Viewed", "userId": "u1", "timestamp": AT},  # no type
        {
            "type": "track",
            "event": "Viewed",
            "userId": "u2",
            "originalTimestamp": "2026-03-02T23:59:00Z",
            "sentAt": "2026-03-02T23:59:30Z",
            "receivedAt": "2026-03-03T00:01:00Z",
        },
        {"type": "track", "event": "Viewed", "userId": "u3", "receivedAt": AT},
        {
            "type": "track",
            "event": "Milestone Reached",
            "userId": "u3",
            "timestamp": AT,
            "properties": {"milestone": "activated", "time_to_reach_s": False},
        },
        {
            "type": "track",
            "event": "Session Ended",
            "userId": "u3",
            "timestamp": AT,
            "properties": {"duration_s": 1.5e3},
        },
        {
            "type": "track",
            "event": "Feature Used",
            "userId": "u3",
            "timestamp": AT,
            "properties": ["not", "an", "object"],
        },
        {
            "type": "track",
            "event": "Feature Used",
            "userId": "u3",
            "timestamp": AT,
            "properties": {"feature": "tab\\ud800 is text"},
        },
        {"type": "identify", "userId": "u4", "timestamp": AT, "traits": {"plan": True}},
        {"type": "identify", "userId": "u5", "timestamp": AT, "traits": {"plan": 2.0}},
        {"type": "identify", "userId": "u6", "timestamp": AT, "traits": {"plan": 2.5}},
        {
            "type": "group",
            "userId": "u4",
            "groupId": "g1",
            "timestamp": AT,
            "context": {"groupId": "ignored"},
            "traits": {"seats": 4.9},
        },
        {"type": "screen", "userId": "u4", "timestamp": AT, "context": {"groupId": "g2"}},
    ]


#: Events whose JSON repeats a key: the last one counts, as Python's reader takes it.
REPEATED = [
    (
        '{"feature": "first", "feature": "last"}',
        {"type": "track", "event": "Feature Used", "userId": "r1", "timestamp": AT},
    ),
    (
        '{"plan": "first", "seats": 2, "plan": "last"}',
        {"type": "identify", "userId": "r1", "timestamp": AT},
    ),
]


def global_holdout_events() -> list[dict[str, Any]]:
    """Decisions of one nudge, a third of them the global holdout's (the programme)."""
    start = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    out: list[dict[str, Any]] = []
    for i in range(30):
        user, t = f"gh{i}", start + timedelta(minutes=i)
        props: dict[str, Any] = {"nudge": "gh", "goal": "Paid", "goal_within_s": 86_400.0}
        if i % 3 == 2:
            props["global_holdout"] = 0.3
        kind = "Nudge Fired" if i % 3 == 0 else "Nudge Held Out"
        out.append({"type": "track", "event": "Viewed", "userId": user, "timestamp": _iso(t)})
        decision = {"type": "track", "event": kind, "userId": user, "timestamp": _iso(t)}
        out.append({**decision, "properties": props})
        if i % 2:
            paid = _iso(t + timedelta(hours=1))
            out.append({"type": "track", "event": "Paid", "userId": user, "timestamp": paid})
    return out


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def events_of(seed: int) -> list[dict[str, Any]]:
    return dataset(seed, users=20, days=35) + odd_events() + global_holdout_events()


def wide_table(
    command: Callable[[str], object],
    name: str,
    events: list[dict[str, Any]],
    *,
    camel: bool = False,
) -> None:
    """The events as a wide table, as RudderStack or Jitsu land them (times as DateTime64)."""
    user, anon, group = ("userId", "anonymousId", "groupId") if camel else ("uid", "anon", "gid")
    command(f"DROP TABLE IF EXISTS {name}")
    command(
        f"CREATE TABLE {name} (type Nullable(String), event LowCardinality(Nullable(String)), "
        f"{user} Nullable(String), {anon} Nullable(String), {group} Nullable(String), "
        "timestamp Nullable(DateTime64(6, 'UTC')), original_timestamp Nullable(String), "
        "sent_at Nullable(DateTime64(3, 'UTC')), received_at Nullable(DateTime64(3, 'UTC')), "
        "properties Nullable(String), traits String, context Nullable(String)) "
        "ENGINE = MergeTree ORDER BY tuple()"
    )

    def text(value: object) -> str:
        return "NULL" if value is None else literal(str(value))

    def when(value: object) -> str:
        return "NULL" if value is None else f"parseDateTime64BestEffort({literal(str(value))}, 6)"

    def obj(e: dict[str, Any], key: str) -> str | None:
        return json.dumps(e[key]) if key in e else None

    rows = []
    for e, raw in _with_raw(events):
        props, traits = obj(e, "properties"), obj(e, "traits")
        if raw is not None and e["type"] == "track":
            props = raw
        elif raw is not None:
            traits = raw
        values = (
            text(e.get("type")),
            text(e.get("event")),
            text(e.get("userId")),
            text(e.get("anonymousId")),
            text(e.get("groupId")),
            when(e.get("timestamp")),
            text(e.get("originalTimestamp")),
            when(e.get("sentAt")),
            when(e.get("receivedAt")),
            text(props),
            literal(traits or ""),
            text(obj(e, "context")),
        )
        rows.append(f"({', '.join(values)})")
    command(f"INSERT INTO {name} VALUES " + ", ".join(rows))


def _with_raw(events: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str | None]]:
    for e in events:
        yield e, None
    for raw, e in REPEATED:
        yield e, raw


def reference(
    events: list[dict[str, Any]], engine: str, **options: Any
) -> tuple[Report, dict[str, int]]:
    """The report of the events (the repeated-key ones read by Python) on a local engine."""
    full = list(events)
    for raw, e in REPEATED:
        key = "properties" if e["type"] == "track" else "traits"
        full.append({**e, key: json.loads(raw)})
    source = from_events(full)
    report = compute(source, engine=engine, **options)
    return report, dict(source.skipped_by)


def same(got: Report, want: Report) -> None:
    for field in attrs.fields(Report):
        if field.name not in ("engine", "skipped_by", "skipped"):
            assert getattr(got, field.name) == getattr(want, field.name), field.name


@pytest.fixture(scope="module")
def chdb_run() -> Iterator[ChdbRunner]:
    run = ChdbRunner()
    try:
        yield run
    finally:
        run.session.close()


def test_the_report_on_clickhouse_equals_duckdb_and_python(chdb_run: ChdbRunner) -> None:
    tz = ZONES[0]  # UTC; Europe/Paris and America/Los_Angeles in the tests below
    events = events_of(7)
    wide_table(chdb_run.command, "default.wide", events)
    options: dict[str, Any] = {"tz": tz, "inactive": ["Heartbeat"], "segment_by": "plan"}
    want, skipped = reference(events, "python", **options)
    columns = {"user_id": "uid", "anonymous_id": "anon", "group_id": "gid"}
    location = ClickHouseLocation("127.0.0.1", 9, table="wide", columns=columns)
    got = compute_clickhouse(chdb_run, location, **options)
    assert got.engine == "clickhouse"
    same(got, want)
    same(reference(events, "duckdb", **options)[0], want)
    assert dict(got.skipped_by) == skipped and got.skipped == sum(skipped.values())
    assert set(skipped) == {
        "no user or anonymous id",
        "no usable time",
        "no event type",
        "time before 1990 or over 2 days ahead",
    }
    features = {f.name for f in got.features}
    assert "last" in features and "first" not in features
    assert "bad\ufffdx" in features  # a lone surrogate escape, as Python reads it
    assert "tab\\ud800 is text" in features  # an escaped backslash: text
    assert {s.segment for s in got.segments} >= {"last", "true"}


def test_a_json_column_and_camel_case_columns_give_the_same_report(chdb_run: ChdbRunner) -> None:
    events = events_of(3)
    options: dict[str, Any] = {"tz": ZoneInfo("Europe/Paris"), "segment_by": "plan"}
    want, skipped = reference(events, "python", **options)
    wide_table(chdb_run.command, "default.camel", events, camel=True)
    got = compute_clickhouse(chdb_run, ClickHouseLocation("h", 1, table="camel"), **options)
    same(got, want)
    chdb_run.command("DROP TABLE IF EXISTS default.raw_events")
    chdb_run.command("CREATE TABLE default.raw_events (body String) ENGINE = Memory")
    bodies = [json.dumps(e) for e in events]
    for raw, e in REPEATED:
        key = "properties" if e["type"] == "track" else "traits"
        bodies.append(json.dumps(e)[:-1] + f', "{key}": ' + raw + "}")
    chdb_run.command(
        "INSERT INTO default.raw_events VALUES " + ", ".join(f"({literal(b)})" for b in bodies)
    )
    location = ClickHouseLocation("h", 1, table="raw_events", json="body")
    got = compute_clickhouse(chdb_run, location, **options)
    same(got, want)
    assert dict(got.skipped_by) == skipped


def test_the_url_and_its_mapping() -> None:
    loc = parse_url(
        "clickhouse://ana:s%40cret@db.example:9000/analytics?table=tracks&user_id=uid", env={}
    )
    assert (loc.host, loc.port, loc.secure, loc.user, loc.password) == (
        "db.example",
        9000,
        False,
        "ana",
        "s@cret",
    )
    assert (loc.database, loc.table, dict(loc.columns)) == (
        "analytics",
        "tracks",
        {"user_id": "uid"},
    )
    assert "s@cret" not in repr(loc) and "s%40cret" not in loc.redacted()
    tls = parse_url("clickhouses://h", env={PASSWORD_ENV: "from-env"}, mapping={"table": "t"})
    assert (tls.port, tls.secure, tls.password, tls.database, tls.table) == (
        8443,
        True,
        "from-env",
        "default",
        "t",
    )
    assert parse_url("clickhouse://h?table=x", mapping={"table": "t"}).table == "x"
    for bad in (
        "clickhouse://h?colour=x",
        "clickhouse://h:port/",
        "clickhouse:///db",
        "clickhouse://h?table=",
    ):
        with pytest.raises(ClickHouseError):
            parse_url(bad, env={})


def test_the_settings_file_maps_the_columns() -> None:
    from uptake.collector.settings import SettingsError, dumps, loads

    settings = loads('[clickhouse]\ntable = "tracks"\nuser_id = "uid"\n', path="s.toml")
    assert dict(settings.clickhouse) == {"table": "tracks", "user_id": "uid"}
    assert loads(dumps(settings)) == settings
    assert parse_url("clickhouse://h", mapping=settings.clickhouse).columns == {"user_id": "uid"}
    for bad in ('[clickhouse]\ncolour = "x"\n', "[clickhouse]\nevent = 3\n", "clickhouse = 1\n"):
        with pytest.raises(SettingsError, match="clickhouse"):
            loads(bad)


@pytest.fixture(scope="module")
def served(chdb_run: ChdbRunner) -> Iterator[tuple[ChdbHttpServer, list[dict[str, Any]]]]:
    events = events_of(5)
    wide_table(chdb_run.command, "default.events", events)
    chdb_run.command("CREATE DATABASE IF NOT EXISTS shop")
    chdb_run.command("DROP TABLE IF EXISTS shop.nouser")
    chdb_run.command("CREATE TABLE shop.nouser (type String, timestamp DateTime) ENGINE = Memory")
    with chdb_http_server(chdb_run.session, "ana", "pass word") as server:
        yield server, events


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from uptake.cli import main

    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_uptake_report_reads_a_clickhouse_server_over_http(
    served: tuple[ChdbHttpServer, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uptake.collector.export import from_data

    server, events = served
    port, before = server.port, len(server.queries)
    monkeypatch.setenv(PASSWORD_ENV, "pass word")
    settings = tmp_path / "s.toml"
    settings.write_text(
        'timezone = "America/Los_Angeles"\n[clickhouse]\nuser_id = "uid"\nanonymous_id = "anon"\n'
    )
    url = f"clickhouse://ana@127.0.0.1:{port}/default?table=events&group_id=gid"
    out, doc = tmp_path / "r.html", tmp_path / "r.json"
    argv = ["report", url, "--out", str(out), "--json", str(doc), "--settings", str(settings)]
    status, printed, err = run_cli(argv, capsys)
    assert (status, err) == (0, "")
    # Only the table's columns, the skip counts and the typed table read the events table:
    # every figure is computed on the server, from the typed table.
    queries = server.queries[before:]
    reads = [q for q in queries if "`default`.`events`" in q]
    assert [q.strip().split(" (")[0].split(" FROM")[0] for q in reads] == [
        "DESCRIBE TABLE `default`.`events`",
        "SELECT reason, count()",
        "CREATE TEMPORARY TABLE raw ENGINE = Memory AS SELECT seq, t, user, account, kind, "
        "name, feature, milestone, scope, took, nudge, nudge_kind, goal, goal_within, seats, "
        "duration, trait, day, week",
    ]
    # One session from the table's description on: the temporary tables are its own.
    first = before + next(i for i, q in enumerate(queries) if q.startswith("DESCRIBE"))
    assert len(set(server.sessions[first:])) == 1 and server.sessions[-1] is not None
    got = from_data(json.loads(doc.read_text()))
    want, skipped = reference(events, "python", tz=ZoneInfo("America/Los_Angeles"))
    same(got, want)
    assert dict(got.skipped_by) == skipped
    assert "users" in printed and url.split("?")[0] in out.read_text()
    for text in (printed, out.read_text(), doc.read_text()):
        assert "pass word" not in text


@pytest.mark.parametrize(
    ("url", "password", "says"),
    [
        ("clickhouse://ana@127.0.0.1:{port}/default?table=events", "wrong", "refused user 'ana'"),
        ("clickhouse://ana:wrong@127.0.0.1:{port}/default?table=events", "", "Authentication"),
        ("clickhouse://ana@127.0.0.1:{port}/default?table=nope", "pass word", "UNKNOWN_TABLE"),
        ("clickhouse://ana@127.0.0.1:{port}/shop?table=nouser", "pass word", "user_id=COLUMN"),
        (
            "clickhouse://ana@127.0.0.1:{port}/default?table=events&user_id=who",
            "pass word",
            "no column who",
        ),
        ("clickhouse://ana@127.0.0.1:{closed}/default", "pass word", "cannot reach ClickHouse"),
    ],
)
def test_a_clickhouse_source_that_cannot_be_used_is_one_line_and_exit_2(
    url: str,
    password: str,
    says: str,
    served: tuple[ChdbHttpServer, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv(PASSWORD_ENV, password)
    source = url.format(port=served[0].port, closed=closed)
    status, out, err = run_cli(["report", source, "--out", str(tmp_path / "r.html")], capsys)
    assert status == 2 and out == ""
    assert err.startswith("uptake: ") and err.count("\n") == 1, err
    assert says in err and "Traceback" not in err
    assert "pass word" not in err and "wrong" not in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.skipif(
    not os.environ.get("UPTAKE_TEST_CLICKHOUSE_URL"),
    reason="UPTAKE_TEST_CLICKHOUSE_URL (clickhouse://user:pass@host:8123/db) names no server",
)
def test_a_real_clickhouse_server(tmp_path: Path) -> None:  # pragma: no cover - needs a server
    from uptake.collector.clickhouse import connect

    base = parse_url(os.environ["UPTAKE_TEST_CLICKHOUSE_URL"])
    table = f"uptake_test_{uuid.uuid4().hex[:12]}"
    columns = {"user_id": "uid", "anonymous_id": "anon", "group_id": "gid"}
    location = attrs.evolve(base, table=table, columns=columns)
    runner = connect(location)
    events = events_of(9)
    try:
        wide_table(runner.command, location.qualified(), events)
        options: dict[str, Any] = {"tz": ZoneInfo("America/Los_Angeles"), "segment_by": "plan"}
        got = compute_clickhouse(runner, location, **options)
        want, skipped = reference(events, "python", **options)
        same(got, want)
        assert dict(got.skipped_by) == skipped
    finally:
        runner.command(f"DROP TABLE IF EXISTS {location.qualified()}")
        runner.close()


def test_lone_surrogate_escapes_read_as_python_reads_them(chdb_run: ChdbRunner) -> None:
    from uptake.collector.engine.chtable import _fixed, _member, _text
    from uptake.definitions import writable

    cases = [
        r'{"a":"x\ud800y"}',
        r'{"a":"\ud83d\ude00"}',  # a pair: one character
        r'{"a":"\\ud800"}',  # an escaped backslash: text
        r'{"a":"\udc00\ud800"}',
        r'{"a":"\\\ud800"}',
        r'{"a":"\ud800\ud83d\ude00z", "b": 1}',
        r'{"a":"\uD800"}',
    ]
    for case in cases:
        pairs = f"JSONExtractKeysAndValuesRaw({_fixed(literal(case))})"
        ((got,),) = chdb_run.rows(f"SELECT {_text(_member(pairs, 'a'))}")
        assert got == writable(json.loads(case)["a"]), case
