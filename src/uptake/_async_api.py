"""The asyncio part of the public Client API: ``atrack``, ``afeature_used``, ``aidentify``.

:class:`AsyncApi` is a base of :class:`~uptake.Client`. ``track()`` does the rules'
store round trip on the caller's thread: microseconds with a ``MemoryStore``, up to the
store's ``timeout`` with ``SqliteStore`` or ``RedisStore``, which in a coroutine would
hold the event loop. ``await client.atrack(...)`` never does:

- the arguments are checked, and the event is sessionized, encoded, filtered by
  ``before_send`` and queued on the loop (microseconds, no I/O) when sessions live in
  this process;
- what waits on the store (the rules, and sessions kept in a shared store) runs on one of
  the client's :data:`LANES` rules threads, with a copy of the caller's context; a user's
  calls always take the same lane, so they are applied in the order they were made;
- the coroutine returns once the rules have run (``pending_nudges()`` then sees what the
  event fired); cancelling it does not cancel them.

When nothing can wait (an in-process store and no host code to run) ``atrack`` is
``track`` with no thread hop at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from . import events as _ev
from .rules.facade import RulesFacade
from .sessions import Sessionizer

__all__ = ["LANES", "AsyncApi", "Lanes"]

T = TypeVar("T")

#: Rules threads per client and process: a user's events always go to the same one.
LANES = 4

_LANES_LOCK = threading.Lock()


class Lanes:
    """A client's rules threads: one single-thread executor per lane, made on first use.

    Thread-safe and fork-safe (a forked child makes its own).
    """

    def __init__(self, count: int = LANES) -> None:
        self.count = count
        self._pid = 0
        self._executors: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def submit(self, key: str, func: Callable[[], T]) -> Future[T]:
        """Run ``func`` on the lane of ``key``, after the calls already given to it."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._executors = [
                        ThreadPoolExecutor(1, thread_name_prefix=f"uptake-rules-{i}")
                        for i in range(self.count)
                    ]
                    self._pid = os.getpid()
        return self._executors[hash(key) % self.count].submit(func)

    def shutdown(self) -> None:
        """Let the threads end once their queued calls are done (no wait)."""
        with self._lock:
            if self._pid == os.getpid():
                for executor in self._executors:
                    executor.shutdown(wait=False)
            self._executors = []
            self._pid = 0


class AsyncApi:
    """Coroutine tracking methods of the client (a base class of :class:`~uptake.Client`)."""

    _context_var: contextvars.ContextVar[Any]
    _rules: RulesFacade
    _rules_on: bool
    _sessions: Sessionizer
    _lane_pool: Lanes | None = None

    # Provided by the Client (declared for type checkers).
    track: Callable[..., None]
    identify: Callable[..., None]
    _never_waits: Callable[[], bool]

    async def atrack(
        self,
        user_id: str | int | None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        account_id: str | None = None,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that a user did something, without ever blocking the event loop.

        Same arguments, checks and events as :meth:`track`. The store's part (the rules,
        and sessions in a shared store) runs on the client's rules thread for this user,
        in order with the user's other calls; the call returns once it is done.
        ``on_milestone`` and ``on_nudge`` callbacks run on that thread, with the
        caller's context (a ``client.context()`` block, the request's contextvars).

        Raises:
            InvalidEventError: as :meth:`track` (when awaited).
        """
        kwargs: dict[str, Any] = {
            "account_id": account_id,
            "anonymous_id": anonymous_id,
            "timestamp": timestamp,
            "context": context,
        }
        if self._never_waits():
            self.track(user_id, event, properties, **kwargs)
            return
        if getattr(self._sessions, "in_process", True) is False:  # sessions do I/O too
            key = self._lane_key(user_id if event is not None else None, anonymous_id)
            await self._off_loop(key, lambda: self.track(user_id, event, properties, **kwargs))
            return
        if not self._rules_on:  # nothing else waits
            self.track(user_id, event, properties, **kwargs)
            return
        facade = self._rules
        held: list[tuple[Any, ...]] = []
        token = facade.held.set(held)
        try:
            self.track(user_id, event, properties, **kwargs)
        finally:
            facade.held.reset(token)
        if not held:  # the client is closed: nothing reached the rules
            return

        def apply() -> None:
            for args in held:
                facade.after_track(*args)

        await self._off_loop(held[0][0] or held[0][1] or "", apply)

    async def afeature_used(
        self,
        user_id: str | int | None,
        feature: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        account_id: str | None = None,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record use of a product feature, as :meth:`feature_used`, as :meth:`atrack` does."""
        if feature is None:
            user_id, feature = None, _ev.check_name(user_id, "feature")
        _ev.check_name(feature, "feature")
        props = dict(_ev.check_mapping(properties, "properties") or {})
        props["feature"] = feature
        await self.atrack(
            user_id,
            "Feature Used",
            props,
            account_id=account_id,
            anonymous_id=anonymous_id,
            timestamp=timestamp,
            context=context,
        )

    async def aidentify(
        self,
        user_id: str | int | None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record who a user is, as :meth:`identify`, without blocking the event loop.

        The whole call (a merge of the visitor into the user, the traits) runs on the
        user's rules thread unless nothing can wait.

        Raises:
            InvalidEventError: as :meth:`identify` (when awaited).
        """

        def call() -> None:
            self.identify(
                user_id, traits, anonymous_id=anonymous_id, timestamp=timestamp, context=context
            )

        if self._never_waits():
            call()
            return
        await self._off_loop(self._lane_key(user_id, anonymous_id), call)

    def _lanes(self) -> Lanes:
        """The client's rules threads (made on first use)."""
        lanes = self._lane_pool
        if lanes is None:
            with _LANES_LOCK:
                if self._lane_pool is None:
                    self._lane_pool = Lanes()
                lanes = self._lane_pool
        return lanes

    def _stop_lanes(self) -> None:
        """Let the rules threads end (at shutdown)."""
        if self._lane_pool is not None:
            self._lane_pool.shutdown()

    def _lane_key(self, user_id: str | int | None, anonymous_id: str | None) -> str:
        """The id that picks a call's lane (the context's when the call leaves it out)."""
        if user_id is None and anonymous_id is None:
            scope = self._context_var.get()
            if scope is not None:
                user_id, anonymous_id = scope.user_id, scope.anonymous_id
        return str(user_id if user_id is not None else anonymous_id or "")

    async def _off_loop(self, key: str, func: Callable[[], None]) -> None:
        """Run ``func`` on the lane of ``key`` with a copy of the context; wait for it.

        Shielded: cancelling the caller does not cancel ``func``. Without a running
        asyncio loop (trio), ``func`` runs inline.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            func()
            return
        try:
            lanes = self._lanes()
            future = lanes.submit(key, functools.partial(contextvars.copy_context().run, func))
        except RuntimeError:  # the interpreter is exiting: no new threads
            func()
            return
        await asyncio.shield(asyncio.wrap_future(future))
