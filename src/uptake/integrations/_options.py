"""The settings every framework integration shares: one frozen, checked options object.

Each adapter takes an :class:`IntegrationOptions`, or its fields as keyword arguments
(which build one), or both (the keyword arguments replace those fields)::

    options = IntegrationOptions(features={"/reports/*": "reports"}, nudges_header="X-Nudges")
    app = uptake.integrations.wsgi.UptakeMiddleware(app, client, options)
    app = uptake.integrations.wsgi.UptakeMiddleware(app, client, features={...})  # the same
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict

import attrs

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_SKIP_METHODS",
    "DEFAULT_SKIP_PATHS",
    "IntegrationOptions",
    "OptionsKwargs",
    "resolve_options",
]

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

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+\Z")
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")

#: A host function of the framework's request (environ, scope, Request) returning an id.
IdFunction = Callable[[Any], object]


def _features(value: Mapping[str, str] | None) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"features must map routes to feature names, like {{'/reports/*': 'reports'}}, "
            f"not {value!r}"
        )
    checked = {}
    for key, feature in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"features keys must be paths or route names, not {key!r}")
        if not isinstance(feature, str) or not feature:
            raise ConfigurationError(f"features[{key!r}] must be a feature name, not {feature!r}")
        checked[key] = feature
    return MappingProxyType(checked)


def _skip_paths(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError("skip_paths must be a list of path patterns, not a string")
    paths = tuple(value)
    for glob in paths:
        if not isinstance(glob, str) or not glob:
            raise ConfigurationError(f"skip_paths must be path patterns, not {glob!r}")
    return paths


def _skip_methods(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError("skip_methods must be a list of methods, not a string")
    methods = tuple(value)
    for method in methods:
        if not isinstance(method, str) or not method:
            raise ConfigurationError(f"skip_methods must be HTTP methods, not {method!r}")
    return tuple(m.upper() for m in methods)


def _endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigurationError(f"endpoint must be a path such as '/uptake': {value!r}")
    return value.rstrip("/")


def _check_function(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{attribute.name} must be a function of the request: {value!r}")


def _check_cookie(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not (isinstance(value, str) and _COOKIE_NAME.match(value)):
        raise ConfigurationError(f"anonymous_cookie is not a cookie name: {value!r}")


def _check_header(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not (isinstance(value, str) and _HEADER_NAME.match(value)):
        raise ConfigurationError(f"{attribute.name} is not a header name: {value!r}")


@attrs.frozen(kw_only=True)
class IntegrationOptions:
    """How a framework integration reads requests; the same for every framework.

    Checked when built: a bad value raises :class:`uptake.ConfigurationError` at start-up.
    Immutable; derive a variant with ``attrs.evolve(options, nudges_header=None)``.

    Attributes:
        user_id: A function of the framework's request (the WSGI environ, the ASGI scope,
            Flask's or FastAPI's ``Request``, Django's ``HttpRequest``) returning the
            signed-in user's id (str or int) or None; it may be ``async`` under ASGI,
            FastAPI and Django's async mode. None: the framework's default (``REMOTE_USER``,
            ``scope["user"]``, ``request.user.pk``, Flask-Login or ``session["user_id"]``).
            Ids with control characters or longer than 256 characters are dropped and
            counted, never raised.
        account_id: A function of the request returning the account's id, or None.
        features: Routes to feature names: a key containing ``/`` or a glob character is
            an :mod:`fnmatch` pattern over the path (``"/reports/*"``), any other key a
            route name (Django ``"namespace:name"``, Flask ``"blueprint.endpoint"``,
            Starlette and FastAPI ``name=``). Route names are tried first, then patterns
            in order.
        skip_paths: Path patterns that record nothing (default :data:`DEFAULT_SKIP_PATHS`:
            static files, health checks).
        skip_methods: HTTP methods that record nothing (default ``HEAD``, ``OPTIONS``).
        anonymous_cookie: The cookie holding a visitor's anonymous id; None: visitors who
            are not signed in are not tracked.
        nudges_header: A response header listing the pending nudges' names (e.g.
            ``"X-Uptake-Nudges"``); None (the default): no header, and no store read
            unless the page asks for the nudges.
        endpoint: The path prefix of the JSON nudge endpoint; None turns it off.
        session_header: A request header whose value (the front end's session id) is used
            as the events' session instead of server-side sessions.
    """

    user_id: IdFunction | None = attrs.field(default=None, validator=_check_function)
    account_id: IdFunction | None = attrs.field(default=None, validator=_check_function)
    features: Mapping[str, str] = attrs.field(
        default=None, converter=_features, repr=lambda m: repr(dict(m))
    )
    skip_paths: tuple[str, ...] = attrs.field(default=DEFAULT_SKIP_PATHS, converter=_skip_paths)
    skip_methods: tuple[str, ...] = attrs.field(
        default=DEFAULT_SKIP_METHODS, converter=_skip_methods
    )
    anonymous_cookie: str | None = attrs.field(default="uptake_anon", validator=_check_cookie)
    nudges_header: str | None = attrs.field(default=None, validator=_check_header)
    endpoint: str | None = attrs.field(default="/uptake", converter=_endpoint)
    session_header: str | None = attrs.field(default="X-Uptake-Session", validator=_check_header)


class OptionsKwargs(TypedDict, total=False):
    """The fields of :class:`IntegrationOptions`, as the adapters' keyword arguments."""

    user_id: IdFunction | None
    account_id: IdFunction | None
    features: Mapping[str, str] | None
    skip_paths: Iterable[str]
    skip_methods: Iterable[str]
    anonymous_cookie: str | None
    nudges_header: str | None
    endpoint: str | None
    session_header: str | None


def resolve_options(
    options: IntegrationOptions | None, **overrides: Unpack[OptionsKwargs]
) -> IntegrationOptions:
    """``options`` (default: all defaults) with the keyword arguments given replacing fields.

    Raises:
        ConfigurationError: ``options`` is not an :class:`IntegrationOptions`, or a value
            is invalid.
        TypeError: an unknown keyword argument.
    """
    if options is None:
        return IntegrationOptions(**overrides)
    if not isinstance(options, IntegrationOptions):
        raise ConfigurationError(
            f"options must be an uptake.integrations.IntegrationOptions, not {options!r}"
        )
    return attrs.evolve(options, **overrides) if overrides else options
