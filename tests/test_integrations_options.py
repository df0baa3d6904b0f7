"""One IntegrationOptions for every adapter; keyword arguments still build and replace it."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import pytest
from fastapi import FastAPI
from flask import Flask

with warnings.catch_warnings():  # a newer Starlette asks for another httpx; this one works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import uptake
from uptake.integrations import DEFAULT_SKIP_PATHS, IntegrationOptions
from uptake.integrations import asgi as uptake_asgi
from uptake.integrations import wsgi as uptake_wsgi
from uptake.integrations._core import Integration
from uptake.integrations.fastapi import UptakeMiddleware as FastAPIMiddleware
from uptake.integrations.flask import Uptake
from uptake.testing import capture_events

from .integrations_helpers import call_wsgi, features, make_client

OPTIONS = IntegrationOptions(
    features={"/reports/*": "reports"},
    skip_paths=["/reports/skip"],
    nudges_header="X-Uptake-Nudges",
    anonymous_cookie=None,
    endpoint="/_uptake/",
)


def signed_in(request: object) -> str:
    return "u1"


# Each adapter, built from OPTIONS plus a keyword argument; returns a GET function.
Get = Callable[[str], tuple[int, dict[str, str], bytes]]


def wsgi_get(client: uptake.Client) -> Get:
    def hello(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = uptake_wsgi.UptakeMiddleware(hello, client, OPTIONS, user_id=signed_in)
    assert app.options == attrs.evolve(OPTIONS, user_id=signed_in)

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        result = call_wsgi(app, path)
        return result.code, {k.lower(): v for k, v in result.headers}, result.body

    return get


def asgi_get(client: uptake.Client) -> Get:
    async def hello(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = uptake_asgi.UptakeMiddleware(hello, client, options=OPTIONS, user_id=signed_in)

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.get(path)

        response = asyncio.run(run())
        return response.status_code, dict(response.headers), response.content

    return get


def fastapi_get(client: uptake.Client) -> Get:
    app = FastAPI()
    app.add_middleware(FastAPIMiddleware, client=client, options=OPTIONS, user_id=signed_in)

    @app.get("/reports/{name}")
    def report(name: str) -> str:
        return "ok"

    http = TestClient(app)

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        response = http.get(path)
        return response.status_code, dict(response.headers), response.content

    return get


def flask_get(client: uptake.Client) -> Get:
    app = Flask(__name__)
    extension = Uptake(app, client, OPTIONS, user_id=signed_in)
    assert extension.options.endpoint == "/_uptake"

    @app.get("/reports/<name>")
    def report(name: str) -> str:
        return "ok"

    http = app.test_client()

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        response = http.get(path)
        return response.status_code, {k.lower(): v for k, v in response.headers}, response.data

    return get


@pytest.mark.parametrize("build", [wsgi_get, asgi_get, fastapi_get, flask_get])
def test_every_adapter_takes_one_options_object(build: Callable[[uptake.Client], Get]) -> None:
    client = make_client()
    get = build(client)
    with capture_events() as events:
        status, headers, _ = get("/reports/1")
        assert status == 200 and headers["x-uptake-nudges"] == ""
        assert "set-cookie" not in headers  # anonymous_cookie=None
        assert get("/reports/skip")[0] == 200  # skip_paths: nothing recorded
        status, _, body = get("/_uptake/nudges")
        assert status == 200 and body.replace(b" ", b"") == b'{"nudges":[]}'
    [used] = features(events)
    assert used["userId"] == "u1" and used["properties"]["feature"] == "reports"


def test_options_are_checked_when_built_and_frozen() -> None:
    with pytest.raises(uptake.ConfigurationError, match="features"):
        IntegrationOptions(features=["/reports/*"])  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="user_id"):
        IntegrationOptions(user_id="request.user")  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="skip_methods"):
        IntegrationOptions(skip_methods="GET")
    options = IntegrationOptions(skip_methods=["get"], endpoint="/u/")
    assert options.skip_methods == ("GET",) and options.endpoint == "/u"
    assert options.skip_paths == DEFAULT_SKIP_PATHS and dict(options.features) == {}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        options.endpoint = "/x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.features["/x"] = "x"  # type: ignore[index]


def test_keyword_arguments_replace_the_options_fields_and_nothing_else() -> None:
    core = Integration(make_client(), OPTIONS, endpoint=None, nudges_header=None)
    assert core.endpoint is None and core.nudges_header is None
    assert core.options.features == OPTIONS.features and core.anonymous_cookie is None
    assert OPTIONS.endpoint == "/_uptake"  # the shared object is untouched


def test_a_wrong_options_object_or_argument_is_refused() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(uptake.ConfigurationError, match="IntegrationOptions"):
        uptake_asgi.UptakeMiddleware(app, make_client(), {"features": {}})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        uptake_asgi.UptakeMiddleware(app, make_client(), feature={})  # type: ignore[call-arg]
