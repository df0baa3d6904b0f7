# mypy: disable-error-code="import-untyped,import-not-found"
"""Django: a middleware (sync and async capable) configured from ``settings.UPTAKE``.

::

    # settings.py
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "uptake.integrations.django.UptakeMiddleware",  # after authentication
    ]
    UPTAKE = {
        "CLIENT": "myproject.analytics.client",  # an uptake.Client, or its dotted path
        "FEATURES": {"/reports/*": "reports", "billing:invoices": "billing"},
    }
    TEMPLATES = [{..., "OPTIONS": {"context_processors": [
        ..., "uptake.integrations.django.context_processor",
    ]}}]

The request's :class:`~uptake.integrations.RequestState` is ``request.uptake``; templates
get ``uptake`` and ``uptake_nudges``. The user is ``request.user`` (its ``pk``) in sync
mode; in async mode uptake never touches the lazy ``request.user``: it uses it only if
something already loaded it, and otherwise awaits ``request.auser()``.

``UPTAKE`` keys: ``CLIENT`` (required), ``USER_ID`` and ``ACCOUNT_ID`` (a function of the
request, or its dotted path; in async mode async functions are awaited and sync ones
run through ``sync_to_async``, so they may query the database), ``FEATURES``,
``SKIP_PATHS``, ``SKIP_METHODS``, ``ANONYMOUS_COOKIE``, ``NUDGES_HEADER``, ``ENDPOINT``
and ``SESSION_HEADER``, with the meanings of :class:`uptake.integrations.wsgi.UptakeMiddleware`.
``STATIC_URL`` and ``MEDIA_URL`` are skipped as well as ``SKIP_PATHS``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import (
    ImproperlyConfigured,
)
from django.http import HttpResponse
from django.utils.functional import empty
from django.utils.module_loading import import_string

from ..client import Client
from ._core import (
    COOKIE_MAX_AGE,
    DEFAULT_SKIP_METHODS,
    DEFAULT_SKIP_PATHS,
    MAX_BODY,
    Integration,
    RequestState,
    _current,
    off_loop,
    reset,
)
from ._endpoint import incomplete_body

__all__ = [
    "UptakeMiddleware",
    "context_processor",
    "default_user_id",
    "default_user_id_async",
]

_KEYS = frozenset(
    {
        "CLIENT",
        "USER_ID",
        "ACCOUNT_ID",
        "FEATURES",
        "SKIP_PATHS",
        "SKIP_METHODS",
        "ANONYMOUS_COOKIE",
        "NUDGES_HEADER",
        "ENDPOINT",
        "SESSION_HEADER",
    }
)


def default_user_id(request: Any) -> object:
    """The authenticated ``request.user``'s primary key, or None (sync mode)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return user.pk


async def default_user_id_async(request: Any) -> object:
    """The authenticated user's primary key, or None, without forcing ``request.user``.

    A ``request.user`` something already evaluated is used as is; otherwise
    ``await request.auser()`` (Django 5.0+) loads the user the async way.
    """
    user = request.__dict__.get("user")
    if user is not None and getattr(user, "_wrapped", None) is empty:
        user = None  # a lazy user nobody loaded: leave it alone
    if user is None:
        auser = getattr(request, "auser", None)
        if auser is None:
            return None
        user = await auser()
    if user is None or not user.is_authenticated:
        return None
    return user.pk


def context_processor(request: Any) -> dict[str, Any]:
    """Template context: ``uptake`` (the state) and ``uptake_nudges`` (read when used).

    ``uptake_nudges`` is a callable, so Django templates call it when rendered
    (``{% for nudge in uptake_nudges %}``) and Jinja templates write
    ``uptake_nudges()``: pages that never show nudges never read them.
    """
    state = getattr(request, "uptake", None)
    if not isinstance(state, RequestState):
        return {"uptake": None, "uptake_nudges": list}

    def uptake_nudges() -> list[Any]:
        return state.nudges

    return {"uptake": state, "uptake_nudges": uptake_nudges}


