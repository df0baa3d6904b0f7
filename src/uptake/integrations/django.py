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

``UPTAKE`` keys: ``CLIENT`` (required), ``OPTIONS`` (an
:class:`~uptake.integrations.IntegrationOptions`), and its fields in capitals, which
replace the ``OPTIONS``' ones: ``USER_ID`` and ``ACCOUNT_ID`` (a function of the request,
or its dotted path; in async mode async functions are awaited and sync ones run through
``sync_to_async``, so they may query the database), ``FEATURES``, ``SKIP_PATHS``,
``SKIP_METHODS``, ``ANONYMOUS_COOKIE``, ``NUDGES_HEADER``, ``ENDPOINT`` and
``SESSION_HEADER``. ``STATIC_URL`` and ``MEDIA_URL`` are skipped as well as ``SKIP_PATHS``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import attrs
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
    MAX_BODY,
    Integration,
    RequestState,
    off_loop,
    publish,
    reset,
)
from ._endpoint import incomplete_body
from ._options import IntegrationOptions, resolve_options
from ._streaming import Once, defer

__all__ = [
    "UptakeMiddleware",
    "context_processor",
    "default_user_id",
    "default_user_id_async",
]

#: ``settings.UPTAKE`` keys naming :class:`~uptake.integrations.IntegrationOptions` fields.
_FIELDS = {
    "USER_ID": "user_id",
    "ACCOUNT_ID": "account_id",
    "FEATURES": "features",
    "SKIP_PATHS": "skip_paths",
    "SKIP_METHODS": "skip_methods",
    "ANONYMOUS_COOKIE": "anonymous_cookie",
    "NUDGES_HEADER": "nudges_header",
    "ENDPOINT": "endpoint",
    "SESSION_HEADER": "session_header",
}
_KEYS = frozenset({"CLIENT", "OPTIONS", *_FIELDS})


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
        options = _options(config)
        extra = []
        for name in ("STATIC_URL", "MEDIA_URL"):
            prefix = str(getattr(settings, name, None) or "")
            if prefix.startswith("/") and prefix != "/":
                extra.append(prefix.rstrip("/") + "/*")
        if extra:
            options = attrs.evolve(options, skip_paths=[*options.skip_paths, *extra])
        self.options = options
        self.integration = Integration(client, options)
        default = default_user_id_async if self.async_mode else default_user_id
        self._user_id: Callable[[Any], object] = options.user_id or default
        self._account_id = options.account_id

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
        token = publish(state)
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
                if record is not None and not defer(response, record, state):
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
        token = publish(state)
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

    def _recorder(self, request: Any, state: RequestState, response: Any) -> Once | None:
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

        return Once(record)

    async def _arecord(self, request: Any, state: RequestState, response: Any) -> None:
        """Record the request (async mode): the rules' store update runs off the loop."""
        record = self._recorder(request, state, response)
        if record is not None and not defer(response, record, state):
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


def _options(config: Mapping[str, Any]) -> IntegrationOptions:
    """The options ``settings.UPTAKE`` gives: ``OPTIONS``, then the keys, which replace."""
    overrides: dict[str, Any] = {}
    for key, field in _FIELDS.items():
        if key in config:
            overrides[field] = config[key]
    for key in ("USER_ID", "ACCOUNT_ID"):
        if key in config:
            overrides[_FIELDS[key]] = _function(config, key)
    base = config.get("OPTIONS")
    if base is not None and not isinstance(base, IntegrationOptions):
        raise ImproperlyConfigured(
            f"UPTAKE['OPTIONS'] must be an uptake.integrations.IntegrationOptions, not {base!r}"
        )
    return resolve_options(base, **overrides)


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
