"""The web integrations open client.context() per request: code deep inside needs no ids."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import uptake
from uptake.integrations import asgi as uptake_asgi
from uptake.integrations import wsgi as uptake_wsgi
from uptake.integrations.flask import Uptake
from uptake.testing import capture_events

from .integrations_helpers import call_wsgi

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient


@pytest.fixture
def client() -> Iterator[uptake.Client]:
    client = uptake.Client(send=False, session_events=False)
    yield client
    client.shutdown()


def export_report(client: uptake.Client) -> None:
    """Code far from the request: it knows nothing of users or accounts."""
    client.track("Report Exported", properties={"rows": 3})


def exported(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            e.get("userId"),
            e.get("anonymousId"),
            e["context"].get("groupId"),
            e["context"]["sessionId"],
        )
        for e in events
        if e["event"] == "Report Exported"
    ]


OPTIONS: dict[str, Any] = {
    "account_id": None,
    "features": {},
    "anonymous_cookie": None,
}
HEADERS = {"X-User": "u1", "X-Account": "acme", "X-Uptake-Session": "s-42"}


def test_wsgi(client: uptake.Client) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        export_report(client)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = uptake_wsgi.UptakeMiddleware(
        app,
        client,
        user_id=lambda environ: environ.get("HTTP_X_USER"),
        account_id=lambda environ: environ.get("HTTP_X_ACCOUNT"),
        features={},
    )
    with capture_events(client) as events:
        call_wsgi(middleware, "/export", headers=HEADERS)
    assert exported(events) == [("u1", None, "acme", "s-42")]
    assert client.current_context() is None


def test_an_event_for_another_user_is_not_in_the_requests_session(
    client: uptake.Client,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        client.track("u42", "Plan Changed")  # an admin acting on a customer's account
        start_response("200 OK", [])
        return [b"ok"]

    middleware = uptake_wsgi.UptakeMiddleware(
        app,
        client,
        user_id=lambda environ: environ.get("HTTP_X_USER"),
        account_id=lambda environ: environ.get("HTTP_X_ACCOUNT"),
        features={},
    )
    with capture_events(client) as events:
        call_wsgi(middleware, "/admin", headers=HEADERS)
    (changed,) = [e for e in events if e["event"] == "Plan Changed"]
    assert changed["userId"] == "u42"
    assert changed["context"].get("groupId") is None  # acme is u1's account
    assert changed["context"]["sessionId"] != "s-42"  # and s-42 u1's session


def test_wsgi_anonymous_visitor(client: uptake.Client) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        export_report(client)
        start_response("200 OK", [])
        return [b"ok"]

    middleware = uptake_wsgi.UptakeMiddleware(app, client, user_id=lambda environ: None)
    with capture_events(client) as events:
        result = call_wsgi(middleware, "/export", headers={"Cookie": "uptake_anon=visitor-123456"})
    assert result.status.startswith("200")
    assert [(e.get("userId"), e.get("anonymousId")) for e in events] == [(None, "visitor-123456")]


def test_flask(client: uptake.Client) -> None:
    from flask import request

    app = Flask(__name__)
    Uptake(
        app,
        client,
        user_id=lambda req: req.headers.get("X-User"),
        account_id=lambda req: req.headers.get("X-Account"),
        features={},
    )

    @app.route("/export")
    def export() -> str:
        assert request.path == "/export"
        export_report(client)
        return "ok"

    with capture_events(client) as events:
        assert app.test_client().get("/export", headers=HEADERS).status_code == 200
    assert exported(events) == [("u1", None, "acme", "s-42")]


def _asgi_user(conn: Any) -> str | None:
    headers = conn["headers"] if isinstance(conn, dict) else conn.scope["headers"]
    return dict(headers).get(b"x-user", b"").decode() or None


def _asgi_account(conn: Any) -> str | None:
    headers = conn["headers"] if isinstance(conn, dict) else conn.scope["headers"]
    return dict(headers).get(b"x-account", b"").decode() or None


def test_starlette_async_and_sync_views(client: uptake.Client) -> None:
    async def async_view(request: Request) -> PlainTextResponse:
        export_report(client)
        return PlainTextResponse("ok")

    def sync_view(request: Request) -> PlainTextResponse:  # run in a worker thread
        export_report(client)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/a", async_view), Route("/s", sync_view)])
    middleware = uptake_asgi.UptakeMiddleware(
        app, client, user_id=_asgi_user, account_id=_asgi_account, features={}
    )
    transport = httpx.ASGITransport(app=middleware)
    other = {**HEADERS, "X-User": "u2", "X-Account": "beta", "X-Uptake-Session": "s-7"}

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/a", headers=HEADERS)).status_code == 200
            assert (await http.get("/s", headers=other)).status_code == 200

    with capture_events(client) as events:
        asyncio.run(main())
    assert exported(events) == [("u1", None, "acme", "s-42"), ("u2", None, "beta", "s-7")]


def test_fastapi(client: uptake.Client) -> None:
    app = FastAPI()

    @app.get("/export")
    async def export() -> dict[str, str]:
        export_report(client)
        return {"ok": "yes"}

    app.add_middleware(
        uptake_asgi.UptakeMiddleware,
        client=client,
        user_id=_asgi_user,
        account_id=_asgi_account,
        features={},
    )
    with capture_events(client) as events, TestClient(app) as http:
        assert http.get("/export", headers=HEADERS).status_code == 200
    assert exported(events) == [("u1", None, "acme", "s-42")]
