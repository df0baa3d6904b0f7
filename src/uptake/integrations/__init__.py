"""Web framework integrations: one middleware line for sessions, feature events and nudges.

- :mod:`uptake.integrations.wsgi`: ``UptakeMiddleware`` for any WSGI app.
- :mod:`uptake.integrations.asgi`: ``UptakeMiddleware`` for any ASGI 3 app.
- :mod:`uptake.integrations.django`: ``UptakeMiddleware`` configured from ``settings.UPTAKE``.
- :mod:`uptake.integrations.flask`: ``Uptake(app, client)``.
- :mod:`uptake.integrations.fastapi`: the ASGI middleware and a ``uptake_state`` dependency.

Every adapter takes one :class:`IntegrationOptions` (the user and account functions, the
feature map, what is skipped, the cookie, the header, the endpoint), or its fields as
keyword arguments. This package imports no framework; each module imports only its own.
"""

from ._core import (
    DEFAULT_SKIP_METHODS,
    DEFAULT_SKIP_PATHS,
    MAX_BODY,
    MAX_ID_LENGTH,
    IntegrationOptions,
    RequestState,
    current_nudges,
    current_state,
)

__all__ = [  # noqa: RUF022 (plainly sorted, as a test asserts)
    "DEFAULT_SKIP_METHODS",
    "DEFAULT_SKIP_PATHS",
    "IntegrationOptions",
    "MAX_BODY",
    "MAX_ID_LENGTH",
    "RequestState",
    "current_nudges",
    "current_state",
]