class UptakeMiddleware:
    """Record feature use and expose ``request.uptake`` for every request.

    Place it after ``AuthenticationMiddleware``. Listing it twice is harmless.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        config = _settings()
        client = config.get("CLIENT")
        if isinstance(client, str):
            client = import_string(client)
        if callable(client) and not isinstance(client, Client):
            client = client()
        if not isinstance(client, Client):
            raise ImproperlyConfigured(
                "UPTAKE['CLIENT'] must be an uptake.Client or its dotted path, not "
                f"{config.get('CLIENT')!r}"
            )
        skip_paths = list(config.get("SKIP_PATHS", DEFAULT_SKIP_PATHS))
        for name in ("STATIC_URL", "MEDIA_URL"):
            prefix = str(getattr(settings, name, None) or "")
            if prefix.startswith("/") and prefix != "/":
                skip_paths.append(prefix.rstrip("/") + "/*")
        self.integration = Integration(
            client,
            features=config.get("FEATURES"),
            skip_paths=skip_paths,
            skip_methods=config.get("SKIP_METHODS", DEFAULT_SKIP_METHODS),
            anonymous_cookie=config.get("ANONYMOUS_COOKIE", "uptake_anon"),
            nudges_header=config.get("NUDGES_HEADER"),
            endpoint=config.get("ENDPOINT", "/uptake"),
            session_header=config.get("SESSION_HEADER", "X-Uptake-Session"),
        )
        default = default_user_id_async if self.async_mode else default_user_id
        self._user_id: Callable[[Any], object] = _function(config, "USER_ID") or default
        self._account_id = _function(config, "ACCOUNT_ID")

    @property
    def dropped(self) -> dict[str, int]:
        """Ids and SDK failures dropped so far, by reason."""
        return self.integration.dropped

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        if isinstance(getattr(request, "uptake", None), RequestState):
            return self.get_response(request)  # listed twice: the first one does the work
        integration = self.integration
        endpoint = integration.is_endpoint(request.path_info)
        try:
            user = account = None
            if endpoint or not self._skips(request):
                user = integration.call_host(self._user_id, request, "user_id")
                if self._account_id is not None:
                    account = integration.call_host(self._account_id, request, "account_id")
                if inspect.isawaitable(user) or inspect.isawaitable(account):
                    _close(user, account)
                    integration.drop("user_id_error", "an async USER_ID in sync mode")
                    user = account = None
            state = self._begin(request, user, account, endpoint)
        except Exception:
            integration.drop("sdk_error", "starting the request's state failed", exc=True)
            state, endpoint = integration.skipped_state(), False
        request.uptake = state
        token = _current.set(state)
        try:
            if endpoint:
                return self._endpoint(request, state)
            if state.skipped:
                return self.get_response(request)
            response = None
            try:
                response = self.get_response(request)
                self._decorate(request, state, response)
                return response
            finally:
                record = self._recorder(request, state, response)
                if record is not None and not _defer(response, record, state):
                    record()
        finally:
            reset(token)

    async def __acall__(self, request: Any) -> Any:
        if isinstance(getattr(request, "uptake", None), RequestState):
            return await self.get_response(request)
        integration = self.integration
        endpoint = integration.is_endpoint(request.path_info)
        try:
            user = account = None
            if endpoint or not self._skips(request):
                user = await _call_async(integration, self._user_id, request, "user_id")
                if self._account_id is not None:
                    account = await _call_async(
                        integration, self._account_id, request, "account_id"
                    )
            state = self._begin(request, user, account, endpoint)
        except Exception:
            integration.drop("sdk_error", "starting the request's state failed", exc=True)
            state, endpoint = integration.skipped_state(), False
        request.uptake = state
        token = _current.set(state)
        try:
            if endpoint:  # reads or writes the rule store: off the event loop
                return await off_loop(lambda: self._endpoint(request, state))
            if state.skipped:
                return await self.get_response(request)
            response = None
            try:
                response = await self.get_response(request)
                if integration.nudges_header is not None and not state.nudges_loaded:
                    await state.anudges()  # the store read, off the loop; never raises
                self._decorate(request, state, response)
            except GeneratorExit:  # the coroutine is being closed: no await possible
                record = self._recorder(request, state, response)
                if record is not None:
                    record()
                raise
            except BaseException:
                await self._arecord(request, state, response)
                raise
            await self._arecord(request, state, response)
            return response
        finally:
            reset(token)

    def process_exception(self, request: Any, exception: Exception) -> None:
        """Note that the view raised: the request is recorded with ``error: true``."""
        request._uptake_error = True

    def _skips(self, request: Any) -> bool:
        return self.integration.skips(request.method or "GET", request.path_info)

    def _begin(self, request: Any, user: object, account: object, endpoint: bool) -> RequestState:
        integration = self.integration
        if not endpoint and self._skips(request):
            return integration.skipped_state()
        cookie = None
        if integration.anonymous_cookie is not None:
            cookie = request.COOKIES.get(integration.anonymous_cookie)
        session = None
        if integration.session_header_wsgi is not None:
            session = request.META.get(integration.session_header_wsgi)
        return integration.begin(
            user_id=user, cookie=cookie, account_id=account, session=session, mint=not endpoint
        )

    def _endpoint(self, request: Any, state: RequestState) -> Any:
        body: bytes | None = b""
        complete = True
        if request.method == "POST":
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = MAX_BODY + 1
            if declared > MAX_BODY:
                body = None
            else:
                try:
                    body = request.read(MAX_BODY + 1)
                except Exception:  # the client went away mid-body
                    body = b""
                    complete = False
                complete = complete and len(body) == declared
        if not complete:
            reply = incomplete_body()
        else:
            reply = self.integration.endpoint_reply(
                state,
                method=request.method or "GET",
                path=request.path_info,
                content_type=request.META.get("CONTENT_TYPE"),
                body=body,
                fetch_site=request.META.get("HTTP_SEC_FETCH_SITE"),
            )
        response = HttpResponse(reply.body, status=reply.status)
        for name, value in reply.headers:
            response[name] = value
        return response

    def _decorate(self, request: Any, state: RequestState, response: Any) -> None:
        """Set or drop the anonymous cookie, add the nudges header. Never raises."""
        integration = self.integration
        try:
            name = integration.anonymous_cookie
            if name is not None and state.new_anonymous and state.anonymous_id is not None:
                response.set_cookie(
                    name,
                    state.anonymous_id,
                    max_age=COOKIE_MAX_AGE,
                    path="/",
                    secure=request.is_secure(),
                    httponly=True,
                    samesite="Lax",
                )
            elif name is not None and state.forget_anonymous:
                response.delete_cookie(name, path="/", samesite="Lax")
            header = integration.nudges_header
            value = integration.nudges_header_value(state)
            if header is not None and value is not None:
                response[header] = value
        except Exception:
            integration.drop("sdk_error", "decorating the response failed", exc=True)

    def _recorder(self, request: Any, state: RequestState, response: Any) -> _Once | None:
        """The one-shot recording of this request, or None when it records nothing."""
        match = getattr(request, "resolver_match", None)
        route_name = getattr(match, "view_name", None) if match is not None else None
        integration = self.integration
        if not integration.records(state, request.path_info, route_name):
            return None
        failed = bool(getattr(request, "_uptake_error", False)) or response is None
        path, method = request.path_info, request.method or "GET"
        status = getattr(response, "status_code", None)
        route = getattr(match, "route", None) if match is not None else None

        def record(error: bool) -> None:
            integration.finish(
                state,
                path=path,
                method=method,
                status=status,
                route_name=route_name,
                route=route,
                error=failed or error,
            )

        return _Once(record)

    async def _arecord(self, request: Any, state: RequestState, response: Any) -> None:
        """Record the request (async mode): the rules' store update runs off the loop."""
        record = self._recorder(request, state, response)
        if record is not None and not _defer(response, record, state):
            await off_loop(record)


