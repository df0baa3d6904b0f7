"""Serverless functions: deliver before the platform freezes the process.

AWS Lambda, Google Cloud Functions, Azure Functions and the like freeze the process as
soon as the handler returns (the delivery thread stops mid-wait) and may never thaw it:
events still queued then are late at best, lost at worst. :func:`flush_on_return` flushes
the client when the handler returns or raises, within a deadline, so the next freeze
finds nothing queued::

    import uptake
    from uptake.serverless import flush_on_return

    client = uptake.Client(flush_interval=60)  # built once, outside the handler

    @flush_on_return(client, timeout=2.0)
    def handler(event, context):
        client.track(event["user"], "Report Exported")
        return {"ok": True}

It is also a context manager (``with flush_on_return(client):``) and decorates
``async def`` handlers (the flush then runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .client import Client
from .errors import ConfigurationError

__all__ = ["flush_on_return"]

logger = logging.getLogger("uptake")

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds kept back from what a Lambda-style context says remains of the invocation.
MARGIN = 0.2


class flush_on_return:  # a decorator and a context manager, named as a function
    """Flush ``client`` when the wrapped handler or block returns or raises.

    The flush waits at most ``timeout`` seconds, and less when the handler's context
    object says the invocation ends sooner (AWS Lambda's
    ``context.get_remaining_time_in_millis()``, less :data:`MARGIN`). It never raises: a
    flush that cannot deliver everything in time logs a warning, and the handler's own
    result or exception is what the caller sees. The client keeps running: the next
    invocation of a thawed process reuses it.

    Args:
        client: The :class:`~uptake.Client` to flush.
        timeout: The most seconds spent delivering after each invocation.

    Raises:
        ConfigurationError: ``client`` is not an :class:`uptake.Client`, or ``timeout``
            is not a positive number.
    """

    def __init__(self, client: Client, *, timeout: float = 2.0) -> None:
        if not isinstance(client, Client):
            raise ConfigurationError(f"client must be an uptake.Client, not {client!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(f"timeout must be a positive number, not {timeout!r}")
        self.client = client
        self.timeout = float(timeout)

    def __call__(self, handler: F) -> F:
        """Wrap a handler (``def`` or ``async def``) so each invocation ends with a flush."""
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await handler(*args, **kwargs)
                finally:
                    await asyncio.to_thread(self.flush, _remaining(args))

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                self.flush(_remaining(args))

        return wrapper  # type: ignore[return-value]

    def __enter__(self) -> Client:
        return self.client

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.flush(None)

    def flush(self, remaining: float | None) -> bool:
        """Flush within the timeout (and what remains of the invocation). Never raises."""
        timeout = self.timeout if remaining is None else min(self.timeout, remaining - MARGIN)
        timeout = max(timeout, 0.0)
        started = time.monotonic()
        try:
            delivered = self.client.flush(timeout=timeout)
        except Exception:
            logger.exception("flushing uptake after the handler failed")
            return False
        if not delivered:
            logger.warning(
                "uptake: not every event was delivered within %.2f s of the handler's end "
                "(%.2f s spent); see client.stats",
                timeout,
                time.monotonic() - started,
            )
        return delivered


def _remaining(args: tuple[Any, ...]) -> float | None:
    """Seconds left in the invocation, from a Lambda-style context argument, if any."""
    for arg in args[1:2]:  # handler(event, context)
        remaining = getattr(arg, "get_remaining_time_in_millis", None)
        if callable(remaining):
            try:
                millis = remaining()
            except Exception:
                return None
            if isinstance(millis, (int, float)) and not isinstance(millis, bool):
                return millis / 1000.0
    return None
