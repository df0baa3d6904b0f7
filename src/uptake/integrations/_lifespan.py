"""The ASGI ``lifespan`` protocol through uptake's middleware: the app's, then a flush.

A server that stops gracefully (uvicorn, hypercorn, granian on SIGTERM or SIGINT) first
finishes the requests in flight, then sends ``lifespan.shutdown``, then exits; uvicorn
exits by re-raising the signal, so the interpreter-exit flush never runs. The middleware
therefore flushes the client, bounded by its ``exit_timeout``, when the app reports its
shutdown done (``lifespan.shutdown.complete`` or ``.failed``), after the app's own
shutdown code (which may track events) and before the server is told.

An app that does not speak lifespan (it raises or returns at once on a lifespan scope,
without reading or sending a message: Django's ASGI handler, most plain ASGI apps) gets
the protocol answered by the middleware instead, so the flush happens for it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..client import Client
from ._core import logger, off_loop

__all__ = ["flush_client", "lifespan"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DONE = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


async def flush_client(client: Client) -> bool:
    """Deliver what ``client`` has queued, within its ``exit_timeout``, off the event loop.

    Never raises: a failure is logged. Returns True when everything was delivered.
    """
    timeout = client.exit_timeout
    if timeout <= 0:
        return False
    try:
        return await off_loop(lambda: client.flush(timeout))
    except Exception:
        logger.exception("uptake: flushing at lifespan shutdown failed")
        return False


async def lifespan(
    app: ASGIApp, client: Client, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run the app's lifespan, flushing ``client`` when its shutdown is done.

    Exceptions of an app that speaks lifespan reach the server untouched (after the flush,
    when they come during shutdown), so a failing startup still stops it.
    """
    engaged = False  # the app read or sent a lifespan message
    shutting_down = False
    flushed = False

    async def flush_once() -> None:
        nonlocal flushed
        if not flushed:
            flushed = True
            await flush_client(client)

    async def app_receive() -> Message:
        nonlocal engaged, shutting_down
        engaged = True
        message = await receive()
        if message.get("type") == "lifespan.shutdown":
            shutting_down = True
        return message

    async def app_send(message: Message) -> None:
        nonlocal engaged
        engaged = True
        if message.get("type") in _DONE:
            await flush_once()
        await send(message)

    try:
        await app(scope, app_receive, app_send)
    except Exception as exc:
        if engaged:
            if shutting_down:
                await flush_once()
            raise
        logger.debug("the app does not support ASGI lifespan (%r): uptake answers it", exc)
    else:
        if engaged:
            if shutting_down:
                await flush_once()
            return
    await _answer(client, receive, send)


async def _answer(client: Client, receive: Receive, send: Send) -> None:
    """Speak lifespan for an app that does not: start at once, flush at shutdown."""
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await flush_client(client)
            await send({"type": "lifespan.shutdown.complete"})
            return
        else:
            return