class _Once:
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


def _defer(response: Any, record: _Once, state: RequestState) -> bool:
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


def _stream(content: Any, record: _Once, state: RequestState) -> Iterator[bytes]:
    chunks = iter(content)
    while True:
        token = _current.set(state)
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


async def _astream(content: Any, record: _Once, state: RequestState) -> AsyncIterator[bytes]:
    chunks = aiter(content)
    while True:
        token = _current.set(state)
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


def _settings() -> Mapping[str, Any]:
    config = getattr(settings, "UPTAKE", None)
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            "uptake's middleware needs settings.UPTAKE = {'CLIENT': 'myproject.analytics.client'}"
        )
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ImproperlyConfigured(f"unknown UPTAKE settings {unknown}; known: {sorted(_KEYS)}")
    return config


def _function(config: Mapping[str, Any], key: str) -> Callable[[Any], object] | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = import_string(value)
    if not callable(value):
        raise ImproperlyConfigured(f"UPTAKE[{key!r}] must be a function of the request")
    return value  # type: ignore[no-any-return]


async def _call_async(
    integration: Integration, func: Callable[[Any], object], request: Any, what: str
) -> object:
    """Call a host identity function in async mode.

    A sync function runs through ``sync_to_async`` (it may query the database, which
    Django forbids on the event loop); an async one is awaited.
    """
    if iscoroutinefunction(func):
        value = integration.call_host(func, request, what)
    else:
        value = await sync_to_async(integration.call_host)(func, request, what)
    if inspect.isawaitable(value):
        try:
            value = await value
        except Exception:
            integration.drop(f"{what}_error", f"the {what} function raised", exc=True)
            return None
    return value


def _close(*values: object) -> None:
    """Close coroutines that will never be awaited (no 'never awaited' warning)."""
    for value in values:
        close = getattr(value, "close", None)
        if inspect.iscoroutine(value) and close is not None:
            close()
