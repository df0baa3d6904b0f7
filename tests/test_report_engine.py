"""The SQL engine (DuckDB, chdb) gives exactly the figures of the plain-Python reference.

The data crosses a DST change, repeats events, gives odd property shapes, account and user
milestones with and without a time, nudges with goals, sessions and traits; every figure of
the report is compared with ``==`` (floats included), in UTC and in America/Los_Angeles.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest

from uptake.collector.metrics import Record, compute
from uptake.collector.sources import from_events, from_store
from uptake.collector.store import EventStore
from uptake.rules.engagement import Engagement

pytest.importorskip("duckdb")
pytest.importorskip("chdb")

START = dt.datetime(2026, 2, 2, tzinfo=dt.timezone.utc)  # a Monday; DST starts 2026-03-08
ZONES = [dt.timezone.utc, ZoneInfo("America/Los_Angeles")]
FEATURES = ["reports", "alerts", "exports", "api"]


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def dataset(seed: int, users: int = 60, days: int = 70) -> list[dict[str, Any]]:
    """Events of a small product: activity, features, milestones, nudges, sessions, traits."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(users):
        user, account = f"u{u}", f"a{u % 9}"
        context = {"groupId": account} if u % 5 else {}
        plan = rng.choice(["free", "pro", "team", 3, None])
        if plan is not None:
            events.append(
                {
                    "type": "identify",
                    "userId": user,
                    "traits": {"plan": plan},
                    "timestamp": iso(START + dt.timedelta(days=rng.randrange(days))),
                }
            )
        begin = rng.randrange(days)
        for day in range(begin, days):
            if rng.random() < 0.55:
                continue
            # Times near midnight, UTC and local, so the zone moves events across days.
            t = START + dt.timedelta(
                days=day,
                hours=rng.choice([0, 7, 8, 12, 23]),
                minutes=rng.randrange(60),
                seconds=rng.random(),
            )
            base = {"userId": user, "timestamp": iso(t), "context": context}
            roll = rng.random()
            if roll < 0.35:
                events.append(
                    {
                        "type": "track",
                        "event": "Feature Used",
                        **base,
                        "properties": {"feature": rng.choice(FEATURES)},
                    }
                )
            elif roll < 0.45:
                events.append({"type": "page", "name": "Pricing", **base})
            elif roll < 0.5:
                events.append({"type": "track", "event": "Heartbeat", **base})
            elif roll < 0.55:
                events.append({"type": "track", "event": "QBR Attended", **base})
            elif roll < 0.65:
                events.append({"type": "track", "event": "Session Started", **base})
                events.append(
                    {
                        "type": "track",
                        "event": "Session Ended",
                        **base,
                        "properties": {"duration_s": rng.choice([0, 30, 61.5, 900, "x"])},
                    }
                )
            elif roll < 0.72:
                props: dict[str, Any] = {
                    "milestone": rng.choice(["activated", "team"]),
                    "scope": rng.choice(["user", "account"]),
                }
                if rng.random() < 0.5:
                    props["time_to_reach_s"] = rng.choice([0, 3600, 86_400 * 3, -1, True])
                events.append(
                    {"type": "track", "event": "Milestone Reached", **base, "properties": props}
                )
            elif roll < 0.82:
                decision = rng.choice(
                    ["Fired", "Held Out", "Shown", "Clicked", "Dismissed", "Suppressed", "Snoozed"]
                )
                decided: dict[str, Any] = {
                    "nudge": rng.choice(["tour", "invite"]),
                    "goal": rng.choice(["Report Shared", "activated"]),
                    "goal_within_s": 86_400 * 2,
                }
                if decision == "Held Out" and u % 7 == 3:  # the global holdout
                    decided["global_holdout"] = 0.05
                events.append(
                    {"type": "track", "event": f"Nudge {decision}", **base, "properties": decided}
                )
            elif roll < 0.88:
                events.append({"type": "track", "event": "Report Shared", **base})
            else:
                events.append({"type": "track", "event": "Viewed", **base})
            if rng.random() < 0.05:
                events.append(dict(events[-1]))  # a duplicate
    for a in range(9):
        traits: dict[str, Any] = {"seats": rng.choice([2, 3.7, 0.5, "9", 12]), "plan": "team"}
        events.append(
            {
                "type": "group",
                "userId": f"u{a}",
                "groupId": f"a{a}",
                "timestamp": iso(START + dt.timedelta(days=a)),
                "traits": traits,
            }
        )
    events.append(
        {
            "type": "track",
            "event": "Feature Used",
            "userId": "u1",
            "timestamp": iso(START),
            "properties": {"feature": "bad\ud800x"},
        }
    )
    rng.shuffle(events)
    return events


