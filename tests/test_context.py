"""client.context(): ids and properties for the code inside a block, across threads and tasks."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import uptake
from uptake.testing import capture_events


@pytest.fixture
def client() -> Iterator[uptake.Client]:
    client = uptake.Client(send=False, session_events=False)
    yield client
    client.shutdown()


def tracked(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["event"], e.get("userId"), e.get("anonymousId"), e["context"].get("groupId"))
        for e in events
    ]


def test_calls_inside_take_the_ids_and_properties(client: uptake.Client) -> None:
    with capture_events(client) as events:
        with client.context(user_id="u1", account_id="acme", properties={"job": "export"}) as c:
            assert client.current_context() is c
            client.track("Report Exported")
            client.track(None, "Rows Counted", {"rows": 3})
            client.track("Typed", properties={"job": "mine", "n": 1})  # the event's win
            client.feature_used("reports")
            client.track("u2", "Other", account_id="beta")  # explicit arguments win
            client.track("u3", "Another User")  # not u1's: neither u1's account nor session
            client.track("Visitor", anonymous_id="v1")  # an explicit id: the context's none
            client.track("u1", "Named")  # the context's own user, named: all of it
        client.track("u1", "After")
    assert client.current_context() is None
    assert tracked(events) == [
        ("Report Exported", "u1", None, "acme"),
        ("Rows Counted", "u1", None, "acme"),
        ("Typed", "u1", None, "acme"),
        ("Feature Used", "u1", None, "acme"),
        ("Other", "u2", None, "beta"),
        ("Another User", "u3", None, None),
        ("Visitor", None, "v1", None),
        ("Named", "u1", None, "acme"),
        ("After", "u1", None, None),
    ]
    props = [e["properties"] for e in events]
    assert props[:4] == [
        {"job": "export"},
        {"job": "export", "rows": 3},
        {"job": "mine", "n": 1},
        {"job": "export", "feature": "reports"},
    ]
    assert props[-1] == {}


def test_contexts_nest_and_restore(client: uptake.Client) -> None:
    props = {"a": 1}
    outer = client.context(user_id="u1", account_id="acme", properties=props)
    with capture_events(client) as events, outer:
        with client.context(user_id="u2", properties={"b": 2, "a": 0}):
            client.track("Inner")
            with client.context(anonymous_id="v9"):
                client.track("Innermost")
        client.track("Outer")
    assert tracked(events) == [
        ("Inner", "u2", None, "acme"),
        ("Innermost", "u2", "v9", "acme"),
        ("Outer", "u1", None, "acme"),
    ]
    assert [e["properties"] for e in events] == [{"a": 0, "b": 2}, {"a": 0, "b": 2}, {"a": 1}]
    assert props == {"a": 1}  # the caller's dict is never changed


def test_leaving_out_the_ids_outside_a_context_is_a_clear_error(client: uptake.Client) -> None:
    with pytest.raises(uptake.InvalidEventError, match=r"client\.context"):
        client.track("Report Exported")
    with pytest.raises(uptake.InvalidEventError, match="both are missing"):
        client.track(None, "Report Exported")
    with pytest.raises(uptake.InvalidEventError, match="feature"):
        client.feature_used(None)
    with pytest.raises(uptake.InvalidEventError, match="user_id"):
        client.context(user_id=["u1"])  # type: ignore[arg-type]
    with pytest.raises(uptake.InvalidEventError, match="properties"):
        client.context(user_id="u1", properties=[("a", 1)])  # type: ignore[arg-type]


def test_a_context_belongs_to_its_client(client: uptake.Client) -> None:
    other = uptake.Client(send=False)
    try:
        with client.context(user_id="u1"):
            assert other.current_context() is None
            with pytest.raises(uptake.InvalidEventError):
                other.track("Report Exported")
    finally:
        other.shutdown()


def test_threads_never_see_each_others_context(client: uptake.Client) -> None:
    barrier = threading.Barrier(4)
    seen: dict[str, list[str | None]] = {}

    def work(name: str) -> None:
        with client.context(user_id=name, properties={"worker": name}):
            barrier.wait(5)  # every thread is inside its own block at once
            for n in range(50):
                client.track(f"E{n}")
            ctx = client.current_context()
            seen[name] = [ctx.user_id if ctx else None]
        seen[name].append(None if client.current_context() is None else "leaked")

    with capture_events(client) as events, client.context(user_id="main"):
        threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        child = threading.Thread(target=lambda: seen.setdefault("child", [None]))
        child.start()
        child.join(10)
    assert seen == {f"t{i}": [f"t{i}", None] for i in range(4)} | {"child": [None]}
    assert len(events) == 200
    assert all(e["userId"] == e["properties"]["worker"] for e in events)


def test_a_copied_context_carries_it_into_a_thread(client: uptake.Client) -> None:
    with capture_events(client) as events, client.context(user_id="u1"):
        ctx = contextvars.copy_context()
        thread = threading.Thread(target=ctx.run, args=(client.track, "In A Thread"))
        thread.start()
        thread.join(10)
    assert tracked(events) == [("In A Thread", "u1", None, None)]


def test_asyncio_tasks_keep_their_own_context(client: uptake.Client) -> None:
    async def request(user: str, started: asyncio.Event, both: asyncio.Event) -> None:
        async with client.context(user_id=user, account_id=f"acct-{user}"):
            started.set()
            await both.wait()  # the other task is inside its block too
            client.track("Handled")
            await asyncio.create_task(child())  # a task created inside inherits it

    async def child() -> None:
        await asyncio.sleep(0)
        client.track("Child Task")

    async def main() -> None:
        a, b, both = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(request("u1", a, both)),
            asyncio.create_task(request("u2", b, both)),
        ]
        await a.wait()
        await b.wait()
        both.set()
        await asyncio.gather(*tasks)
        assert client.current_context() is None

    with capture_events(client) as events:
        asyncio.run(main())
    assert sorted(tracked(events)) == [
        ("Child Task", "u1", None, "acct-u1"),
        ("Child Task", "u2", None, "acct-u2"),
        ("Handled", "u1", None, "acct-u1"),
        ("Handled", "u2", None, "acct-u2"),
    ]


def test_a_block_is_entered_once(client: uptake.Client) -> None:
    scope = client.context(user_id="u1")
    with scope, pytest.raises(RuntimeError, match="already entered"):
        scope.__enter__()
    assert client.current_context() is None


def test_rules_see_the_context_ids_and_properties() -> None:
    client = uptake.Client(
        send=False,
        milestones=[uptake.Milestone("reporting", counts={"Report Exported": 2})],
    )
    reached: list[uptake.MilestoneReached] = []
    client.on_milestone("reporting")(reached.append)
    with client.context(user_id="u1", account_id="acme"):
        client.track("Report Exported")
        client.track("Report Exported")
    client.shutdown()
    assert [(r.user_id, r.account_id) for r in reached] == [("u1", "acme")]
