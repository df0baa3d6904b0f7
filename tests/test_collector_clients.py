"""Segment-family clients nobody here wrote, from PyPI, against the real ``uptake serve``
on 127.0.0.1: segment-analytics-python and rudder-sdk-python.

Each client is pointed at the collector explicitly (``host``), so it sends nowhere else,
and is flushed synchronously (``flush()`` returns once every queued message is delivered or
given up).
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rudderstack.analytics.client as rudder
import segment.analytics.client as segment

from tests.collector_helpers import KEY, DroppingProxy, Served, serve

Errors = list[Exception]


def make_segment(url: str, errors: Errors, key: str = KEY, gzip: bool = False) -> Any:
    return segment.Client(
        key,
        host=url,
        gzip=gzip,
        on_error=lambda error, batch: errors.append(error),
        max_retries=5,
        upload_interval=0.05,
    )


def make_rudder(url: str, errors: Errors, key: str = KEY, gzip: bool = True) -> Any:
    return rudder.Client(
        key,
        host=url,
        gzip=gzip,
        on_error=lambda error, batch: errors.append(error),
        max_retries=5,
        upload_interval=0.05,
    )


CLIENTS: dict[str, Callable[..., Any]] = {"segment": make_segment, "rudder": make_rudder}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path) as running:
        yield running


def stored(served: Served) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(served.db) as conn:
        rows = conn.execute("SELECT message_id, type, event, event_time, body FROM events")
        return {
            m: {"type": t, "event": e, "event_time": when, "body": body}
            for m, t, e, when, body in rows
        }


def access_lines(served: Served, status: int) -> list[str]:
    """The access-log lines of the POSTs the collector answered with ``status``."""
    return [
        line
        for line in served.log_text().splitlines()
        if "uptake.collector.access" in line and '"POST ' in line and f'" {status} ' in line
    ]


def total(lines: list[str], field: str) -> int:
    return sum(int(line.split(f" {field}=")[1].split()[0]) for line in lines)


@pytest.mark.parametrize("name", CLIENTS)
@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"event": ""}, "empty_event_name"),
        ({"group_id": 42}, "bad_id"),
        ({"properties": {"price": math.nan}}, "non_finite_number"),
        ({"properties": {"total": math.inf}}, "non_finite_number"),
    ],
    ids=["empty-name", "numeric-groupId", "nan", "infinity"],
)
def test_one_bad_event_in_a_batch_loses_only_that_event(
    served: Served, name: str, bad: dict[str, Any], code: str
) -> None:
    errors: Errors = []
    client = CLIENTS[name](served.url, errors)
    for i in range(20):
        if i == 7 and "group_id" in bad:
            client.group(user_id="u1", group_id=bad["group_id"], message_id=f"{name}-{i}")
            continue
        fields = {"event": "Report Created", "properties": {"i": i}}
        if i == 7:
            fields.update(bad)
        client.track(user_id="u1", message_id=f"{name}-{i}", **fields)
    client.flush()
    client.shutdown()
    assert errors == []  # a 200: nothing for the client to report, nothing retried
    events = stored(served)
    assert set(events) == {f"{name}-{i}" for i in range(20) if i != 7}
    assert served.health()["rejected"] == {code: 1}
    lines = access_lines(served, 200)  # (the client may have sent more than one batch)
    assert (total(lines, "events"), total(lines, "stored"), total(lines, "rejected")) == (20, 19, 1)


@pytest.mark.parametrize("name", CLIENTS)
def test_every_message_type_is_stored_with_its_time(served: Served, name: str) -> None:
    errors: Errors = []
    client = CLIENTS[name](served.url, errors)
    when = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.timezone.utc)
    client.identify(user_id="u1", traits={"plan": "pro"}, timestamp=when, message_id="m1")
    client.track(user_id="u1", event="Signed Up", timestamp=when, message_id="m2")
    client.group(
        user_id="u1", group_id="acme", traits={"seats": 5}, timestamp=when, message_id="m3"
    )
    client.page(user_id="u1", name="Home", timestamp=when, message_id="m4")
    client.screen(user_id="u1", name="Settings", timestamp=when, message_id="m5")
    client.alias(previous_id="anon-1", user_id="u1", timestamp=when, message_id="m6")
    client.track(user_id="u2", event="Now", message_id="m7")  # the client's own clock
    client.flush()
    client.shutdown()
    assert errors == []
    events = stored(served)
    kinds = {m: e["type"] for m, e in events.items()}
    assert kinds == {
        "m1": "identify",
        "m2": "track",
        "m3": "group",
        "m4": "page",
        "m5": "screen",
        "m6": "alias",
        "m7": "track",
    }
    assert all(events[f"m{i}"]["event_time"] == when.timestamp() for i in range(1, 7))
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    assert abs(events["m7"]["event_time"] - now) < 60


@pytest.mark.parametrize("name", CLIENTS)
def test_a_batch_whose_answer_is_lost_is_retried_and_stored_once(served: Served, name: str) -> None:
    errors: Errors = []
    with DroppingProxy(served.port, drops=2) as proxy:
        client = CLIENTS[name](proxy.url, errors)
        for i in range(50):
            client.track(user_id=f"u{i % 5}", event="Exported", message_id=f"r-{i}")
        client.flush()
        client.shutdown()
        assert proxy.dropped == 2
    assert errors == []
    assert set(stored(served)) == {f"r-{i}" for i in range(50)}
    assert served.health()["events"] == 50
    lines = access_lines(served, 200)
    assert len(lines) >= 3  # stored, then retried twice as duplicates
    assert total(lines, "stored") == 50


@pytest.mark.parametrize("name", CLIENTS)
def test_errors_are_parsed_by_the_client_and_a_4xx_is_not_retried(
    served: Served, name: str
) -> None:
    errors: Errors = []
    client = CLIENTS[name](served.url, errors, key="wk_wrong")
    client.track(user_id="u1", event="E", message_id="x")
    client.flush()
    client.shutdown()
    (error,) = errors
    assert type(error).__name__ == "APIError"  # not a KeyError: the body has code, message
    assert (error.status, error.code) == (401, "unauthorized")  # type: ignore[attr-defined]
    assert "unknown write key" in error.message  # type: ignore[attr-defined]
    assert len(access_lines(served, 401)) == 1  # given up at once, as a 4xx should be
    assert stored(served) == {}
    assert "wk_wrong" not in served.log_text()


@pytest.mark.parametrize("gzip", [False, True])
def test_both_encodings_from_the_segment_client(served: Served, gzip: bool) -> None:
    errors: Errors = []
    client = make_segment(served.url, errors, gzip=gzip)
    for i in range(300):
        client.track(user_id=f"u{i}", event="E", properties={"i": i}, message_id=f"g-{i}")
    client.flush()
    client.shutdown()
    assert errors == [] and len(stored(served)) == 300
