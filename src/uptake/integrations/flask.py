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
    current_nudges,
    logger,
    publish,
    reset,
)
from ._endpoint import incomplete_body
from ._options import IntegrationOptions, OptionsKwargs, resolve_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Uptake", "default_user_id"]

_EXTENSION = "uptake"


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
        app.extensions[_EXTENSION] = Integration(client, self.options)
        app.before_request(self._before)
        app.after_request(self._after)
        app.teardown_request(self._teardown)
        app.jinja_env.globals["uptake_nudges"] = current_nudges

    @staticmethod
    def integration(app: Flask | None = None) -> Integration:
        """The integration installed on ``app`` (default: the current app)."""
        found = (app or current_app).extensions[_EXTENSION]
        assert isinstance(found, Integration)
        return found

    def _before(self) -> Response | None:
        integration: Integration = current_app.extensions[_EXTENSION]
        method, path = request.method, request.path
        endpoint = integration.is_endpoint(path)
        try:
            state = self._begin(integration, method, path, endpoint)
        except Exception:
            integration.drop("sdk_error", "starting the request's state failed", exc=True)
            state, endpoint = integration.skipped_state(), False
        g.uptake = state
        g._uptake_token = publish(state)
        if not endpoint:
            return None
        declared = request.content_length
        body = None if (declared or 0) > MAX_BODY else b""
        try:
            if body is not None and method == "POST":
                body = request.stream.read(MAX_BODY + 1)
                if declared is not None and len(body) != declared:
                    raise ValueError("the body does not match its Content-Length")
        except Exception:  # a truncated body (the client went away): record nothing
            reply = incomplete_body()
        else:
            reply = integration.endpoint_reply(
                state,
                method=method,
                path=path,
                content_type=request.content_type,
                body=body,
                fetch_site=request.headers.get("Sec-Fetch-Site"),
            )
        g._uptake_endpoint = True
        return Response(reply.body, status=reply.status, headers=list(reply.headers))

    def _begin(
        self, integration: Integration, method: str, path: str, endpoint: bool
    ) -> RequestState:
        if not endpoint and (integration.skips(method, path) or _is_static(request.endpoint)):
            return integration.skipped_state()
        account = None
        if self._account_id is not None:
            account = integration.call_host(self._account_id, request, "account_id")
        cookie = None
        if integration.anonymous_cookie is not None:
            cookie = request.cookies.get(integration.anonymous_cookie)
        session_id = None
        if integration.session_header is not None:
            session_id = request.headers.get(integration.session_header)
        return integration.begin(
            user_id=integration.call_host(self._user_id, request, "user_id"),
            cookie=cookie,
            account_id=account,
            session=session_id,
            mint=not endpoint,
        )

    def _after(self, response: Response) -> Response:
        state = g.get("uptake")
        if not isinstance(state, RequestState) or state.skipped or g.get("_uptake_endpoint"):
            return response
        g._uptake_status = response.status_code
        integration: Integration = current_app.extensions[_EXTENSION]
        for name, value in integration.response_headers(state, secure=request.is_secure):
            response.headers.add(name, value)
        return response

    def _teardown(self, exc: BaseException | None) -> None:
        token = g.pop("_uptake_token", None)
        try:
            state = g.get("uptake")
            done = g.get("_uptake_done") or g.get("_uptake_endpoint")
            if isinstance(state, RequestState) and not done:
                g._uptake_done = True  # stream_with_context tears down a second time
                status = g.get("_uptake_status")
                rule = request.url_rule
                current_app.extensions[_EXTENSION].finish(
                    state,
                    path=request.path,
                    method=request.method,
                    status=500 if exc is not None and status is None else status,
                    route_name=request.endpoint,
                    route=rule.rule if rule is not None else None,
                    error=exc is not None,
                )
        finally:
            if token is not None:
                reset(token)


def _is_static(endpoint: str | None) -> bool:
    return endpoint is not None and (endpoint == "static" or endpoint.endswith(".static"))
