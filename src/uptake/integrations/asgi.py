"""Pure ASGI 3 middleware: sessions, feature events, pending nudges and the nudge endpoint.

Works with any ASGI 3 framework (Starlette, FastAPI, Litestar, Django's ASGI handler...)
and is not a ``BaseHTTPMiddleware``: the response streams through untouched, background
tasks and ContextVars behave, ``websocket`` scopes pass straight through, and ``lifespan``
goes to the app with a flush of the client once its shutdown is done::

    from uptake.integrations.asgi import UptakeMiddleware

    app.add_middleware(UptakeMiddleware, client=client, features={"/reports/*": "reports"})

The request's :class:`~uptake.integrations.RequestState` is ``scope["state"]["uptake"]``,
which Starlette shows as ``request.state.uptake``, and
:func:`~uptake.integrations.current_state`. Identity defaults to ``scope["user"]`` as set
by Starlette's ``AuthenticationMiddleware``: add uptake's middleware *inside* it (with
``add_middleware``, before it), or pass ``user_id=`` a function of the scope.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ..client import Client
from ._core import (
    MAX_BODY,
    Integration,
    RequestState,
    cookie_value,
    off_loop,
    off_loop_for,
    publish,
    reset,
)
from ._endpoint import Reply, incomplete_body
from ._lifespan import lifespan
from ._options import IntegrationOptions, OptionsKwargs

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["STATE_KEY", "UptakeMiddleware", "default_user_id", "state_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A host function of the scope returning a user (or account) id, or an awaitable of one.
IdFunction = Callable[[Scope], object]

#: The key of the request's state in ``scope["state"]`` (``request.state.uptake``).
STATE_KEY = "uptake"
#: What host id functions usually return: no need to ask whether it is awaitable.
_PLAIN = (str, int, type(None))


def default_user_id(scope: Scope) -> object:
    """The authenticated ``scope["user"]``'s identity (Starlette), or None."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        return user.identity  # Starlette's BaseUser
    except (AttributeError, NotImplementedError):
        return getattr(user, "display_name", None) or None


def state_of(scope: Scope) -> RequestState | None:
    """The :class:`RequestState` the middleware attached to this scope, if any."""
    states = scope.get("state")
    found = states.get(STATE_KEY) if isinstance(states, Mapping) else None
    return found if isinstance(found, RequestState) else None


