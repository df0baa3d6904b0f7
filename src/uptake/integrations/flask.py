"""Flask: ``Uptake(app, client)`` for sessions, feature events, nudges and the endpoint.

::

    from flask import Flask, session
    from uptake.integrations.flask import Uptake

    app = Flask(__name__)
    Uptake(
        app,
        client,
        user_id=lambda request: session.get("user_id"),
        features={"/reports/*": "reports", "dashboard": "dashboard"},  # path or endpoint
    )

The request's :class:`~uptake.integrations.RequestState` is ``g.uptake``; templates get
``uptake_nudges()``. uptake's ``before_request`` hook reads the user, so register hooks
that load the user before calling ``Uptake(app)`` (or read the session, as above).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask, Request, Response, current_app, g, request, session

from ..client import Client
from ..errors import ConfigurationError
from ._core import (
    MAX_BODY,
    Integration,
    RequestState,
    cookie_value,
    current_nudges,
    logger,
    publish,
    reset,
)
from ._endpoint import incomplete_body
from ._options import IntegrationOptions, OptionsKwargs, resolve_options
from ._state import Published

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Uptake", "default_user_id"]

_EXTENSION = "uptake"
#: Where the hooks keep a request's :class:`_Pending` in ``g``.
_PENDING = "_uptake_pending"


def default_user_id(request: Request) -> object:
    """Flask-Login's ``current_user`` when it is set up, else ``session["user_id"]``."""
    if getattr(current_app, "login_manager", None) is not None:
        try:
            user = importlib.import_module("flask_login").current_user
        except ImportError:
            user = None
        if user is not None and getattr(user, "is_authenticated", False):
            return user.get_id()
        return None
    return session.get("user_id")


class Uptake:
    """The Flask extension: record feature use, expose ``g.uptake``, serve the endpoint.

    Args:
        app: The Flask app (or call :meth:`init_app` later, application-factory style).
        client: The :class:`~uptake.Client` events go to.
        options: The settings, an :class:`~uptake.integrations.IntegrationOptions`. Its
            ``user_id`` and ``account_id`` are functions of the Flask ``Request``; the
            default user is :func:`default_user_id`. Route names in ``features`` are
            endpoint names (``"reports.detail"``); the ``static`` endpoint never records.
        **overrides: Any field of :class:`~uptake.integrations.IntegrationOptions` as a
            keyword argument (``features=``, ``user_id=``...), replacing ``options``'.
    """

    def __init__(
        self,
        app: Flask | None = None,
        client: Client | None = None,
        options: IntegrationOptions | None = None,
        **overrides: Unpack[OptionsKwargs],
    ) -> None:
        self.client = client
        self.options = resolve_options(options, **overrides)
        self._user_id: Callable[[Request], object] = self.options.user_id or default_user_id
        self._account_id = self.options.account_id
        if app is not None:
            self.init_app(app, client)

    def init_app(self, app: Flask, client: Client | None = None) -> None:
        """Install the hooks on ``app``. A second call for the same app does nothing."""
        client = client if client is not None else self.client
        if client is None:
            raise ConfigurationError("Uptake needs a client: Uptake(app, client)")
        if _EXTENSION in app.extensions:
            logger.debug("uptake is already installed on %r", app)
            return
        integration = app.extensions[_EXTENSION] = Integration(client, self.options)
        hooks = _Hooks(integration, self._user_id, self._account_id)
        app.before_request(hooks.before)
        app.after_request(hooks.after)
        app.teardown_request(hooks.teardown)
        app.jinja_env.globals["uptake_nudges"] = current_nudges

    @staticmethod
    def integration(app: Flask | None = None) -> Integration:
        """The integration installed on ``app`` (default: the current app)."""
        found = (app or current_app).extensions[_EXTENSION]
        assert isinstance(found, Integration)
        return found