def records(events: list[dict[str, Any]]) -> list[Record]:
    return list(from_events(events))


CONFIGS = [
    Engagement(),
    Engagement(
        core_features=["reports", "api"],
        touchpoints=["QBR Attended"],
        touchpoint_window=dt.timedelta(days=30),
    ),
]


@pytest.mark.parametrize("engine", ["duckdb", "chdb"])
@pytest.mark.parametrize("tz", ZONES, ids=["UTC", "Los_Angeles"])
def test_every_figure_matches_the_reference_exactly(engine: str, tz: dt.tzinfo) -> None:
    rows = records(dataset(7))
    for config, until in ((CONFIGS[0], None), (CONFIGS[1], dt.date(2026, 3, 29))):
        options: dict[str, Any] = {
            "tz": tz,
            "inactive": ["Heartbeat"],
            "engagement": config,
            "until": until,
            "segment_by": "plan",
        }
        want = compute(rows, engine="python", **options)
        got = compute(rows, engine=engine, **options)
        assert got.engine == engine
        for field in attrs.fields(type(want)):
            if field.name != "engine":
                assert getattr(got, field.name) == getattr(want, field.name), field.name
        assert want.users > 0 and want.sessions and want.retention and want.segments
        assert want.milestones and want.nudges and want.accounts_engagement
        assert want.programme and any(n.itt_lift is not None for n in want.nudges)


@pytest.mark.parametrize("engine", ["duckdb", "chdb"])
def test_empty_and_inactive_only_inputs(engine: str) -> None:
    only_own = records(
        [
            {
                "type": "track",
                "event": "Session Started",
                "userId": "u",
                "timestamp": "2026-03-02T10:00:00Z",
            }
        ]
    )
    for rows in ([], only_own):
        got, want = compute(rows, engine=engine), compute(rows, engine="python")
        assert got == attrs.evolve(want, engine=engine)
    assert compute(only_own, engine=engine).last_day == dt.date(2026, 3, 2)


def test_the_engine_is_duckdb_by_default_and_checks_its_arguments() -> None:
    assert compute([]).engine == "duckdb"
    with pytest.raises(ValueError, match="engine"):
        compute([], engine="sqlite")
    with pytest.raises(ValueError, match="IANA"):
        compute([], tz=FoldingZone())


