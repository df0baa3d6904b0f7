"""What every framework integration shares, free of any framework import.

The adapters (``wsgi``, ``asgi``, ``django``, ``flask``, ``fastapi``) translate their
framework's request into a few strings and hand them to an :class:`Integration`, which
decides everything else: whether the request is skipped, who makes it (sanitised user id,
anonymous cookie, the alias at login), which feature it uses, the response cookies and
headers, the event recorded at the end, and the JSON nudge endpoint.

The answers go into the request's :class:`~uptake.integrations.RequestState`
(``_state``); the settings come from one :class:`IntegrationOptions` (``_options``).
"""

from __future__ import annotations

import fnmatch
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..client import Client
from ..errors import ConfigurationError
from ._endpoint import MAX_BODY, Reply, answer, error
from ._options import (
    DEFAULT_SKIP_METHODS,
    DEFAULT_SKIP_PATHS,
    IntegrationOptions,
    OptionsKwargs,
    resolve_options,
)
from ._state import (
    RequestState,
    _current,
    activate,
    current_nudges,
    current_state,
    logger,
    off_loop,
    off_loop_for,
    publish,
    reset,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_SKIP_METHODS",
    "DEFAULT_SKIP_PATHS",
    "MAX_BODY",
    "MAX_ID_LENGTH",
    "Integration",
    "IntegrationOptions",
    "Reply",
    "RequestState",
    "_current",
    "activate",
    "cookie_value",
    "current_nudges",
    "current_state",
    "logger",
    "off_loop",
    "off_loop_for",
    "publish",
    "reset",
]

#: Longest user, account or anonymous id taken from a request; longer ones are dropped.
MAX_ID_LENGTH = 256
#: Lifetime of the anonymous id cookie, in seconds (one year).
COOKIE_MAX_AGE = 365 * 24 * 3600
_LOG_EVERY_S = 60.0
_ALIASES_KEPT = 10_000
#: Paths whose routing answers (skipped? which feature?) are remembered, and the longest
#: path remembered: an app's paths repeat, so most requests skip the pattern matching.
_PATHS_KEPT = 4096
_PATH_KEPT_LENGTH = 256

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ANON = re.compile(r"[A-Za-z0-9_-]{8,64}\Z")
_SESSION = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")


class Integration:
    """The framework-free decisions of one middleware instance. Thread-safe.

    Args:
        client: The :class:`~uptake.Client` events go to.
        options: The settings (:class:`IntegrationOptions`); keyword arguments named
            after its fields replace them.
    """

    def __init__(
        self,
        client: Client,
        options: IntegrationOptions | None = None,
        **overrides: Unpack[OptionsKwargs],
    ) -> None:
        if not isinstance(client, Client):
            raise ConfigurationError(f"client must be an uptake.Client, not {client!r}")
        options = resolve_options(options, **overrides)
        self.client = client
        self.options = options
        self._routes: dict[str, str] = {}
        self._globs: list[tuple[Callable[[str], object], str]] = []
        for key, feature in options.features.items():
            if "/" in key or any(c in key for c in "*?["):
                self._globs.append((re.compile(fnmatch.translate(key)).match, feature))
            else:
                self._routes[key] = feature
        self.skip_paths = options.skip_paths
        self._skip = _compile_any(self.skip_paths)
        self.skip_methods = frozenset(options.skip_methods)
        self.anonymous_cookie = options.anonymous_cookie
        self.nudges_header = options.nudges_header
        self.session_header = session_header = options.session_header
        self.session_header_wsgi = (
            None if session_header is None else "HTTP_" + session_header.upper().replace("-", "_")
        )
        self.endpoint = options.endpoint
        self._endpoint_slash = None if self.endpoint is None else self.endpoint + "/"
        nudges = getattr(client, "nudges", None)
        self._nudge_names = frozenset(n.name for n in nudges) if isinstance(nudges, tuple) else None
        self._stats_lock = threading.Lock()
        self._dropped: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}
        self._aliased: OrderedDict[tuple[str, str], None] = OrderedDict()
        #: path -> (skipped by a skip pattern, the feature its patterns give)
        self._paths: dict[str, tuple[bool, str | None]] = {}
        #: True when no response ever gets a header from uptake (no cookie to set or
        #: drop, no nudges header): the adapters then skip building any.
        self.never_adds_headers = self.anonymous_cookie is None and self.nudges_header is None

    # ------------------------------------------------------------------ routing

    def skips(self, method: str, path: str) -> bool:
        """True when the request records nothing (static file, health check, method)."""
        return method.upper() in self.skip_methods or self._path(path)[0]

    def _path(self, path: str) -> tuple[bool, str | None]:
        """Whether ``path`` is skipped, and the feature its patterns map it to (cached)."""
        found = self._paths.get(path)
        if found is None:
            feature = None
            for match, name in self._globs:
                if match(path):
                    feature = name
                    break
            found = (bool(self._skip(path)), feature)
            if len(path) <= _PATH_KEPT_LENGTH:
                if len(self._paths) >= _PATHS_KEPT:
                    self._paths.clear()  # an app with unbounded paths: start over
                self._paths[path] = found
        return found

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
        return self._path(path)[1] if self._globs else None

    # ------------------------------------------------------------------ identity

    def clean_id(self, value: object, what: str) -> str | None:
        """A user, account or anonymous id fit for an event, or None (a counted drop).

        Accepts a non-empty str (at most :data:`MAX_ID_LENGTH` characters, no control
        characters) or an int. Anything else is dropped and counted, never raised.
        """
        if value is None:
            return None
        if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and not _CONTROL.search(value):
            return value  # the usual case, checked at once
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

    def adds_headers(self, state: RequestState) -> bool:
        """True when :meth:`response_headers` may add a header (cheap: no store read)."""
        if state.skipped or self.never_adds_headers:
            return False
        return (
            self.nudges_header is not None
            or state.new_anonymous
            or (state.forget_anonymous and self.anonymous_cookie is not None)
        )

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
        if not self.adds_headers(state):
            return []
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
            # (Looked up now: a view may set or clear it while its response streams.)
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


def _compile_any(globs: tuple[str, ...]) -> Callable[[str], object]:
    if not globs:
        return lambda path: None
    return re.compile("|".join(fnmatch.translate(g) for g in globs)).match


def _is_uuid(value: object) -> bool:
    return type(value).__name__ == "UUID" and type(value).__module__ == "uuid"
