"""The context part of the public Client API: who and what the code running now is about.

``with client.context(user_id="u1", account_id="acme", properties={"job": "export"}):``
publishes a :class:`Context` in a ContextVar of the client for the block. Tracking calls
inside may leave out the ids (``client.track("Report Exported")``): the context gives
them; its properties are added to every event tracked inside. Explicit arguments win, and
an event's own properties win over the context's.

A ContextVar makes it safe across threads and asyncio tasks: a thread starts with no
context (pass one on with :func:`contextvars.copy_context`), an asyncio task starts with a
copy of its creator's. Contexts nest: the inner one's ids replace the outer one's, field
by field, and their properties are merged (the inner one's win).

:class:`ContextApi` is a base of :class:`~uptake.Client`; :func:`fill` is what
``Client.track`` calls, only when a context is active or the ids are left out.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any

import attrs

from . import events as _ev
from .errors import InvalidEventError

__all__ = ["Context", "ContextApi", "ContextScope", "fill", "new_var"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@attrs.frozen
class Context:
    """The ids and properties in effect for the code running now (see ``Client.context``).

    Attributes:
        user_id: The user events are recorded for, or None.
        anonymous_id: The anonymous visitor, when there is no user id (or both).
        account_id: The account (``context.groupId``) events are recorded in, or None.
        properties: Added to every event tracked inside (read-only).
        session_id: The session the events join (a web integration's session header),
            or None for automatic sessions.
    """

    user_id: str | None = None
    anonymous_id: str | None = None
    account_id: str | None = None
    properties: Mapping[str, Any] = _EMPTY
    session_id: str | None = None

    def inner(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        account_id: str | None,
        properties: Mapping[str, Any] | None,
        session_id: str | None,
    ) -> Context:
        """Return the context of a block nested in this one: given fields replace these."""
        merged = self.properties
        if properties:
            merged = MappingProxyType({**self.properties, **properties})
        return Context(
            user_id=self.user_id if user_id is None else user_id,
            anonymous_id=self.anonymous_id if anonymous_id is None else anonymous_id,
            account_id=self.account_id if account_id is None else account_id,
            properties=merged,
            session_id=self.session_id if session_id is None else session_id,
        )


_ROOT = Context()

ContextVar = contextvars.ContextVar["Context | None"]


def new_var() -> ContextVar:
    """Return a new ContextVar holding a client's current :class:`Context`."""
    return contextvars.ContextVar("uptake_context", default=None)


class ContextScope:
    """The block of a ``Client.context(...)``: ``with`` and ``async with`` both work.

    Entering publishes the context (and returns it); leaving restores the one before. Use
    it once: enter and leave it in the same thread or task.
    """

    __slots__ = ("_context", "_token", "_var")

    def __init__(self, var: ContextVar, context: Context) -> None:
        self._var = var
        self._context = context
        self._token: contextvars.Token[Context | None] | None = None

    def __enter__(self) -> Context:
        if self._token is not None:
            raise RuntimeError("this client.context() block is already entered")
        self._token = self._var.set(self._context)
        return self._context

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        try:
            self._var.reset(token)
        except ValueError:  # left in another context than it was entered in
            self._var.set(token.old_value if token.old_value is not token.MISSING else None)

    async def __aenter__(self) -> Context:
        return self.__enter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(kind, value, traceback)


class ContextApi:
    """The context methods of the client (a base class of :class:`~uptake.Client`)."""

    _context_var: ContextVar

    def context(
        self,
        *,
        user_id: str | int | None = None,
        account_id: str | int | None = None,
        anonymous_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> ContextScope:
        """Give the code inside a block its user, account and common event properties.

        Inside, ``track()`` and ``feature_used()`` may leave out the ids
        (``client.track("Report Exported")``) and every event they record gets
        ``properties`` added. Explicit arguments win over the context, and an event's
        own properties over the context's. Blocks nest: an inner block's ids replace the
        outer one's, their properties are merged. The web integrations open one per
        request, the Celery integration one per task.

        Thread-safe and task-safe (a ContextVar): other threads never see it; asyncio
        tasks created inside start with it. Works as ``with`` and ``async with``.

        Example::

            with client.context(user_id="u1", account_id="acme", properties={"job": "x"}):
                client.track("Report Exported", properties={"rows": 10})

        Raises:
            InvalidEventError: an id that is not a string or int, or properties that are
                not a mapping.
        """
        uid = _ev._check_id(user_id, "user_id")
        anon = _ev._check_id(anonymous_id, "anonymous_id")
        account = _ev.check_account(account_id)
        props = _ev.check_mapping(properties, "properties")
        outer = self._context_var.get() or _ROOT
        return ContextScope(
            self._context_var, outer.inner(uid, anon, account, dict(props or {}), None)
        )

    def _scoped(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        account_id: str | None,
        session_id: str | None,
    ) -> ContextScope:
        """The context of one web request or task, its ids already clean (integrations)."""
        outer = self._context_var.get()
        if outer is None:  # the usual case: a request at the top of its thread or task
            context = Context(user_id, anonymous_id, account_id, _EMPTY, session_id)
        else:
            context = outer.inner(user_id, anonymous_id, account_id, None, session_id)
        return ContextScope(self._context_var, context)

    def current_context(self) -> Context | None:
        """Return the :class:`Context` in effect here, or None outside any block."""
        return self._context_var.get()


def fill(
    scope: Context | None,
    user_id: str | int | None,
    event: str | None,
    properties: Mapping[str, Any] | None,
    account_id: str | None,
    anonymous_id: str | None,
    context: Mapping[str, Any] | None,
) -> tuple[
    str | int | None,
    str,
    Mapping[str, Any] | None,
    str | None,
    str | None,
    Mapping[str, Any] | None,
]:
    """Complete a tracking call's arguments from the context in effect (``scope``).

    ``track("Report Exported")`` (no ``event``) names the event in its first argument and
    takes the ids from the context. Ids the call gives win; when it gives neither id, the
    context's user and anonymous ids are used. The context's account and session go to
    the context's own user only (an event for another user keeps neither); its
    properties go under every event's.

    Raises:
        InvalidEventError: no event name, or only an event name outside any context.
    """
    if event is None:
        if scope is None:
            raise InvalidEventError(
                "event name must be a string, not NoneType (track(event) with the ids left "
                "out works inside `with client.context(user_id=...)` only)"
            )
        if not isinstance(user_id, str):
            _ev.check_name(user_id)
        event, user_id = str(user_id), None
    if scope is None:  # the ids are checked by the caller, as without a context
        return user_id, event, properties, account_id, anonymous_id, context
    if user_id is None and anonymous_id is None:
        user_id, anonymous_id = scope.user_id, scope.anonymous_id
        same = True
    else:  # another user's event (an admin acting on a customer) is not in this session
        same = (user_id is not None and user_id == scope.user_id) or (
            user_id is None and anonymous_id is not None and anonymous_id == scope.anonymous_id
        )
    if account_id is None and same:
        account_id = scope.account_id
    if scope.properties:
        own = _ev.check_mapping(properties, "properties")
        properties = {**scope.properties, **own} if own else dict(scope.properties)
    session = scope.session_id if same else None
    if session is not None and (context is None or context.get("sessionId") in (None, "")):
        _ev.check_mapping(context, "context")
        context = {**(context or {}), "sessionId": session}
    return user_id, event, properties, account_id, anonymous_id, context
