"""What every framework integration shares, free of any framework import.

The adapters (``wsgi``, ``asgi``, ``django``, ``flask``, ``fastapi``) translate their
framework's request into a few strings and hand them to an :class:`Integration`, which
decides everything else: whether the request is skipped, who makes it (sanitised user id,
anonymous cookie, the alias at login), which feature it uses, the response cookies and
headers, the event recorded at the end, and the JSON nudge endpoint.

One :class:`RequestState` per request holds the answers. It is published in one
ContextVar for the length of the request (set, then reset in ``finally``) and mutated in
place, never re-set, so threads and tasks the request starts see the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import logging
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import attrs

from ..client import Client
from ..errors import ConfigurationError
from ..rules.nudges import NudgeFired
from ._endpoint import MAX_BODY, Reply, answer, error

__all__ = [
    "DEFAULT_SKIP_METHODS",
    "DEFAULT_SKIP_PATHS",
    "MAX_BODY",
    "MAX_ID_LENGTH",
    "Integration",
    "Reply",
    "RequestState",
    "activate",
    "cookie_value",
    "current_nudges",
    "current_state",
    "off_loop",
]

T = TypeVar("T")

logger = logging.getLogger("uptake.integrations")

#: Paths that never record anything: static files, health checks, browser probes.
DEFAULT_SKIP_PATHS: tuple[str, ...] = (
    "/static/*",
    "/favicon.ico",
    "/robots.txt",
    "/health",
    "/healthz",
    "/livez",
    "/readyz",
    "/ping",
    "*.css",
    "*.js",
    "*.map",
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.svg",
    "*.ico",
    "*.webp",
    "*.woff",
    "*.woff2",
)
#: Methods that never record anything (no one uses a feature with them).
DEFAULT_SKIP_METHODS: tuple[str, ...] = ("HEAD", "OPTIONS")

#: Longest user, account or anonymous id taken from a request; longer ones are dropped.
MAX_ID_LENGTH = 256
#: Lifetime of the anonymous id cookie, in seconds (one year).
COOKIE_MAX_AGE = 365 * 24 * 3600
_LOG_EVERY_S = 60.0
_ALIASES_KEPT = 10_000

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ANON = re.compile(r"[A-Za-z0-9_-]{8,64}\Z")
_SESSION = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+\Z")
_NO_NUDGES: list[NudgeFired] = []


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
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
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
            with self._lock:
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
        return await off_loop(lambda: self.nudges)

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
        client.track(
            self.user_id,
            event,
            properties,
            account_id=self.account_id,
            anonymous_id=self.anonymous_id if self.user_id is None else None,
            context=None if self.session_id is None else {"sessionId": self.session_id},
        )

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
    token = _current.set(state)
    try:
        yield state
    finally:
        reset(token)


def reset(token: contextvars.Token[RequestState | None]) -> None:
    """Undo one ``_current.set``; never raises (a token from another context is ignored)."""
    try:
        _current.reset(token)
    except ValueError:  # set in another context (a framework moved the request)
        _current.set(None)


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


class Integration:
    """The framework-free decisions of one middleware instance. Thread-safe.

    Args:
        client: The :class:`~uptake.Client` events go to.
        features: Maps routes to feature names: a key containing ``/`` or a glob
            character is an :mod:`fnmatch` pattern over the path (``"/reports/*"``), any
            other key a route name (``"reports:detail"``, ``"reports.detail"``,
            ``"list_reports"``). Route names are tried first, then patterns in order.
        skip_paths: Path patterns that record nothing (default
            :data:`DEFAULT_SKIP_PATHS`).
        skip_methods: HTTP methods that record nothing (default ``HEAD``, ``OPTIONS``).
        anonymous_cookie: The cookie holding a visitor's anonymous id; ``None``: visitors
            who are not signed in are not tracked.
        nudges_header: A response header listing the pending nudges' names (e.g.
            ``"X-Uptake-Nudges"``); ``None`` (the default): no header and no read unless
            the page asks for the nudges.
        endpoint: The path prefix of the JSON nudge endpoint; ``None`` turns it off.
        session_header: A request header whose value (the front end's session id) is
            used as the events' session instead of server-side sessions.
    """

    def __init__(
        self,
        client: Client,
        *,
        features: Mapping[str, str] | None = None,
        skip_paths: Iterable[str] = DEFAULT_SKIP_PATHS,
        skip_methods: Iterable[str] = DEFAULT_SKIP_METHODS,
        anonymous_cookie: str | None = "uptake_anon",
        nudges_header: str | None = None,
        endpoint: str | None = "/uptake",
        session_header: str | None = "X-Uptake-Session",
    ) -> None:
        if not isinstance(client, Client):
            raise ConfigurationError(f"client must be an uptake.Client, not {client!r}")
        self.client = client
        self._routes: dict[str, str] = {}
        self._globs: list[tuple[Callable[[str], object], str]] = []
        for key, feature in _check_features(features).items():
            if "/" in key or any(c in key for c in "*?["):
                self._globs.append((re.compile(fnmatch.translate(key)).match, feature))
            else:
                self._routes[key] = feature
        if isinstance(skip_paths, str) or isinstance(skip_methods, str):
            raise ConfigurationError("skip_paths and skip_methods must be lists, not strings")
        self.skip_paths = tuple(skip_paths)
        self._skip = _compile_any(self.skip_paths)
        self.skip_methods = frozenset(m.upper() for m in skip_methods)
        if anonymous_cookie is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", anonymous_cookie):
            raise ConfigurationError(f"anonymous_cookie is not a cookie name: {anonymous_cookie!r}")
        self.anonymous_cookie = anonymous_cookie
        for name, value in (("nudges_header", nudges_header), ("session_header", session_header)):
            if value is not None and not _HEADER_NAME.match(value):
                raise ConfigurationError(f"{name} is not a header name: {value!r}")
        self.nudges_header = nudges_header
        self.session_header = session_header
        self.session_header_wsgi = (
            None if session_header is None else "HTTP_" + session_header.upper().replace("-", "_")
        )
        if endpoint is not None:
            if not isinstance(endpoint, str) or not endpoint.startswith("/"):
                raise ConfigurationError(f"endpoint must be a path such as '/uptake': {endpoint!r}")
            endpoint = endpoint.rstrip("/")
        self.endpoint = endpoint
        self._endpoint_slash = None if endpoint is None else endpoint + "/"
        nudges = getattr(client, "nudges", None)
        self._nudge_names = frozenset(n.name for n in nudges) if isinstance(nudges, tuple) else None
        self._stats_lock = threading.Lock()
        self._dropped: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}
        self._aliased: OrderedDict[tuple[str, str], None] = OrderedDict()

    # ------------------------------------------------------------------ routing

    def skips(self, method: str, path: str) -> bool:
        """True when the request records nothing (static file, health check, method)."""
        return method.upper() in self.skip_methods or bool(self._skip(path))

    def is_endpoint(self, path: str) -> bool:
        """True when ``path`` belongs to the nudge endpoint."""
        slash = self._endpoint_slash
        return slash is not None and path.startswith(slash)

    def feature_for(self, path: str, route_name: str | None = None) -> str | None:
        """The feature a request uses: by route name first, then by path pattern."""
        if route_name is not None:
            feature = self._routes.get(route_name)
            if feature is not None:
                return feature
        for match, feature in self._globs:
            if match(path):
                return feature
        return None

    # ------------------------------------------------------------------ identity

    def clean_id(self, value: object, what: str) -> str | None:
        """A user, account or anonymous id fit for an event, or None (a counted drop).

        Accepts a non-empty str (at most :data:`MAX_ID_LENGTH` characters, no control
        characters) or an int. Anything else is dropped and counted, never raised.
        """
        if value is None:
            return None
        if isinstance(value, bool):
            self.drop(f"invalid_{what}", f"a {what} that is a bool")
            return None
        if isinstance(value, int):
            return str(value)
        if not isinstance(value, str):
            value = str(value) if _is_uuid(value) else None
            if value is None:
                self.drop(f"invalid_{what}", f"a {what} that is not a string or int")
                return None
        if not value:
            return None
        if len(value) > MAX_ID_LENGTH:
            self.drop(f"invalid_{what}", f"a {what} longer than {MAX_ID_LENGTH} characters")
            return None
        if _CONTROL.search(value):
            self.drop(f"invalid_{what}", f"a {what} with control characters")
            return None
        return value

    def call_host(self, func: Callable[[Any], object], request: object, what: str) -> object:
        """Call a host identity function; an exception is a counted drop (None)."""
        try:
            return func(request)
        except Exception:
            self.drop(f"{what}_error", f"the {what} function raised", exc=True)
            return None

    def begin(
        self,
        *,
        user_id: object,
        cookie: str | None,
        account_id: object = None,
        session: str | None = None,
        mint: bool = True,
    ) -> RequestState:
        """Start a request's state from what the host and the request say. Never raises.

        Args:
            user_id: What the host's identity function returned.
            cookie: The anonymous id cookie's value, if any.
            account_id: What the host's account function returned.
            session: The session header's value, if any.
            mint: Give an unknown visitor a fresh anonymous id (not for the endpoint).
        """
        uid = self.clean_id(user_id, "user_id")
        account = self.clean_id(account_id, "account_id")
        anon = None
        if self.anonymous_cookie is not None and cookie:
            anon = cookie if _ANON.match(cookie) else None
        state = RequestState(
            user_id=uid,
            anonymous_id=anon,
            account_id=account,
            session_id=session if session and _SESSION.match(session) else None,
            client=self.client,
            integration=self,
        )
        if uid is not None and anon is not None:
            self._alias(uid, anon)
            state.forget_anonymous = True
        elif uid is None and anon is None and mint and self.anonymous_cookie is not None:
            state.anonymous_id = secrets.token_hex(16)
            state.new_anonymous = True
        return state

    def skipped_state(self) -> RequestState:
        """The state of a request uptake ignores: nobody, no nudges."""
        return RequestState(skipped=True, integration=self)

    def _alias(self, user_id: str, anonymous_id: str) -> None:
        """Tie a visitor's anonymous history to the user who just signed in, once."""
        key = (anonymous_id, user_id)
        with self._stats_lock:
            if key in self._aliased:
                return
            self._aliased[key] = None
            if len(self._aliased) > _ALIASES_KEPT:
                self._aliased.popitem(last=False)
        try:
            self.client.identify(user_id, anonymous_id=anonymous_id)
        except Exception:
            self.drop("sdk_error", "identify at sign-in failed", exc=True)

    # ------------------------------------------------------------------ response

    def cookie_headers(self, state: RequestState, *, secure: bool) -> list[tuple[str, str]]:
        """``Set-Cookie`` headers for the anonymous id: set a fresh one, or drop it."""
        name = self.anonymous_cookie
        if name is None or state.skipped:
            return []
        flags = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
        if state.new_anonymous and state.anonymous_id is not None:
            return [("Set-Cookie", f"{name}={state.anonymous_id}; Max-Age={COOKIE_MAX_AGE}{flags}")]
        if state.forget_anonymous:
            return [("Set-Cookie", f"{name}=; Max-Age=0{flags}")]
        return []

    def nudges_header_value(self, state: RequestState) -> str | None:
        """The value of the nudges header (the pending nudges' names), or None."""
        if self.nudges_header is None or state.skipped:
            return None
        try:
            return ",".join(quote(n.name, safe="") for n in state.nudges)
        except Exception:
            self.drop("sdk_error", "building the nudges header failed", exc=True)
            return None

    def response_headers(self, state: RequestState, *, secure: bool) -> list[tuple[str, str]]:
        """Every header uptake adds to a response. Never raises."""
        try:
            headers = self.cookie_headers(state, secure=secure)
            value = self.nudges_header_value(state)
            if value is not None and self.nudges_header is not None:
                headers.append((self.nudges_header, value))
            return headers
        except Exception:
            self.drop("sdk_error", "building response headers failed", exc=True)
            return []

    # ------------------------------------------------------------------ recording

    def records(self, state: RequestState, path: str, route_name: str | None = None) -> bool:
        """True when :meth:`finish` would record an event (cheap: no store access)."""
        if state.skipped or state.client is None or state.subject is None:
            return False
        return bool(state.feature) or self.feature_for(path, route_name) is not None

    def finish(
        self,
        state: RequestState,
        *,
        path: str,
        method: str,
        status: int | None,
        route_name: str | None = None,
        route: str | None = None,
        error: bool = False,
    ) -> None:
        """Record the request's feature use, if it maps to one. Never raises.

        ``status=None`` (the app never sent a response) records status 500 with
        ``error: true``. Runs the client's rules, which may write the rule store: async
        adapters call it through :func:`off_loop`.
        """
        if state.skipped or state.client is None:
            return
        if status is None:
            error = True
        try:
            feature = state.feature or self.feature_for(path, route_name)
            if feature is None or state.subject is None:
                return
            properties: dict[str, Any] = {"method": method, "status": status or 500}
            if route is not None:
                properties["route"] = route
            if error:
                properties["error"] = True
            context = None if state.session_id is None else {"sessionId": state.session_id}
            state.client.feature_used(
                state.user_id,
                feature,
                properties,
                anonymous_id=state.anonymous_id if state.user_id is None else None,
                account_id=state.account_id,
                context=context,
            )
        except Exception:
            self.drop("sdk_error", "recording the request's feature failed", exc=True)

    # ------------------------------------------------------------------ endpoint

    def endpoint_reply(
        self,
        state: RequestState,
        *,
        method: str,
        path: str,
        content_type: str | None,
        body: bytes | None,
        fetch_site: str | None = None,
    ) -> Reply:
        """Answer one request to the nudge endpoint. Never raises.

        ``body`` is the request body, read up to ``MAX_BODY + 1`` bytes, or None when it
        is known to be larger than :data:`MAX_BODY`. ``fetch_site`` is the request's
        ``Sec-Fetch-Site`` header: a ``cross-site`` POST is refused (403).

        Reads or writes the rule store: async adapters call it through :func:`off_loop`.

        ``GET {endpoint}/nudges`` lists the pending nudges; ``POST
        {endpoint}/nudges/{name}/shown|clicked|dismissed`` records an outcome (dismissed
        takes an optional ``{"snooze_seconds": N}``). A POST must be sent as
        ``application/json`` (an empty body is fine), which a cross-site form cannot do.
        """
        assert self.endpoint is not None  # only called for endpoint paths
        try:
            return answer(
                self.client,
                self._nudge_names,
                state,
                method=method.upper(),
                path=path[len(self.endpoint) :],
                content_type=content_type,
                body=body,
                fetch_site=fetch_site,
            )
        except Exception:
            self.drop("endpoint_error", "the nudge endpoint failed", exc=True)
            return error(500, "internal error")

    # ------------------------------------------------------------------ drops

    @property
    def dropped(self) -> dict[str, int]:
        """What was dropped or failed, by reason (invalid ids, SDK errors). Thread-safe."""
        with self._stats_lock:
            return dict(self._dropped)

    def drop(self, reason: str, detail: str, *, exc: bool = False) -> None:
        """Count a drop and log it, at most once a minute per reason. Never raises."""
        now = time.monotonic()
        with self._stats_lock:
            self._dropped[reason] += 1
            last = self._logged_at.get(reason)
            quiet = last is not None and now - last < _LOG_EVERY_S
            if not quiet:
                self._logged_at[reason] = now
                count = self._dropped[reason]
        if not quiet:
            logger.warning(
                "uptake integration: %s; ignored (%d so far)", detail, count, exc_info=exc
            )


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` request header, or None."""
    if not header or name not in header:
        return None
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


def _check_features(features: Mapping[str, str] | None) -> dict[str, str]:
    if features is None:
        return {}
    if not isinstance(features, Mapping):
        raise ConfigurationError(
            f"features must map routes to feature names, like {{'/reports/*': 'reports'}}, "
            f"not {features!r}"
        )
    checked = {}
    for key, feature in features.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"features keys must be paths or route names, not {key!r}")
        if not isinstance(feature, str) or not feature:
            raise ConfigurationError(f"features[{key!r}] must be a feature name, not {feature!r}")
        checked[key] = feature
    return checked


def _compile_any(globs: tuple[str, ...]) -> Callable[[str], object]:
    for glob in globs:
        if not isinstance(glob, str) or not glob:
            raise ConfigurationError(f"skip_paths must be path patterns, not {glob!r}")
    if not globs:
        return lambda path: None
    return re.compile("|".join(fnmatch.translate(g) for g in globs)).match


def _is_uuid(value: object) -> bool:
    return type(value).__name__ == "UUID" and type(value).__module__ == "uuid"