class FoldingZone(dt.tzinfo):
    """A zone with no name and no fixed offset: the SQL engine cannot follow it."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta | None:
        return None if when is None else dt.timedelta(hours=1)

    def dst(self, when: dt.datetime | None) -> dt.timedelta | None:
        return dt.timedelta(0)


def odd_events() -> list[dict[str, Any]]:
    """Rows the SQL reading of a store must leave to Python, or skip, as Python does."""
    at = "2026-03-02T10:00:00Z"
    odd: list[dict[str, Any]] = [
        {
            "type": "track",
            "userId": "o1",
            "event": "Feature Used",
            "timestamp": at,
            "properties": {"feature": "bad\ud800x"},
        },
        {
            "type": "track",
            "userId": "o1",
            "event": "Feature Used",
            "timestamp": at,
            "properties": {"feature": "big", "n": 1e300},
        },
        {
            "type": "track",
            "userId": "o2",
            "event": "Session Ended",
            "timestamp": at,
            "properties": {"duration_s": 1.5e3},
        },
        {
            "type": "track",
            "userId": "o2",
            "event": "Milestone Reached",
            "timestamp": at,
            "properties": "not an object",
        },
        {"type": "track", "anonymousId": "anon", "event": "Viewed", "timestamp": at},
        {"type": "track", "userId": "", "event": "Viewed", "timestamp": at},
        {"type": "track", "userId": "o3", "event": "Viewed", "timestamp": "1971-01-01T00:00:00Z"},
        {"type": "identify", "userId": "o3", "timestamp": at, "traits": {"plan": 2.5}},
        {"type": "identify", "userId": "o4", "timestamp": at, "traits": {"plan": True}},
        {
            "type": "group",
            "userId": "o4",
            "groupId": "g",
            "timestamp": at,
            "traits": {"seats": 4.9, "plan": 7},
        },
        {
            "type": "track",
            "userId": "o4",
            "event": "Nudge Fired",
            "timestamp": at,
            "properties": {"nudge": "n", "goal": "", "goal_within_s": 10},
        },
    ]
    return odd


@pytest.mark.parametrize("engine", ["duckdb", "chdb"])
@pytest.mark.parametrize("tz", ZONES, ids=["UTC", "Los_Angeles"])
def test_a_collector_store_read_through_sql_gives_the_same_figures(
    engine: str, tz: dt.tzinfo, tmp_path: Path
) -> None:
    events = dataset(11, users=30, days=40) + odd_events()
    for i, e in enumerate(events):
        e["messageId"] = f"m{i}"
    store = EventStore(tmp_path / "events.db")
    store.add(events)
    store.close()
    want_source = from_store(tmp_path / "events.db")
    options: dict[str, Any] = {"tz": tz, "inactive": ["Heartbeat"], "segment_by": "plan"}
    want = compute(want_source, engine="python", **options)
    source = from_store(tmp_path / "events.db")
    got = compute(source, engine=engine, **options)
    assert got == attrs.evolve(want, engine=engine)
    assert (source.read, source.skipped_by) == (want_source.read, want_source.skipped_by)
    assert source.skipped > 0


def test_most_stored_rows_go_through_sql_and_the_odd_ones_through_python(
    tmp_path: Path,
) -> None:
    from uptake.collector.engine.store import arrow_batches

    events = dataset(3, users=10, days=20) + odd_events()
    for i, e in enumerate(events):
        e["messageId"] = f"m{i}"
    store = EventStore(tmp_path / "events.db")
    store.add(events)
    store.close()
    source = from_store(tmp_path / "events.db")
    assert source.store is not None
    odd: list[int] = []
    batches = arrow_batches(source.store, source, "seats", "plan", odd, "0")
    assert batches is not None
    fast = sum(b.num_rows for b in batches)
    ids = ", ".join(map(str, odd))
    slow = [r for _, r in source.numbered(f"rowid IN ({ids})")]
    # The two lone surrogates, the number in exponent form, the plan of 2.5.
    assert len(slow) == 4
    assert fast + len(slow) + source.skipped == source.read
    assert fast > 50
    # A trait name a JSON path cannot hold as it is: every row through Python.
    assert arrow_batches(source.store, source, "seats", 'pl"an', [], "0") is None


@pytest.mark.parametrize("engine", ["duckdb", "chdb", "python"])
def test_the_report_command_runs_on_the_engine_asked_for(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from uptake.cli import main

    events = dataset(5, users=8, days=15)
    for i, e in enumerate(events):
        e["messageId"] = f"m{i}"
    store = EventStore(tmp_path / "events.db")
    store.add(events)
    store.close()
    out = tmp_path / "r.html"
    argv = ["report", str(tmp_path / "events.db"), "--out", str(out), "--engine", engine]
    assert main([*argv, "--timezone", "America/Los_Angeles"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "users" in printed
    with pytest.raises(SystemExit) as exit_:
        main([*argv[:-1], "sqlite"])  # not an engine
    assert exit_.value.code == 2
