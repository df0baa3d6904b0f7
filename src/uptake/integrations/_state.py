"""The state of one request, published to the code that handles it.

One :class:`RequestState` per request holds what uptake knows about it. It is published in
one ContextVar for the length of the request (set, then reset in ``finally``) and mutated
in place, never re-set, so threads and tasks the request starts see the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .._context_api import Context
from ..client import Client
from ..rules.nudges import NudgeFired

if TYPE_CHECKING:
    from ._core import Integration

__all__ = [
    "RequestState",
    "activate",
    "current_nudges",
    "current_state",
    "logger",
    "off_loop",
    "off_loop_for",
    "publish",
    "reset",
]

T = TypeVar("T")

logger = logging.getLogger("uptake.integrations")

_NO_NUDGES: list[NudgeFired] = []
#: Guards the making of a request's own lock (held for an instant, never during a read).
_LOCK_MAKING = threading.Lock()
_NO_PROPERTIES: Mapping[str, Any] = MappingProxyType({})


@attrs.define(eq=False)
class RequestState:
    """What uptake knows about the current request.

    Published as ``request.uptake`` (Django), ``g.uptake`` (Flask) and
    ``request.state.uptake`` (Starlette, FastAPI), and by :func:`current_state`.

    Attributes:
        user_id: The signed-in user (sanitised), or None.
        anonymous_id: The visitor's anonymous id (from the cookie), or None.
        account_id: The account the request acts in, when the host said so.
        feature: Set it in a view to record that feature for this request, whatever the
            route mapping says.
        session_id: The session id the front end sent, if any.
        skipped: True for requests uptake ignores (static files, health checks, ...).
    """

    user_id: str | None = None
    anonymous_id: str | None = None
    account_id: str | None = None
    feature: str | None = None
    session_id: str | None = None
    skipped: bool = False
    client: Client | None = attrs.field(default=None, repr=False)
    #: A fresh anonymous id to store in the cookie with the response.
    new_anonymous: bool = attrs.field(default=False, repr=False)
    #: The anonymous id was aliased to the user: drop the cookie with the response.
    forget_anonymous: bool = attrs.field(default=False, repr=False)
    _nudges: list[NudgeFired] | None = attrs.field(default=None, init=False, repr=False)
    #: Made on the first read of the nudges (most requests never read them).
    _lock: threading.Lock | None = attrs.field(default=None, init=False, repr=False)
    _integration: Integration | None = attrs.field(default=None, repr=False, alias="integration")

    @property
    def subject(self) -> str | None:
        """The id events are recorded under: the user id, else the anonymous id."""
        return self.user_id or self.anonymous_id

    @property
    def nudges(self) -> list[NudgeFired]:
        """The user's pending nudges, highest priority first.

        Read from the rule store on first access (so routes that never look pay nothing),
        then kept for the rest of the request: at most one store read per request.
        Empty for skipped requests, unknown visitors and brand-new anonymous ids. Never
        raises: a store failure gives an empty list (logged). Thread-safe.
        """
        found = self._nudges
        if found is None:
            lock = self._lock
            if lock is None:
                with _LOCK_MAKING:
                    lock = self._lock
                    if lock is None:
                        lock = self._lock = threading.Lock()
            with lock:
                if self._nudges is None:
                    self._nudges = self._load()
                found = self._nudges
        return found

    async def anudges(self) -> list[NudgeFired]:
        """:attr:`nudges` for async code: the store is read in a worker thread.

        The event loop never waits on the store (a Redis round trip, a busy SQLite file).
        """
        if self._nudges is not None:
            return self._nudges
        return await off_loop_for(self.client, lambda: self.nudges)

    @property
    def nudges_loaded(self) -> bool:
        """True once :attr:`nudges` was read (or there was nothing to read)."""
        return self._nudges is not None

    def track(self, event: str, properties: Mapping[str, Any] | None = None) -> None:
        """Record an event for this request's user (or anonymous visitor).

        The user, anonymous id, account and session are the request's. Does nothing for
        skipped requests and visitors uptake does not track. Thread-safe; never waits on
        the network.

        Raises:
            InvalidEventError: an empty or non-string event name, properties that are
                not a mapping (as :meth:`uptake.Client.track`).
        """
        client = self.client
        if client is None or self.skipped or self.subject is None:
            return
        client.track(self.user_id, event, properties, **self._ids())

    async def atrack(self, event: str, properties: Mapping[str, Any] | None = None) -> None:
        """:meth:`track` for async views: never blocks the event loop on the store.

        As :meth:`uptake.Client.atrack`: the store's part runs on the client's rules
        thread for this user, and the call returns once it is done.
        """
        client = self.client
        if client is None or self.skipped or self.subject is None:
            return
        await client.atrack(self.user_id, event, properties, **self._ids())

    def _ids(self) -> dict[str, Any]:
        """The request's account, anonymous id and session, as tracking arguments."""
        return {
            "account_id": self.account_id,
            "anonymous_id": self.anonymous_id if self.user_id is None else None,
            "context": None if self.session_id is None else {"sessionId": self.session_id},
        }

    def _load(self) -> list[NudgeFired]:
        client = self.client
        if client is None or self.skipped or self.new_anonymous or self.subject is None:
            return _NO_NUDGES
        try:
            if self.user_id is not None:
                return client.pending_nudges(self.user_id, account_id=self.account_id)
            return client.pending_nudges(anonymous_id=self.anonymous_id, account_id=self.account_id)
        except Exception:
            if self._integration is not None:
                self._integration.drop("nudges_error", "reading pending nudges failed")
            else:
                logger.exception("reading pending nudges failed")
            return _NO_NUDGES