class _Pending:
    """What uptake's hooks pass each other through ``g`` for one request."""

    __slots__ = ("records", "state", "status", "token")

    def __init__(self, state: RequestState, token: Published, records: bool) -> None:
        self.state = state
        self.token = token
        self.records = records  # False: skipped, or answered by the nudge endpoint
        self.status: int | None = None


class _Hooks:
    """uptake's request hooks on one app, bound to its integration.

    Each hook reaches Flask's ``request`` and ``g`` proxies once and then works on the
    objects behind them, and passes the host's functions the ``Request`` itself.
    """

    __slots__ = ("account_id", "integration", "user_id")

    def __init__(
        self,
        integration: Integration,
        user_id: Callable[[Request], object],
        account_id: Callable[[Request], object] | None,
    ) -> None:
        self.integration = integration
        self.user_id = user_id
        self.account_id = account_id

    def before(self) -> Response | None:
        integration = self.integration
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        method, path = req.method, req.path
        endpoint = integration.is_endpoint(path)
        try:
            state = self._begin(req, method, path, endpoint)
        except Exception:
            integration.drop("sdk_error", "starting the request's state failed", exc=True)
            state, endpoint = integration.skipped_state(), False
        globals_ = g._get_current_object()
        globals_.uptake = state
        setattr(
            globals_, _PENDING, _Pending(state, publish(state), not (endpoint or state.skipped))
        )
        if not endpoint:
            return None
        declared = req.content_length
        body = None if (declared or 0) > MAX_BODY else b""
        try:
            if body is not None and method == "POST":
                body = req.stream.read(MAX_BODY + 1)
                if declared is not None and len(body) != declared:
                    raise ValueError("the body does not match its Content-Length")
        except Exception:  # a truncated body (the client went away): record nothing
            reply = incomplete_body()
        else:
            reply = integration.endpoint_reply(
                state,
                method=method,
                path=path,
                content_type=req.content_type,
                body=body,
                fetch_site=req.headers.get("Sec-Fetch-Site"),
            )
        return Response(reply.body, status=reply.status, headers=list(reply.headers))

    def _begin(self, req: Request, method: str, path: str, endpoint: bool) -> RequestState:
        integration = self.integration
        if not endpoint and (integration.skips(method, path) or _is_static(req.endpoint)):
            return integration.skipped_state()
        account = None
        if self.account_id is not None:
            account = integration.call_host(self.account_id, req, "account_id")
        environ = req.environ
        cookie = None
        if integration.anonymous_cookie is not None:
            cookie = cookie_value(environ.get("HTTP_COOKIE"), integration.anonymous_cookie)
        session_key = integration.session_header_wsgi
        return integration.begin(
            user_id=integration.call_host(self.user_id, req, "user_id"),
            cookie=cookie,
            account_id=account,
            session=environ.get(session_key) if session_key else None,
            mint=not endpoint,
        )

    def after(self, response: Response) -> Response:
        pending = getattr(g._get_current_object(), _PENDING, None)
        if pending is None or not pending.records:
            return response
        pending.status = response.status_code
        integration, state = self.integration, pending.state
        if integration.adds_headers(state):
            for name, value in integration.response_headers(state, secure=request.is_secure):
                response.headers.add(name, value)
        return response

    def teardown(self, exc: BaseException | None) -> None:
        # Popped: stream_with_context tears the request down a second time.
        pending = g._get_current_object().pop(_PENDING, None)
        if pending is None:
            return
        try:
            if pending.records:
                req: Request = request._get_current_object()  # type: ignore[attr-defined]
                status = pending.status
                rule = req.url_rule
                self.integration.finish(
                    pending.state,
                    path=req.path,
                    method=req.method,
                    status=500 if exc is not None and status is None else status,
                    route_name=req.endpoint,
                    route=rule.rule if rule is not None else None,
                    error=exc is not None,
                )
        finally:
            reset(pending.token)


def _is_static(endpoint: str | None) -> bool:
    return endpoint is not None and (endpoint == "static" or endpoint.endswith(".static"))
