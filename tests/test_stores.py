"""The behaviour every rule store must have, run against each store; plus SqliteStore's own."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import uptake
from uptake.rules.milestones import MilestoneRules
from uptake.rules.state import SubjectState

from .conftest import MakeStore


def set_first(state: SubjectState, t: float) -> float | None:
    before = state.first
    state.first = t
    return before


def test_update_get_delete(make_store: MakeStore) -> None:
    store = make_store()
    assert store.get("user:a") is None
    assert store.update("user:a", set_first, 5.0) is None
    assert store.update("user:a", set_first, 7.0) == 5.0  # the change saw the stored state
    copy = store.get("user:a")
    assert copy is not None and copy.first == 7.0
    copy.first = 1.0  # a copy: changing it changes nothing stored
    assert store.get("user:a").first == 7.0  # type: ignore[union-attr]
    assert store.delete("user:a") is True
    assert store.delete("user:a") is False
    assert store.get("user:a") is None


def test_a_failing_change_leaves_the_state_alone(make_store: MakeStore) -> None:
    store = make_store()
    store.update("user:a", set_first, 5.0)

    def broken(state: SubjectState) -> None:
        state.first = 99.0
        raise RuntimeError("rule bug")

    with pytest.raises(RuntimeError):
        store.update("user:a", broken)
    if isinstance(store, uptake.SqliteStore):  # a transaction: rolled back
        assert store.get("user:a").first == 5.0  # type: ignore[union-attr]


def test_milestones_fire_once_and_can_be_forgotten(make_store: MakeStore) -> None:
    store = make_store()
    client = uptake.Client(
        send=False,
        store=store,
        milestones=[
            uptake.Milestone("reporting", counts={"Report Created": 2}),
            uptake.Milestone("team", any_of=["Teammate Invited"], scope="account"),
        ],
    )
    fired: list[tuple[str, str | None]] = []
    client.on_milestone()(lambda r: fired.append((r.milestone, r.user_id)))
    for _ in range(4):
        client.track("u1", "Report Created", account_id="acme")
    client.track("u2", "Teammate Invited", account_id="acme")
    client.track("u3", "Teammate Invited", account_id="acme")
    assert fired == [("reporting", "u1"), ("team", "u2")]

    state = client.state("u1")
    assert state is not None and set(state["reached"]) == {"reporting"}
    assert client.state(account_id="acme")["reached"].keys() == {"team"}  # type: ignore[index]
    assert client.forget("u1") is True
    assert client.state("u1") is None
    assert client.forget("u1") is False
    client.track("u1", "Report Created")
    client.track("u1", "Report Created")
    assert fired[-1] == ("reporting", "u1")  # forgotten: a new start
    with pytest.raises(uptake.InvalidEventError):
        client.state()


SCRIPT = """
import sys, uptake
store = uptake.SqliteStore(sys.argv[1])
client = uptake.Client(send=False, store=store,
                       milestones=[uptake.Milestone("go", counts={"Go": 2})])
client.on_milestone("go")(lambda r: print(r.user_id, flush=True))
for round_ in range(3):
    for user in range(40):
        client.track(f"user-{user}", "Go")
"""


def test_sqlite_store_fires_exactly_once_across_four_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared-rules.db")
    uptake.SqliteStore(path)  # create the schema once, before the race
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, path], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    fired = Counter(line for out in outputs for line in out.split())
    assert fired == Counter({f"user-{u}": 1 for u in range(40)})


def test_sqlite_store_needs_a_usable_path(tmp_path: Path) -> None:
    with pytest.raises(uptake.ConfigurationError, match="cannot open the store"):
        uptake.SqliteStore(tmp_path / "missing" / "rules.db")


def test_a_forked_worker_with_milestones_in_memory_is_warned(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from uptake import _lifecycle as client_module

    monkeypatch.setattr(client_module, "_fork_warned", False)
    client = uptake.Client(send=False, milestones=[uptake.Milestone("m", any_of=["Go"])])
    with caplog.at_level(logging.WARNING, logger="uptake"):
        client._after_fork_in_child()  # what os.fork() runs in the child
        client._after_fork_in_child()
    warnings = [r for r in caplog.records if "SqliteStore" in r.getMessage()]
    assert len(warnings) == 1


def test_state_written_before_feature_days_were_kept_still_reads() -> None:
    old = {
        "first": 10.0,
        "last": 20.0,
        "events": {"Report Created": [10.0, 15.0]},
        "features": {"reports": 12.5},
        "days": [0],
        "reached": {"activated": 15.0},
    }
    state = SubjectState.from_json(old)
    assert state.reached == {"activated": 15.0}
    again = state.to_json()
    assert again["events"] == old["events"] and again["reached"] == old["reached"]
    assert SubjectState.from_json(again).to_json() == again
    # The old first use still counts: a second feature reaches a two-feature milestone.
    rules = MilestoneRules([uptake.Milestone("two", features=2)])
    reached = rules.apply(state, "Feature Used", 30.0, True, "alerts")
    assert [(m.name, at, first) for m, at, first in reached] == [("two", 30.0, 10.0)]
    rules.apply(state, "Feature Used", 31.0, True, "reports")
    assert state.to_json()["features"]["reports"] >> 96 == 12_500  # first use kept, in ms


def test_update_many_changes_several_subjects_at_once(make_store: MakeStore) -> None:
    store = make_store()

    def stamp(states: list[SubjectState], t: float) -> int:
        for state in states:
            state.first = t
        return len(states)

    assert store.update_many(["account:a", "user:u"], stamp, 5.0) == 2
    assert store.get("account:a").first == store.get("user:u").first == 5.0  # type: ignore[union-attr]

    def broken(states: list[SubjectState]) -> None:
        for state in states:
            state.first = 99.0
        raise RuntimeError("rule bug")

    with pytest.raises(RuntimeError):
        store.update_many(["account:a", "user:u"], broken)
    if isinstance(store, uptake.SqliteStore):  # one transaction: both rolled back
        assert store.get("account:a").first == store.get("user:u").first == 5.0  # type: ignore[union-attr]
