"""ASGI lifespan through uptake's middleware: the app's own, then a flush at shutdown.

Each test plays the server's side of the protocol by hand and looks at the loopback
collector at the moment the middleware reports the shutdown done: by then every event
tracked before it, the app's shutdown code's included, must have been delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI

import uptake
from uptake.integrations import asgi as uptake_asgi
from uptake.integrations.fastapi import UptakeMiddleware
from uptake.testing import LoopbackCollector

KEY = "wk_lifespan"
SCOPE = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}


@pytest.fixture
def collector() -> Iterator[LoopbackCollector]:
    with LoopbackCollector(write_key=KEY) as c:
        yield c


@pytest.fixture
def client(collector: LoopbackCollector) -> Iterator[uptake.Client]:
    """A client that would send nothing for a minute unless flushed."""
    c = uptake.Client(write_key=KEY, endpoint=collector.url, flush_interval=60, flush_at=10_000)
    yield c
    c.shutdown(5)


def tracked(collector: LoopbackCollector) -> list[str]:
    return sorted(e["event"] for e in collector.events if e.get("type") == "track")


def serve_lifespan(
    app: Any, at_shutdown_done: Callable[[], object]
) -> tuple[list[dict[str, Any]], object]:
    """Start and stop ``app`` as a server does; ``at_shutdown_done()`` runs on its answer."""
    sent: list[dict[str, Any]] = []
    seen: list[object] = []

    async def run() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        started = asyncio.Event()

        async def receive() -> dict[str, Any]:
            return await inbox.get()

        async def send(message: dict[str, Any]) -> None:
            sent.append(dict(message))
            if message["type"].startswith("lifespan.startup."):
                started.set()
            if message["type"].startswith("lifespan.shutdown."):
                seen.append(at_shutdown_done())

        task = asyncio.create_task(app(dict(SCOPE), receive, send))
        await inbox.put({"type": "lifespan.startup"})
        await asyncio.wait_for(started.wait(), 5)
        if sent[-1]["type"] == "lifespan.startup.complete":
            await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    return sent, seen[0] if seen else None


def test_the_app_shuts_down_first_then_everything_is_delivered(
    client: uptake.Client, collector: LoopbackCollector
) -> None:
    order: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        order.append("startup")
        client.track("ops", "App Started")
        yield
        order.append("shutdown")
        client.track("ops", "App Stopped")  # shutdown code may track: delivered too

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(UptakeMiddleware, client=client)
    sent, at_done = serve_lifespan(app, lambda: tracked(collector))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert order == ["startup", "shutdown"]
    assert at_done == ["App Started", "App Stopped", "Session Started"]


async def _raises(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError("this app handles http only")


async def _returns(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.mark.parametrize("app", [_raises, _returns], ids=["raises", "returns"])
def test_an_app_without_lifespan_support_gets_it_answered_and_flushed(
    client: uptake.Client, collector: LoopbackCollector, app: Any
) -> None:
    client.track("ops", "Queued")
    middleware = uptake_asgi.UptakeMiddleware(app, client)
    sent, at_done = serve_lifespan(middleware, lambda: tracked(collector))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert at_done == ["Queued", "Session Started"]


def test_a_failing_startup_still_reaches_the_server(client: uptake.Client) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(UptakeMiddleware, client=client)
    with pytest.raises(RuntimeError, match="no database"):
        serve_lifespan(app, lambda: None)


def test_an_error_in_the_apps_shutdown_is_raised_after_the_flush(
    client: uptake.Client, collector: LoopbackCollector
) -> None:
    delivered: list[list[str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        client.track("ops", "Stopping")
        raise RuntimeError("shutdown broke")

    async def run() -> None:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            pass

        try:
            await uptake_asgi.UptakeMiddleware(app, client)(dict(SCOPE), receive, send)
        finally:
            delivered.append(tracked(collector))

    with pytest.raises(RuntimeError, match="shutdown broke"):
        asyncio.run(run())
    assert delivered == [["Session Started", "Stopping"]]
