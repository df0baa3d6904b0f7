"""The definitions the SDK and the report share."""

from __future__ import annotations

import datetime as dt

from uptake.definitions import OWN_EVENTS, parse_time


def test_parse_time_reads_the_timestamp_forms_exports_use() -> None:
    expected = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    for value in (
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.000000000Z",
        "2026-01-01T01:00:00+0100",
        "2025-12-31T19:00:00-05:00",
        "2026-01-01 00:00:00",  # naive: UTC
        "2026-01-01t00:00:00z",
        expected,
        expected * 1000,  # milliseconds
        dt.datetime(2026, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(2026, 1, 1),  # naive: UTC
    ):
        assert parse_time(value) == expected, value
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_uptakes_own_events_include_milestones_nudges_and_sessions() -> None:
    assert {"Milestone Reached", "Nudge Shown", "Session Started"} <= OWN_EVENTS
    assert "Feature Used" not in OWN_EVENTS