_current: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "uptake_request", default=None
)


def current_state() -> RequestState | None:
    """The :class:`RequestState` of the request being handled, or None outside one."""
    return _current.get()


def current_nudges() -> list[NudgeFired]:
    """The current request's pending nudges (``[]`` outside a request).

    Meant as a template helper: Jinja ``{% for nudge in uptake_nudges() %}``.
    """
    state = _current.get()
    return state.nudges if state is not None else []


@contextlib.contextmanager
def activate(state: RequestState) -> Iterator[RequestState]:
    """Publish ``state`` as the current request's for the block."""
    token = publish(state)
    try:
        yield state
    finally:
        reset(token)


#: What :func:`reset` needs to undo one :func:`publish`: the request state's token, and
#: the client's context variable and its token when a context was opened for the request.
Published = tuple[
    "contextvars.Token[RequestState | None]",
    "contextvars.ContextVar[Context | None] | None",
    "contextvars.Token[Context | None] | None",
]


def publish(state: RequestState) -> Published:
    """Publish ``state`` as the current request's, and its ids as the client's context.

    Code deep inside the request can then call ``client.track("Report Exported")``: the
    request's user (or visitor), account and session are the context's, as inside
    ``with client.context(...)``. Never raises.
    """
    token = _current.set(state)
    client = state.client
    if client is None or state.skipped or not (state.user_id or state.anonymous_id):
        return token, None, None
    try:
        var = client._context_var
        outer = var.get()
        anonymous_id = state.anonymous_id if state.user_id is None else None
        if outer is None:  # the usual case: a request at the top of its thread or task
            context = Context(
                state.user_id, anonymous_id, state.account_id, _NO_PROPERTIES, state.session_id
            )
        else:
            context = outer.inner(
                state.user_id, anonymous_id, state.account_id, None, state.session_id
            )
        return token, var, var.set(context)
    except Exception:  # never break a request
        logger.exception("opening the request's uptake context failed")
        return token, None, None


def reset(published: Published) -> None:
    """Undo one :func:`publish`; never raises (a token from another context is ignored)."""
    token, var, opened = published
    if var is not None and opened is not None:
        try:
            var.reset(opened)
        except ValueError:  # left in another context than it was entered in
            old = opened.old_value
            var.set(None if old is contextvars.Token.MISSING else old)
    try:
        _current.reset(token)
    except ValueError:  # set in another context (a framework moved the request)
        _current.set(None)


async def off_loop_for(client: Client | None, func: Callable[[], T]) -> T:
    """Run ``func`` (which records or reads through ``client``) on the event loop when it
    cannot wait (a MemoryStore and no host code to run), else :func:`off_loop`.

    A thread hop per request costs an async app more than the recording itself; it is
    paid only where the store does I/O or the host's code may block.
    """
    if client is not None and client._never_waits():
        return func()
    return await off_loop(func)


async def off_loop(func: Callable[[], T]) -> T:
    """Run ``func`` in a worker thread so the event loop serves other requests meanwhile.

    ``func`` sees a copy of the caller's context (:func:`current_state` included). The
    call is shielded: cancelling the awaiting task (a client that went away) does not
    cancel ``func``, which still runs exactly once. Without a running asyncio loop (trio)
    or with its executor shut down, ``func`` runs inline.
    """
    try:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, contextvars.copy_context().run, func)
    except RuntimeError:
        return func()
    return await asyncio.shield(future)