class UptakeMiddleware:
    """Record feature use and expose pending nudges for every HTTP request of an ASGI app.

    Only ``http`` scopes are looked at; wrapping an app twice is harmless (the inner
    middleware sees the outer one's state and passes the request through). ``lifespan``
    goes through to the app, and when the app's shutdown is done the client is flushed
    (within its ``exit_timeout``); an app that does not speak lifespan gets it answered.

    Args:
        app: The ASGI 3 application to wrap.
        client: The :class:`~uptake.Client` events go to.
        options: The settings, an :class:`~uptake.integrations.IntegrationOptions`. Its
            ``user_id`` and ``account_id`` are functions of the scope and may be
            ``async``; the default user is ``scope["user"]`` (:func:`default_user_id`).
            Route names in ``features`` are Starlette's and FastAPI's ``name=``.
        **overrides: Any field of :class:`~uptake.integrations.IntegrationOptions` as a
            keyword argument (``features=``, ``user_id=``...), replacing ``options``'.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client,
        options: IntegrationOptions | None = None,
        **overrides: Unpack[OptionsKwargs],
    ) -> None:
        self.app = app
        self.integration = Integration(client, options, **overrides)
        self.options = self.integration.options
        self._user_id: IdFunction = self.options.user_id or default_user_id
        self._account_id: IdFunction | None = self.options.account_id
        session_header = self.options.session_header
        self._session_key = None if session_header is None else session_header.lower().encode()
        self._cookie = self.options.anonymous_cookie

    @property
    def dropped(self) -> dict[str, int]:
        """Ids and SDK failures dropped so far, by reason."""
        return self.integration.dropped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or (scope.get("state") and state_of(scope) is not None):
            if kind == "lifespan":
                await lifespan(self.app, self.integration.client, scope, receive, send)
            else:
                await self.app(scope, receive, send)  # websockets, wrapped twice
            return
        integration = self.integration
        method = scope.get("method") or "GET"
        path = scope.get("path") or "/"
        endpoint = integration.is_endpoint(path)
        headers = _Headers(scope)
        try:
            state = await self._begin(scope, headers, method, path, endpoint)
        except Exception:
            integration.drop("sdk_error", "starting the request's state failed", exc=True)
            state, endpoint = integration.skipped_state(), False
        states = scope.get("state")
        if not isinstance(states, dict):
            states = scope["state"] = {}
        states[STATE_KEY] = state
        token = publish(state)
        try:
            if endpoint:
                await self._endpoint(state, headers, method, path, receive, send)
            elif state.skipped:
                await self.app(scope, receive, send)
            else:
                exchange = _Exchange(integration, state, scope, send, method, path)
                try:
                    await self.app(scope, receive, exchange.send)
                except GeneratorExit:  # the coroutine is being closed: no await possible
                    exchange.finish(True)
                    raise
                except BaseException:
                    await exchange.record(True)
                    raise
                await exchange.record(False)
        finally:
            reset(token)

    async def _begin(
        self, scope: Scope, headers: _Headers, method: str, path: str, endpoint: bool
    ) -> RequestState:
        integration = self.integration
        if not endpoint and integration.skips(method, path):
            return integration.skipped_state()
        user = integration.call_host(self._user_id, scope, "user_id")
        if type(user) not in _PLAIN and inspect.isawaitable(user):
            user = await self._settle(user, "user_id")
        account = None
        if self._account_id is not None:
            account = integration.call_host(self._account_id, scope, "account_id")
            if type(account) not in _PLAIN and inspect.isawaitable(account):
                account = await self._settle(account, "account_id")
        cookie, session = headers.cookie_and(self._session_key)
        if cookie is not None:
            cookie = cookie_value(cookie, self._cookie) if self._cookie is not None else None
        return integration.begin(
            user_id=user, cookie=cookie, account_id=account, session=session, mint=not endpoint
        )

    async def _settle(self, value: Awaitable[object], what: str) -> object:
        """The result of an ``async`` host id function; an exception is a counted drop."""
        try:
            return await value
        except Exception:
            self.integration.drop(f"{what}_error", f"the {what} function raised", exc=True)
            return None

    async def _endpoint(
        self,
        state: RequestState,
        headers: _Headers,
        method: str,
        path: str,
        receive: Receive,
        send: Send,
    ) -> None:
        body: bytes | None = b""
        if method == "POST":
            try:
                body = await _read_body(receive, headers.get("content-length"))
            except _Disconnected:
                return  # the client went away mid-body: record nothing, answer no one
            except _Incomplete:
                await _reply(send, incomplete_body())
                return
        integration = self.integration
        content_type = headers.get("content-type")
        fetch_site = headers.get("sec-fetch-site")
        reply = await off_loop_for(  # reads or writes the rule store
            state.client,
            lambda: integration.endpoint_reply(
                state,
                method=method,
                path=path,
                content_type=content_type,
                body=body,
                fetch_site=fetch_site,
            ),
        )
        await _reply(send, reply)


class _Exchange:
    """One recorded request's response: its status, uptake's headers, the event at the end."""

    __slots__ = ("_send", "integration", "method", "path", "scope", "state", "status")

    def __init__(
        self,
        integration: Integration,
        state: RequestState,
        scope: Scope,
        send: Send,
        method: str,
        path: str,
    ) -> None:
        self.integration = integration
        self.state = state
        self.scope = scope
        self._send = send
        self.method = method
        self.path = path
        self.status: int | None = None

    async def send(self, message: Message) -> None:
        """The app's ``send``: note the status, add uptake's headers to the response start."""
        if message["type"] == "http.response.start":
            self.status = message.get("status")
            integration, state = self.integration, self.state
            if integration.adds_headers(state):
                if integration.nudges_header is not None and not state.nudges_loaded:
                    await state.anudges()  # the store read, off the loop; never raises
                secure = self.scope.get("scheme") in ("https", "wss")
                extra = integration.response_headers(state, secure=secure)
                if extra:
                    message = dict(message)
                    message["headers"] = [*message.get("headers", ()), *_encode(extra)]
        await self._send(message)

    def finish(self, error: bool, matched: tuple[str | None, str | None] | None = None) -> None:
        """Record the request now, on this thread (``matched``: :func:`_route`'s answer)."""
        route_name, route = _route(self.scope) if matched is None else matched
        status = self.status
        self.integration.finish(
            self.state,
            path=self.path,
            method=self.method,
            status=500 if error and status is None else status,
            route_name=route_name,
            route=route,
            error=error,
        )

    async def record(self, error: bool) -> None:
        """Record the request: on the loop when nothing can wait, else in a worker thread.

        Recording runs the client's rules, which may write the store, or host callbacks:
        those run off the loop. Nothing happens when nothing would be recorded.
        """
        state = self.state
        matched = _route(self.scope)
        if not self.integration.records(state, self.path, matched[0]):
            return
        client = state.client
        if client is not None and client._never_waits():
            self.finish(error, matched)
        else:
            await off_loop(lambda: self.finish(error, matched))


async def _reply(send: Send, reply: Reply) -> None:
    """Send one of the nudge endpoint's replies."""
    out = [*reply.headers, ("Content-Length", str(len(reply.body)))]
    await send({"type": "http.response.start", "status": reply.status, "headers": _encode(out)})
    await send({"type": "http.response.body", "body": reply.body})


class _Headers:
    """The few request headers uptake reads, decoded on demand."""

    __slots__ = ("_raw",)

    def __init__(self, scope: Scope) -> None:
        self._raw: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()

    def cookie_and(self, key: bytes | None) -> tuple[str | None, str | None]:
        """The ``Cookie`` header (several joined) and header ``key``'s value, in one pass.

        ``key`` is a lowercase header name, or None for the cookie only.
        """
        cookies: list[bytes] | None = None
        found: bytes | None = None
        for k, v in self._raw:
            k = k.lower()
            if k == b"cookie":
                if cookies is None:
                    cookies = [v]
                else:
                    cookies.append(v)
            elif k == key and found is None:
                found = v
        cookie = None if cookies is None else b"; ".join(cookies).decode("latin-1")
        return cookie, None if found is None else found.decode("latin-1")

    def get(self, name: str) -> str | None:
        key = name.encode("latin-1")
        found = [v.decode("latin-1") for k, v in self._raw if k.lower() == key]
        if not found:
            return None
        return "; ".join(found) if name == "cookie" else found[0]


class _Disconnected(Exception):
    """The client disconnected before the whole request body arrived."""


class _Incomplete(Exception):
    """The body's length differs from its declared ``Content-Length``."""


async def _read_body(receive: Receive, declared: str | None) -> bytes | None:
    """The request body, at most ``MAX_BODY + 1`` bytes; None when it is larger.

    Raises:
        _Disconnected: ``http.disconnect`` came before the end of the body.
        _Incomplete: the body's length differs from its declared ``Content-Length``.
    """
    expected: int | None = None
    if declared is not None:
        try:
            expected = int(declared)
        except ValueError:
            return None
        if expected > MAX_BODY:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if expected is not None and size != expected:
        raise _Incomplete
    return b"".join(chunks)


def _encode(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def _route(scope: Scope) -> tuple[str | None, str | None]:
    """The matched route's name and path template (Starlette, FastAPI), when known."""
    route = scope.get("route")
    if route is None:
        return None, None
    name = getattr(route, "name", None)
    template = getattr(route, "path", None)
    return (
        name if isinstance(name, str) else None,
        template if isinstance(template, str) else None,
    )
