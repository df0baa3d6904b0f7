"""The rules engine on its own: one event in, effects out, state kept in a Store (no Client)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

import uptake
from uptake.rules.engine import ACCOUNT_LAST_RESOLUTION_S, RulesEngine
from uptake.stores.memory import MemoryStore

T = TypeVar("T")
DAY = 86_400.0
T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc).timestamp()  # a Monday
OWN = frozenset({"Nudge Shown", "Milestone Reached"})


class Recording(MemoryStore):
    """A MemoryStore that records the keys of every update, and whether one is running."""

    def __init__(self, atomic_many: bool = True) -> None:
        super().__init__()
        self.atomic_many = atomic_many
        self.updates: list[tuple[str, ...]] = []
        self.inside = False

    def update_many(self, keys: Sequence[str], change: Callable[..., T], *args: Any) -> T:
        self.updates.append(tuple(keys))
        self.inside = True
        try:
            return super().update_many(keys, change, *args)
        finally:
            self.inside = False

    def update(self, key: str, change: Callable[..., T], *args: Any) -> T:
        self.updates.append((key,))
        self.inside = True
        try:
            return super().update(key, change, *args)
        finally:
            self.inside = False


class Broken(MemoryStore):
    def update_many(self, keys: Sequence[str], change: Callable[..., T], *args: Any) -> T:
        raise uptake.StoreUnavailable("down")

    def update(self, key: str, change: Callable[..., T], *args: Any) -> T:
        raise uptake.StoreUnavailable("down")


def engine(
    store: MemoryStore | None = None,
    *,
    milestones: Sequence[uptake.Milestone] = (),
    nudges: Sequence[uptake.Nudge] = (),
    engagement: uptake.Engagement | None = None,
    rate_limit: float | None = 3600.0,
) -> RulesEngine:
    return RulesEngine(
        milestones=milestones,
        engagement=engagement,
        nudges=nudges,
        rate_limit=rate_limit,
        store=store if store is not None else MemoryStore(),
        tz=None,
        inactive_events=OWN,
    )


def test_an_event_reaches_user_and_account_milestones_in_one_update() -> None:
    store = Recording()
    rules = engine(
        store,
        milestones=[
            uptake.Milestone("activated", all_of=["Project Created"]),
            uptake.Milestone("team", all_of=["Project Created"], scope="account"),
        ],
    )
    effects = rules.update("u", None, "acme", "Project Created", None, T0)
    assert [(m.name, at, first) for m, at, first in effects.reached] == [
        ("team", T0, T0),
        ("activated", T0, T0),
    ]
    assert store.updates == [("account:acme", "user:u")]  # one atomic update, account first
    assert not rules.update("u", None, "acme", "Project Created", None, T0 + 1)  # reached once


def test_a_store_that_cannot_change_two_keys_at_once_gets_the_account_first() -> None:
    store = Recording(atomic_many=False)
    rules = engine(
        store,
        milestones=[
            uptake.Milestone("activated", all_of=["Go"]),
            uptake.Milestone("team", all_of=["Go"], scope="account"),
        ],
    )
    effects = rules.update("u", None, "acme", "Go", None, T0)
    assert [m.name for m, _, _ in effects.reached] == ["team", "activated"]
    assert store.updates == [("account:acme",), ("user:u",)]


def test_events_no_rule_looks_at_never_touch_the_store() -> None:
    store = Recording()
    rules = engine(store, nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Login", 2))])
    rules.update("u", None, None, "Nudge Shown", {"nudge": "tip"}, T0)  # uptake's own
    assert store.updates == []
    assert not rules.update("u", None, None, "Login", None, T0)
    effects = rules.update("u", None, None, "Login", None, T0 + 1)
    assert [(kind, n.name, reason) for kind, n, reason in effects.nudges] == [
        ("fired", "tip", "Login x2")
    ]
    assert store.updates == [("user:u",), ("user:u",)]


def test_replayed_history_counts_for_nudges_but_fires_none() -> None:
    rules = engine(nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Login", 2))])
    assert not rules.update(None, "anon-1", None, "Login", None, T0, decide=False)
    assert not rules.update(None, "anon-1", None, "Login", None, T0 + 1, decide=False)
    effects = rules.update(None, "anon-1", None, "Page Viewed", None, T0 + 2)
    assert [kind for kind, _, _ in effects.nudges] == ["fired"]  # the first look, live


def test_rate_limit_and_holdout_are_effects_too() -> None:
    always_held = uptake.Nudge("held", trigger=uptake.EventCount("Go", 1), holdout=0.999)
    later = uptake.Nudge("later", trigger=uptake.EventCount("Go", 1), priority=-1)
    rules = engine(nudges=[always_held, later])
    effects = rules.update("u", None, None, "Go", None, T0)
    assert [(kind, n.name) for kind, n, _ in effects.nudges] == [
        ("held_out", "held"),
        ("suppressed", "later"),
    ]
    effects = rules.update("u", None, None, "Page Viewed", None, T0 + 3600)
    assert [(kind, n.name) for kind, n, _ in effects.nudges] == [("fired", "later")]


def test_a_failing_store_is_counted_and_never_raises() -> None:
    rules = engine(Broken(), milestones=[uptake.Milestone("activated", all_of=["Go"])])
    effects = rules.update("u", None, None, "Go", None, T0)
    assert effects.deferred is not None and not effects.reached  # to be applied later
    assert rules.failures == 1
    assert not rules.update("u", None, None, "Go", None, T0, decide=False)  # history: skipped
    assert (rules.failures, rules.skipped) == (2, 1)


def test_host_audiences_are_asked_between_store_updates() -> None:
    store = Recording()
    asked: list[bool] = []

    def audience(view: uptake.Audience) -> bool:
        asked.append(store.inside)
        return view.user_id == "u"

    nudges = [
        uptake.Nudge("a", trigger=uptake.EventCount("Go", 1), audience=audience, priority=2),
        uptake.Nudge("b", trigger=uptake.EventCount("Go", 1), audience=audience, priority=1),
    ]
    rules = engine(store, nudges=nudges, rate_limit=None)
    effects = rules.update("u", None, None, "Go", None, T0)
    assert [(kind, n.name) for kind, n, _ in effects.nudges] == [("fired", "a"), ("fired", "b")]
    assert asked == [False, False]
    assert store.updates == [("user:u",)] * 3  # the event, then one resumption per answer
    assert not rules.update("v", None, None, "Go", None, T0).nudges  # asked: not in it
    assert asked == [False] * 4


def test_explain_is_the_decision_for_an_event_at_that_moment() -> None:
    tip = uptake.Nudge("tip", trigger=uptake.EventCount("Go", 1), cooldown=dt.timedelta(0))
    rules = engine(nudges=[tip], rate_limit=None)
    rules.update("u", None, None, "Go", None, T0)
    rules.outcome("u", None, "tip", "shown", T0, 0.0)
    (why,) = rules.explain("u", None, None, T0 + 60)
    assert why.status == "max_shows"
    (why,) = rules.explain("nobody", None, None, T0)
    assert (why.status, why.detail) == ("trigger_not_met", "Go happened 0 of 1 times")


# ---------------------------------------------------------------- the account's update


def account_engine(store: MemoryStore) -> RulesEngine:
    return engine(
        store,
        milestones=[uptake.Milestone("team", features=2, scope="account")],
        engagement=uptake.Engagement(touchpoints=["QBR Attended"]),
    )


def account_writes(store: Recording) -> int:
    return sum(1 for keys in store.updates if "account:acme" in keys)


def test_an_event_that_changes_nothing_in_the_account_skips_its_update() -> None:
    store = Recording()
    rules = account_engine(store)
    rules.update("u", None, "acme", "Work", None, T0)
    rules.update("u", None, "acme", "Work", None, T0 + 10)  # same day, member: skipped
    assert account_writes(store) == 1
    rules.update("v", None, "acme", "Work", None, T0 + 20)  # a member new today
    rules.update("u", None, "acme", "Feature Used", {"feature": "reports"}, T0 + 30)
    rules.update("u", None, "acme", "QBR Attended", None, T0 + 40)  # a touchpoint
    rules.update("u", None, "acme", "Work", None, T0 + 40 + ACCOUNT_LAST_RESOLUTION_S)
    rules.update("u", None, "acme", "Work", None, T0 + DAY)  # a new day
    rules.update("u", None, "acme", "Work", None, T0 + 5)  # a late event
    assert account_writes(store) == 7
    state = rules.state(None, "acme", T0 + DAY)
    assert state is not None and state[1].last == T0 + DAY


def test_a_skipped_update_leaves_the_accounts_last_event_at_most_a_minute_behind() -> None:
    store = Recording()
    rules = account_engine(store)
    for second in range(0, 300, 7):
        rules.update("u", None, "acme", "Work", None, T0 + second)
        found = rules.state(None, "acme", T0 + second)
        assert found is not None and found[1].last is not None
        assert T0 + second - found[1].last < ACCOUNT_LAST_RESOLUTION_S
    snapshot = rules.snapshot(None, "acme", T0 + 300)
    assert snapshot.active_users_28 == 1


def test_forgetting_an_account_writes_it_again_on_its_next_event() -> None:
    store = Recording()
    rules = account_engine(store)
    rules.update("u", None, "acme", "Work", None, T0)
    assert rules.forget(None, "acme")
    rules.update("u", None, "acme", "Work", None, T0 + 1)
    assert account_writes(store) == 2 and rules.state(None, "acme", T0 + 1) is not None


def test_accounts_named_by_nudges_are_always_updated() -> None:
    store = Recording()
    rules = engine(
        store,
        milestones=[uptake.Milestone("team", features=2, scope="account")],
        nudges=[uptake.Nudge("ready", trigger=uptake.Reached("team"))],
    )
    for second in range(3):
        rules.update("u", None, "acme", "Work", None, T0 + second)
    assert account_writes(store) == 3


@pytest.mark.parametrize("uid", ["u", None])
def test_keys_are_the_stores_keys(uid: str | None) -> None:
    store = Recording()
    rules = engine(store, milestones=[uptake.Milestone("activated", all_of=["Go"])])
    rules.update(uid, "anon", None, "Go", None, T0)
    assert store.updates == [("user:u",) if uid else ("anon:anon",)]
