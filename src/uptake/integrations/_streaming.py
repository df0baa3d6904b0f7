"""Django's streamed responses: record the request once their body is sent.

Framework-free (duck-typed on ``HttpResponse``'s ``streaming``, ``streaming_content``,
``is_async`` and ``close``), so it imports no Django.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ._state import RequestState, off_loop, publish, reset

__all__ = ["Once", "defer"]


class Once:
    """Record a request exactly once, whichever of the ends comes first. Thread-safe."""

    __slots__ = ("_done", "_func", "_lock")

    def __init__(self, func: Callable[[bool], None]) -> None:
        self._func = func
        self._lock = threading.Lock()
        self._done = False

    def __call__(self, error: bool = False) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._func(error)


def defer(response: Any, record: Once, state: RequestState) -> bool:
    """For a streamed response, record once its body is sent; True if deferred.

    ``streaming_content`` is wrapped (the state published while it is iterated, an
    exception mid-stream recorded with ``error: true``) and so is ``close()``, which
    every server calls at the end, also when it sends a file with ``wsgi.file_wrapper``.
    """
    if response is None or not getattr(response, "streaming", False):
        return False
    try:
        content = response.streaming_content
        if getattr(response, "is_async", False):
            response.streaming_content = _astream(content, record, state)
        else:
            response.streaming_content = _stream(content, record, state)
        close = response.close

        def close_and_record() -> None:
            try:
                close()
            finally:
                record()

        response.close = close_and_record
    except Exception:
        return False
    return True


def _stream(content: Any, record: Once, state: RequestState) -> Iterator[bytes]:
    chunks = iter(content)
    while True:
        token = publish(state)
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except Exception:
            record(True)
            raise
        finally:
            reset(token)
        yield chunk
    record()


async def _astream(content: Any, record: Once, state: RequestState) -> AsyncIterator[bytes]:
    chunks = aiter(content)
    while True:
        token = publish(state)
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except Exception:
            await off_loop(lambda: record(True))
            raise
        finally:
            reset(token)
        yield chunk
    await off_loop(record)
