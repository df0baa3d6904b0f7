"""Segment-family Node.js clients nobody here wrote (@segment/analytics-node,
@rudderstack/rudder-sdk-node, pinned in tests/node/package-lock.json) against the real
``uptake serve`` on 127.0.0.1. Runs where ``node`` and ``npm`` are installed (npm installs
the two clients into a temporary folder once per run)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector_helpers import KEY, Served, serve
from uptake.collector.metrics import compute
from uptake.collector.sources import from_store

NODE_FILES = Path(__file__).parent / "node"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="needs node and npm (the Node.js clients' tests)",
)


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("node-clients")
    for name in ("package.json", "package-lock.json", "send.mjs"):
        shutil.copy(NODE_FILES / name, folder / name)
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return folder


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path) as running:
        yield running


def send(clients: Path, which: str, served: Served, scenario: str) -> list[str]:
    result = subprocess.run(
        ["node", "send.mjs", which, served.url, KEY, scenario],
        cwd=clients,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    errors: list[str] = json.loads(result.stdout.strip().splitlines()[-1])["errors"]
    return errors


@pytest.mark.parametrize("which", ["segment", "rudder"])
def test_one_bad_event_in_a_batch_loses_only_that_event(
    clients: Path, served: Served, which: str
) -> None:
    assert send(clients, which, served, "one-bad-event") == []
    with sqlite3.connect(served.db) as conn:
        ids = {row[0] for row in conn.execute("SELECT message_id FROM events")}
    # Event 13 is a group with groupId 42; event 7 has an empty name (Segment's client
    # sends it; RudderStack's refuses it itself and sends a good one in its place).
    bad = {13, 7} if which == "segment" else {13}
    assert ids == {f"{which}-{i}" for i in range(20) if i not in bad}
    expected = {"bad_id": 1, "empty_event_name": 1} if which == "segment" else {"bad_id": 1}
    assert served.health()["rejected"] == expected


@pytest.mark.parametrize("which", ["segment", "rudder"])
def test_messages_without_timestamp_are_stored_and_reported(
    clients: Path, served: Served, which: str
) -> None:
    assert send(clients, which, served, "no-timestamp") == []
    with sqlite3.connect(served.db) as conn:
        rows = [
            (json.loads(body), when, received)
            for body, when, received in conn.execute(
                "SELECT body, event_time, received_at FROM events"
            )
        ]
    assert len(rows) == 200
    for body, when, received in rows:
        assert abs(when - received) < 60  # the client's clock is this machine's
        if which == "rudder":  # it sends originalTimestamp and sentAt, no timestamp
            assert "originalTimestamp" in body and body["timestamp"].endswith("Z")
    source = from_store(served.db)
    report = compute(source)
    assert (report.events, source.skipped, report.users) == (200, 0, 200)
