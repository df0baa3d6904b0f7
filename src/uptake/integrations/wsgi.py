"""Pure WSGI middleware: sessions, feature events, pending nudges and the nudge endpoint.

Wrap any WSGI application::

    from uptake.integrations.wsgi import UptakeMiddleware

    app = UptakeMiddleware(
        app,
        client,
        user_id=lambda environ: environ.get("REMOTE_USER"),
        features={"/reports/*": "reports"},
    )

The request's :class:`~uptake.integrations.RequestState` is in
``environ["uptake.state"]`` and :func:`~uptake.integrations.current_state`, including
while the response body is iterated. The body's ``close()`` is always forwarded, and the
feature event is recorded once the body is exhausted or closed (after a streamed response
has been sent). A ``wsgi.file_wrapper`` body is returned as is (the server's sendfile
path) and recorded when the server closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ..client import Client
from ._core import (
    MAX_BODY,
    Integration,
    RequestState,
    cookie_value,
    publish,
    reset,
)
from ._endpoint import incomplete_body
from ._options import IntegrationOptions, OptionsKwargs

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from typing_extensions import Unpack

__all__ = ["ENVIRON_KEY", "UptakeMiddleware", "default_user_id"]

#: Where the request's state is kept in the WSGI environ.
ENVIRON_KEY = "uptake.state"


def default_user_id(environ: WSGIEnvironment) -> object:
    """The user the server authenticated (``REMOTE_USER``), or None."""
    return environ.get("REMOTE_USER")


class UptakeMiddleware:
    """Record feature use and expose pending nudges for every request of a WSGI app.

    Thread-safe; holds no per-request state of its own. Wrapping an app twice is
    harmless: the inner middleware sees the outer one's state and stays out of the way.

    Args:
        app: The WSGI application to wrap.
        client: The :class:`~uptake.Client` events go to.
        options: The settings, an :class:`~uptake.integrations.IntegrationOptions`. Its
            ``user_id`` and ``account_id`` are functions of the environ; the default user
            is ``REMOTE_USER`` (:func:`default_user_id`).
        **overrides: Any field of :class:`~uptake.integrations.IntegrationOptions` as a
            keyword argument (``features=``, ``user_id=``...), replacing ``options``'.
    """

    def __init__(
        self,
        app: WSGIApplication,
        client: Client,
        options: IntegrationOptions | None = None,
        **overrides: Unpack[OptionsKwargs],
    ) -> None:
        self.app = app
        self.integration = Integration(client, options, **overrides)
        self.options = self.integration.options
        self._user_id: Callable[[WSGIEnvironment], object] = self.options.user_id or default_user_id
        self._account_id = self.options.account_id

    @property
    def dropped(self) -> dict[str, int]:
        """Ids and SDK failures dropped so far, by reason."""
        return self.integration.dropped

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if ENVIRON_KEY in environ:  # wrapped twice: the outer middleware does the work
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD") or "GET"
        path = environ.get("PATH_INFO") or "/"
        integration = self.integration
        endpoint = integration.is_endpoint(path)
        try:
            state = self._begin(environ, method, path, endpoint)
        except Exception:
            integration.drop("sdk_error", "starting the request's state failed", exc=True)
            state, endpoint = integration.skipped_state(), False
        environ[ENVIRON_KEY] = state
        token = publish(state)
        try:
            if endpoint:
                return self._endpoint(environ, state, method, path, start_response)
            if state.skipped:
                return self.app(environ, start_response)
            response = _Response(integration, state, environ, start_response, method, path)
            try:
                body = self.app(environ, response.start_response)
            except BaseException:
                response.finish(error=True)
                raise
            file_wrapper = environ.get("wsgi.file_wrapper")
            if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
                return _on_close(body, response)  # keep the server's sendfile path
            return _Body(body, response)
        finally:
            reset(token)

    def _begin(
        self, environ: WSGIEnvironment, method: str, path: str, endpoint: bool
    ) -> RequestState:
        integration = self.integration
        if not endpoint and integration.skips(method, path):
            return integration.skipped_state()
        account = None
        if self._account_id is not None:
            account = integration.call_host(self._account_id, environ, "account_id")
        cookie = None
        if integration.anonymous_cookie is not None:
            cookie = cookie_value(environ.get("HTTP_COOKIE"), integration.anonymous_cookie)
        session_key = integration.session_header_wsgi
        return integration.begin(
            user_id=integration.call_host(self._user_id, environ, "user_id"),
            cookie=cookie,
            account_id=account,
            session=environ.get(session_key) if session_key else None,
            mint=not endpoint,
        )

    def _endpoint(
        self,
        environ: WSGIEnvironment,
        state: RequestState,
        method: str,
        path: str,
        start_response: StartResponse,
    ) -> list[bytes]:
        try:
            body = _read_body(environ) if method == "POST" else b""
        except _Incomplete:
            reply = incomplete_body()
        else:
            reply = self.integration.endpoint_reply(
                state,
                method=method,
                path=path,
                content_type=environ.get("CONTENT_TYPE"),
                body=body,
                fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
            )
        headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        start_response(_status_line(reply.status), headers)
        return [reply.body]


class _Response:
    """One request's response: its status, uptake's headers, and the event at the end."""

    __slots__ = ("_done", "_start", "environ", "integration", "method", "path", "state", "status")

    def __init__(
        self,
        integration: Integration,
        state: RequestState,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        method: str,
        path: str,
    ) -> None:
        self.integration = integration
        self.state = state
        self.environ = environ
        self._start = start_response
        self.method = method
        self.path = path
        self.status: int | None = None
        self._done = False

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: Any = None,
    ) -> Callable[[bytes], object]:
        self.status = _status_code(status)
        if self.integration.adds_headers(self.state):
            secure = self.environ.get("wsgi.url_scheme") == "https"
            extra = self.integration.response_headers(self.state, secure=secure)
            if extra:
                headers = [*headers, *extra]
        if exc_info is not None:
            return self._start(status, headers, exc_info)
        return self._start(status, headers)

    def finish(self, *, error: bool = False) -> None:
        if self._done:
            return
        self._done = True
        self.integration.finish(
            self.state,
            path=self.path,
            method=self.method,
            status=500 if error and self.status is None else self.status,
            error=error,
        )


class _Body:
    """The app's response body, passed through chunk by chunk with the state published.

    The request is recorded once the body is exhausted or closed, whichever comes first;
    ``close()`` is always forwarded to the app's iterable.
    """

    __slots__ = ("_iterable", "_iterator", "_response")

    def __init__(self, iterable: Iterable[bytes], response: _Response) -> None:
        self._iterable = iterable
        self._iterator: Iterator[bytes] | None = None
        self._response = response

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        token = publish(self._response.state)
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            return next(self._iterator)
        except StopIteration:
            self._response.finish()  # all sent: record now, close() may come late
            raise
        except BaseException:
            self._response.finish(error=True)
            raise
        finally:
            reset(token)

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._response.finish()


def _on_close(body: Iterable[bytes], response: _Response) -> Iterable[bytes]:
    """A ``wsgi.file_wrapper`` body, returned as is so the server can use sendfile.

    The request is recorded when the server closes it (after the file was sent), or at
    once if its ``close`` cannot be wrapped.
    """
    original = getattr(body, "close", None)

    def close() -> None:
        try:
            if original is not None:
                original()
        finally:
            response.finish()

    try:
        body.close = close  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        response.finish()
    return body


class _Incomplete(Exception):
    """The request body is shorter than its ``CONTENT_LENGTH`` (the client went away)."""


def _read_body(environ: WSGIEnvironment) -> bytes | None:
    """The request body, at most ``MAX_BODY + 1`` bytes; None when it says it is larger.

    Raises:
        _Incomplete: the stream ended before ``CONTENT_LENGTH`` bytes; no outcome is
            recorded from a truncated body.
    """
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        return None
    if length > MAX_BODY:
        return None
    if length < 0:  # no length: only safe to read when the server ends the stream
        return stream.read(MAX_BODY + 1) if environ.get("wsgi.input_terminated") else b""
    try:
        data: bytes = stream.read(length) if length else b""
    except Exception as exc:  # the server saw the client go away
        raise _Incomplete from exc
    if len(data) != length:
        raise _Incomplete
    return data


def _status_code(status: str) -> int | None:
    try:
        return int(status.split(" ", 1)[0])
    except (ValueError, AttributeError):
        return None


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"
