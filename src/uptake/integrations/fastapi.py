"""FastAPI: the ASGI middleware, and a dependency returning the request's uptake state.

::

    from fastapi import FastAPI
    from uptake.integrations.fastapi import UptakeMiddleware, UptakeState

    app = FastAPI()
    app.add_middleware(
        UptakeMiddleware,
        client=client,
        user_id=lambda request: request.cookies.get("user"),  # a function of the Request
        features={"/reports/*": "reports", "dashboard": "dashboard"},  # path or route name
    )

    @app.get("/dashboard")
    def dashboard(uptake: UptakeState) -> dict[str, object]:
        return {"nudges": [n.name for n in uptake.nudges]}

The state is also ``request.state.uptake``. Its ``nudges`` are read from the store on
first access: in a ``def`` view that happens in FastAPI's thread pool; in an ``async def``
view, ``await uptake.anudges()`` reads them in a worker thread, off the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import attrs
from fastapi import Depends, Request

from ..client import Client
from . import asgi
from ._core import RequestState, logger
from ._options import IntegrationOptions, OptionsKwargs, resolve_options
from .asgi import ASGIApp, Scope, state_of

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["UptakeMiddleware", "UptakeState", "default_user_id", "uptake_state"]

#: A host function of the request returning an id (or an awaitable of one).
RequestFunction = Callable[[Request], object]


def default_user_id(request: Request) -> object:
    """The authenticated ``request.user``'s identity (``AuthenticationMiddleware``), or None."""
    return asgi.default_user_id(request.scope)


class UptakeMiddleware(asgi.UptakeMiddleware):
    """:class:`uptake.integrations.asgi.UptakeMiddleware` with functions of the Request.

    The ``user_id`` and ``account_id`` of the options receive a Starlette ``Request``
    (and may be async); the default user is ``request.user`` (:func:`default_user_id`).
    Everything else is the ASGI middleware's: ``options`` an
    :class:`~uptake.integrations.IntegrationOptions`, or its fields as keyword arguments.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client,
        options: IntegrationOptions | None = None,
        **overrides: Unpack[OptionsKwargs],
    ) -> None:
        given = resolve_options(options, **overrides)
        user_id = given.user_id or default_user_id
        account_id = given.account_id
        super().__init__(
            app,
            client,
            attrs.evolve(
                given,
                user_id=_of_request(user_id),
                account_id=None if account_id is None else _of_request(account_id),
            ),
        )
        self.options = given


def _of_request(func: Callable[..., object]) -> Callable[[Scope], object]:
    if func is default_user_id:
        return asgi.default_user_id
    if inspect.iscoroutinefunction(func):

        async def call_async(scope: Scope) -> object:
            return await func(Request(scope))

        return call_async

    def call(scope: Scope) -> object:
        return func(Request(scope))

    return call


_warned: list[bool] = []


async def uptake_state(request: Request) -> RequestState:
    """The request's :class:`~uptake.integrations.RequestState`.

    Without the middleware installed it returns an empty state (and logs once).
    """
    state = state_of(request.scope)
    if state is None:
        if not _warned:
            _warned.append(True)
            logger.warning(
                "uptake_state used without uptake's middleware: "
                "app.add_middleware(UptakeMiddleware, client=client)"
            )
        return RequestState(skipped=True)
    return state


#: Annotate a path operation parameter with it: ``def view(uptake: UptakeState)``.
UptakeState = Annotated[RequestState, Depends(uptake_state)]
