"""client.replay() and the `uptake replay` command: history rebuilds the same state."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import uptake
from uptake.testing import capture_events

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
MILESTONES = [
    uptake.Milestone("activated", all_of=["Project Created", "Teammate Invited"], within=14 * DAY),
    uptake.Milestone("habit", active_days=3, within=7 * DAY),
    uptake.Milestone("depth", features=3),
    uptake.Milestone("reporting", counts={"Report Created": 3}),
    uptake.Milestone("team", features=4, scope="account"),
]
NAMES = ["Project Created", "Teammate Invited", "Report Created", "Dashboard Viewed"]


def history(seed: int = 3) -> list[dict[str, Any]]:
    """Wire-format events of 30 users over 40 days, as a live client sends them."""
    rng = random.Random(seed)
    source = uptake.Client(send=False)
    with capture_events(source) as events:
        for _ in range(600):
            user = f"u{rng.randrange(30)}"
            when = T0 + dt.timedelta(hours=rng.randrange(40 * 24))
            account = f"acct-{int(user[1:]) % 4}"
            if rng.random() < 0.3:
                feature = rng.choice(["reports", "alerts", "exports", "search", "billing"])
                source.feature_used(user, feature, account_id=account, timestamp=when)
            else:
                source.track(user, rng.choice(NAMES), account_id=account, timestamp=when)
    return events


def live_state(events: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    client = uptake.Client(send=False, milestones=MILESTONES)
    fired: list[str] = []
    client.on_milestone()(lambda r: fired.append(f"{r.milestone}:{r.user_id}:{r.account_id}"))
    for e in events:
        if e["event"] in ("Session Started", "Session Ended"):
            continue
        client.track(
            e["userId"],
            e["event"],
            e["properties"],
            account_id=e["context"].get("groupId"),
            timestamp=dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")),
        )
    return states(client), fired


def states(client: uptake.Client) -> dict[str, Any]:
    out = {f"user:{u}": client.state(f"u{u}") for u in range(30)}
    out.update({f"acct:{a}": client.state(account_id=f"acct-{a}") for a in range(4)})
    return out


def test_replay_equals_live_and_calls_nothing_back() -> None:
    events = history()
    expected, fired_live = live_state(events)
    assert fired_live  # the data set does reach milestones

    client = uptake.Client(send=False, milestones=MILESTONES)
    fired: list[str] = []
    client.on_milestone()(fired.append)
    with capture_events(client) as sent:
        result = client.replay(events)
    assert states(client) == expected
    assert fired == [] and sent == []  # history: no callbacks, no events
    assert result.read == len(events)
    assert result.skipped == 0 and result.applied == len(events)
    assert result.reached == len(fired_live)


def test_events_a_little_out_of_order_reach_the_same_milestones() -> None:
    events = sorted(history(), key=lambda e: e["timestamp"])
    expected, _ = live_state(events)
    late = []  # every block of four arrives in a scrambled order
    rng = random.Random(7)
    for start in range(0, len(events), 4):
        block = events[start : start + 4]
        rng.shuffle(block)
        late += block
    client = uptake.Client(send=False, milestones=MILESTONES)
    client.replay(late)
    got = states(client)
    for key in expected:
        assert set((got[key] or {}).get("reached", {})) == set(
            (expected[key] or {}).get("reached", {})
        ), key


def test_replay_skips_what_it_cannot_use() -> None:
    client = uptake.Client(send=False, milestones=MILESTONES)
    result = client.replay(
        [
            {"type": "identify", "userId": "u1", "traits": {}},
            {"type": "track", "event": "X", "timestamp": "yesterday", "userId": "u1"},
            {"type": "track", "event": "X", "timestamp": "2026-01-01T00:00:00Z"},  # nobody
            "not an event",
            {"type": "track", "event": "X", "timestamp": "2026-01-01T00:00:00Z", "userId": "u1"},
        ]
    )
    assert (result.read, result.applied, result.skipped) == (5, 1, 4)


def replay_command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `uptake replay ARGS` in a fresh interpreter, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "uptake.cli", "replay", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_replay_command(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            f"""
            import datetime as dt
            import uptake
            client = uptake.Client(
                send=False,
                store=uptake.SqliteStore({str(tmp_path / "rules.db")!r}),
                milestones=[uptake.Milestone("reporting", counts={{"Report Created": 2}})],
            )
            """
        )
    )
    export = tmp_path / "events.jsonl"
    lines = [
        json.dumps(
            {
                "type": "track",
                "event": "Report Created",
                "userId": f"u{n % 5}",
                "timestamp": f"2026-01-0{1 + n % 9}T10:00:00.000Z",
                "properties": {},
                "context": {},
            }
        )
        for n in range(20)
    ]
    export.write_text("\n".join([*lines, "{not json", ""]) + "\n")
    result = replay_command(tmp_path, str(export), "--client", "myapp:client")
    assert result.returncode == 0, result.stderr
    assert "replayed 20 events" in result.stdout
    assert "1 skipped, 1 of them not JSON" in result.stdout
    assert "5 milestones reached" in result.stdout
    assert "100.0%" in result.stderr  # the progress bar finished
    store = uptake.SqliteStore(tmp_path / "rules.db")
    state = store.get("user:u0")
    assert state is not None and state.reached is not None and "reporting" in state.reached


def test_the_replay_command_explains_a_bad_client_spec(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text("")
    result = replay_command(tmp_path, "x.jsonl", "--client", "nocolon")
    assert result.returncode != 0
    assert "package.module:name" in result.stderr


def test_the_replay_command_reports_a_missing_file(tmp_path: Path) -> None:
    result = replay_command(tmp_path, "missing.jsonl", "--client", "m:c")
    assert result.returncode == 2 and "no such file" in result.stderr
