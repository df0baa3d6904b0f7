"""atrack, afeature_used and aidentify: a store that waits never holds the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import uptake
from uptake.testing import capture_events

from .integrations_helpers import GatedStore, features, gated_client

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


async def wait_for(event: threading.Event) -> None:
    """Wait for a thread's event without holding the loop."""
    assert await asyncio.get_running_loop().run_in_executor(None, event.wait, 5)


def test_the_loop_serves_other_requests_while_the_store_hangs() -> None:
    store = GatedStore()
    client = gated_client(store)
    fired: list[tuple[str, str, bool]] = []

    @client.on_nudge("tip")
    def show(nudge: uptake.NudgeFired) -> None:
        fired.append((nudge.user_id, request_id.get(), threading.current_thread().name))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        """A host's ASGI app: /track records through uptake, /ping does not."""
        if scope["path"] == "/track":
            request_id.set("r-1")
            await client.afeature_used("u1", "reports")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            store.shut()
            tracking = asyncio.create_task(http.get("/track"))
            await wait_for(store.entered)  # the rules' store call hangs on a rules thread
            # The event itself was queued on the loop, before the store was asked.
            assert [e["properties"]["feature"] for e in features(events)] == ["reports"]
            for _ in range(3):  # the loop goes on serving other requests meanwhile
                assert (await http.get("/ping")).text == "ok"
            assert not tracking.done() and fired == []
            store.release()
            assert (await tracking).text == "ok"
        # The callback ran on the user's rules thread, with the request's context.
        assert [(u, r) for u, r, _ in fired] == [("u1", "r-1")]
        assert fired[0][2].startswith("uptake-rules")
        assert client.pending_nudges("u1")[0].name == "tip"

    with capture_events() as events:
        asyncio.run(main())
    client.shutdown()


class RecordingStore(GatedStore):
    """A gated store that notes the time of each event it applies, and on which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.applied: list[tuple[float, str]] = []

    def update(self, key: str, change: Any, *args: Any) -> Any:
        result = super().update(key, change, *args)
        self.applied.append((args[0].t, threading.current_thread().name))
        return result


def test_a_users_calls_are_applied_in_the_order_they_were_made() -> None:
    store = RecordingStore()
    client = uptake.Client(
        send=False,
        store=store,
        milestones=[uptake.Milestone("third", counts={"Step": 3})],
    )
    reached: list[tuple[str, float]] = []
    client.on_milestone()(lambda r: reached.append((r.user_id, r.timestamp.timestamp())))

    async def main() -> None:
        store.shut()
        first = asyncio.create_task(client.atrack("u1", "Step", timestamp=when(1)))
        await wait_for(store.entered)
        # Two more while the first waits in the store: they queue behind it, in order.
        later = [
            asyncio.create_task(client.atrack("u1", "Step", timestamp=when(s))) for s in (2, 3)
        ]
        await asyncio.sleep(0)
        store.release()
        await asyncio.gather(first, *later)

    asyncio.run(main())
    times = [when(s).timestamp() for s in (1, 2, 3)]
    assert [t for t, _ in store.applied] == times
    assert len({thread for _, thread in store.applied}) == 1  # the user's one rules thread
    assert reached == [("u1", when(3).timestamp())]
    assert client.state("u1")["events"]["Step"] == [when(s).timestamp() for s in (1, 2, 3)]
    client.shutdown()


def when(seconds: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(1_780_000_000 + seconds, timezone.utc)


def test_mistakes_raise_at_the_await_and_nothing_is_recorded() -> None:
    client = gated_client(GatedStore())
    with capture_events() as events:
        with pytest.raises(uptake.InvalidEventError):
            asyncio.run(client.atrack(None, "X"))
        with pytest.raises(uptake.InvalidEventError):
            asyncio.run(client.afeature_used("u1", ""))
        with pytest.raises(uptake.InvalidEventError):
            asyncio.run(client.aidentify(None))
    assert events == []
    client.shutdown()


def test_with_a_memory_store_and_no_hooks_nothing_leaves_the_loop() -> None:
    client = uptake.Client(
        send=False,
        nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Feature Used", 1))],
    )

    async def main() -> None:
        await client.afeature_used("u1", "reports")
        await client.aidentify("u1", {"plan": "pro"}, anonymous_id="v1")

    with capture_events() as events:
        asyncio.run(main())
    assert [e.get("event") or e["type"] for e in events][:2] == ["Session Started", "Feature Used"]
    assert client.pending_nudges("u1")[0].name == "tip"
    assert client._lane_pool is None  # no rules thread was ever started
    client.shutdown()


def test_aidentify_merges_the_visitor_off_the_loop(tmp_path: Path) -> None:
    client = uptake.Client(
        send=False,
        store=uptake.SqliteStore(tmp_path / "rules.db"),
        milestones=[uptake.Milestone("visited", any_of=["Landing"])],
    )
    reached: list[tuple[str | None, str]] = []
    client.on_milestone()(
        lambda r: reached.append((r.user_id, threading.current_thread().name[:12]))
    )

    async def main() -> None:
        # Sessions live in the shared store too: the whole call goes to the rules thread.
        await client.atrack(None, "Landing", anonymous_id="v1")
        await client.aidentify("u1", {"plan": "pro"}, anonymous_id="v1")
        await client.atrack("u1", "Landing")

    with capture_events() as events:
        asyncio.run(main())
    assert reached == [("v1", "uptake-rules")]  # the visitor reached it; the user never again
    assert [e.get("event") or e["type"] for e in events] == [
        "Session Started",
        "Landing",
        "Milestone Reached",
        "identify",
        "Session Started",
        "Landing",
    ]
    assert "visited" in client.state("u1")["reached"]  # merged into the user
    client.shutdown()


def test_the_request_state_tracks_for_the_requests_user_off_the_loop() -> None:
    from uptake.integrations import current_state
    from uptake.integrations.asgi import UptakeMiddleware

    client = gated_client(GatedStore())
    threads: list[str] = []
    client.on_nudge("tip")(lambda nudge: threads.append(threading.current_thread().name))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        state = current_state()
        assert state is not None
        await state.atrack("Feature Used", {"feature": "exports"})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        wrapped = UptakeMiddleware(app, client, user_id=lambda scope: "u7")
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            assert (await http.get("/x")).text == "ok"

    with capture_events() as events:
        asyncio.run(main())
    assert [(e["userId"], e["properties"]) for e in features(events)] == [
        ("u7", {"feature": "exports"})
    ]
    assert len(threads) == 1 and threads[0].startswith("uptake-rules")
    client.shutdown()


def test_a_cancelled_call_still_runs_its_rules_once() -> None:
    store = GatedStore()
    client = gated_client(store)
    fired = threading.Event()
    shown: list[str] = []

    @client.on_nudge("tip")
    def show(nudge: uptake.NudgeFired) -> None:
        shown.append(nudge.user_id)
        fired.set()

    async def main() -> None:
        store.shut()
        task = asyncio.create_task(client.afeature_used("u1", "reports"))
        await wait_for(store.entered)
        task.cancel()  # the visitor went away
        with pytest.raises(asyncio.CancelledError):
            await task
        store.release()
        await wait_for(fired)

    asyncio.run(main())
    assert shown == ["u1"]
    assert [n.name for n in client.pending_nudges("u1")] == ["tip"]
    client.shutdown()
