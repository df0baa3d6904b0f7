"""The Flask extension, through Flask's own test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, Response, g, render_template_string, stream_with_context
from flask import request as flask_request

import uptake
from uptake.integrations import current_state
from uptake.integrations.flask import Uptake
from uptake.testing import capture_events

from .integrations_helpers import HOSTILE_IDS, features, make_client


def make_app(client: uptake.Client, **options: Any) -> Flask:
    app = Flask(__name__)
    app.testing = True
    app.secret_key = "test"
    options.setdefault("user_id", lambda request: request.headers.get("X-User"))
    options.setdefault("features", {"dashboard": "dashboard", "/reports/*": "reports"})
    Uptake(app, client, **options)

    @app.get("/")
    def dashboard() -> str:
        g.uptake.track("Dashboard Viewed")
        return render_template_string(
            "{{ g.uptake.user_id }}:{% for n in uptake_nudges() %}{{ n.name }}{% endfor %}"
        )

    @app.get("/reports/<int:n>")
    async def report(n: int) -> dict[str, Any]:
        state = current_state()
        assert state is not None
        return {"user": state.user_id, "nudges": [x.name for x in state.nudges]}

    @app.get("/reports/<int:n>/stream")
    def stream(n: int) -> Response:
        @stream_with_context
        def chunks() -> Iterator[str]:
            for i in range(3):
                yield f"{g.uptake.user_id}{i};"

        return Response(chunks())

    @app.get("/reports/<int:n>/boom")
    def boom(n: int) -> str:
        raise ZeroDivisionError

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


@pytest.fixture
def client() -> uptake.Client:
    return make_client()


def test_endpoints_and_paths_map_to_features_and_templates_get_nudges(
    client: uptake.Client,
) -> None:
    app = make_app(client, nudges_header="X-Uptake-Nudges")
    http = app.test_client()
    with capture_events() as events:
        assert http.get("/", headers={"X-User": "u1"}).text == "u1:"
        second = http.get("/", headers={"X-User": "u1"})
        assert http.get("/reports/2", headers={"X-User": "u1"}).json == {
            "user": "u1",
            "nudges": ["try_reports"],
        }
        http.get("/health", headers={"X-User": "u1"})
        http.get("/static/app.css", headers={"X-User": "u1"})
    assert second.text == "u1:try_reports"  # tracked, then read, in the same request
    assert second.headers["X-Uptake-Nudges"] == "try_reports"
    used = features(events)
    assert [e["properties"]["feature"] for e in used] == ["dashboard", "dashboard", "reports"]
    assert used[2]["properties"]["route"] == "/reports/<int:n>"
    assert current_state() is None


def test_a_streamed_response_keeps_working(client: uptake.Client) -> None:
    http = make_app(client).test_client()
    with capture_events() as events:
        response = http.get("/reports/1/stream", headers={"X-User": "u1"})
        assert response.text == "u10;u11;u12;"
    assert len(features(events)) == 1


def test_an_exception_in_a_view_is_recorded_and_re_raised(client: uptake.Client) -> None:
    http = make_app(client).test_client()
    with capture_events() as events, pytest.raises(ZeroDivisionError):
        http.get("/reports/1/boom", headers={"X-User": "u1"})
    [event] = features(events)
    assert event["properties"]["status"] == 500 and event["properties"]["error"] is True
    assert current_state() is None


def test_an_exception_handled_by_flask_is_recorded_as_a_500(client: uptake.Client) -> None:
    app = make_app(client)
    app.testing = False
    with capture_events() as events:
        assert app.test_client().get("/reports/1/boom", headers={"X-User": "u1"}).status_code == 500
    [event] = features(events)
    assert event["properties"]["status"] == 500 and event["properties"]["error"] is True


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_a_malicious_user_header_is_dropped(client: uptake.Client, hostile: str) -> None:
    app = make_app(client, anonymous_cookie=None, user_id=lambda request: request.args.get("user"))
    with capture_events() as events:
        response = app.test_client().get("/reports/1", query_string={"user": hostile})
    assert response.status_code == 200 and response.json == {"user": None, "nudges": []}
    assert features(events) == []


def test_the_default_identity_is_the_session_user_id(client: uptake.Client) -> None:
    app = Flask(__name__)
    app.secret_key = "test"
    Uptake(app, client, features={"/*": "all"})

    @app.get("/login")
    def login() -> str:
        from flask import session

        session["user_id"] = 42
        return "in"

    @app.get("/me")
    def me() -> str:
        return str(g.uptake.user_id)

    http = app.test_client()
    with capture_events():
        assert http.get("/me").text == "None"
        http.get("/login")
        assert http.get("/me").text == "42"


def test_the_endpoint_anonymous_cookie_and_alias(client: uptake.Client) -> None:
    http = make_app(client).test_client()
    with capture_events() as events:
        http.get("/")
        http.get("/")
        anon = http.get_cookie("uptake_anon")
        assert anon is not None
        listed = http.get("/uptake/nudges")
        dismissed = http.post("/uptake/nudges/try_reports/dismissed", json={"snooze_seconds": 5})
        bad = http.post("/uptake/nudges/try_reports/dismissed", data="x", content_type="text/plain")
        big = http.post(
            "/uptake/nudges/try_reports/shown", data=b"{" * 10_000, content_type="application/json"
        )
        http.get("/", headers={"X-User": "u1"})
    assert [n["name"] for n in listed.json["nudges"]] == ["try_reports"]
    assert (dismissed.status_code, bad.status_code, big.status_code) == (204, 415, 413)
    assert http.get_cookie("uptake_anon") is None
    assert [
        (e["type"], e.get("userId"), e.get("anonymousId"))
        for e in events
        if e["type"] == "identify"
    ] == [("identify", "u1", anon.value)]
    assert "Nudge Snoozed" in [e.get("event") for e in events]


def test_init_app_twice_is_harmless_and_a_client_is_required(client: uptake.Client) -> None:
    app = make_app(client)
    Uptake(app, client)
    with capture_events() as events:
        app.test_client().get("/reports/1", headers={"X-User": "u1"})
    assert len(features(events)) == 1
    with pytest.raises(uptake.ConfigurationError):
        Uptake(Flask(__name__))
    factory = Uptake(client=client)
    later = Flask(__name__)
    factory.init_app(later)
    assert Uptake.integration(later).client is client


def test_sdk_failures_never_break_a_request(
    client: uptake.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(client, "feature_used", broken)
    monkeypatch.setattr(client, "pending_nudges", broken)
    app = make_app(client)
    assert app.test_client().get("/reports/1", headers={"X-User": "u1"}).json == {
        "user": "u1",
        "nudges": [],
    }
    assert Uptake.integration(app).dropped == {"sdk_error": 1, "nudges_error": 1}


def test_a_hundred_parallel_requests(client: uptake.Client) -> None:
    app = make_app(client, features={"echo": "echo"})
    barrier = threading.Barrier(10)

    @app.get("/echo")
    def echo() -> str:
        barrier.wait(timeout=10)  # ten requests in flight at once
        return g.uptake.user_id or ""

    def get(i: int) -> str:
        return app.test_client().get("/echo", headers={"X-User": f"user-{i}"}).text

    with capture_events() as events, ThreadPoolExecutor(10) as pool:
        bodies = list(pool.map(get, range(100)))
    assert bodies == [f"user-{i}" for i in range(100)]
    assert sorted(e["userId"] for e in features(events)) == sorted(f"user-{i}" for i in range(100))


def test_the_endpoint_refuses_cross_site_and_truncated_posts(client: uptake.Client) -> None:
    http = make_app(client).test_client()
    url = "/uptake/nudges/try_reports/dismissed"
    with capture_events() as events:
        cross = http.post(url, json={}, headers={"X-User": "u1", "Sec-Fetch-Site": "cross-site"})
        truncated = http.post(
            url,
            data=b'{"snooze',
            content_type="application/json",
            headers={"X-User": "u1", "Content-Length": "22"},
        )
        ok = http.post(url, json={}, headers={"X-User": "u1", "Sec-Fetch-Site": "same-origin"})
    assert (cross.status_code, truncated.status_code, ok.status_code) == (403, 400, 204)
    assert [e["event"] for e in events] == ["Nudge Dismissed"]


def test_host_functions_get_the_request_itself_not_the_proxy(client: uptake.Client) -> None:
    app = Flask(__name__)
    given: list[Any] = []
    Uptake(
        app,
        client,
        user_id=lambda request: given.append(request) or "u1",
        account_id=lambda request: given.append(request) or "acme",
        features={"/*": "all"},
    )

    @app.get("/x")
    def view() -> str:
        given.append(flask_request._get_current_object())  # type: ignore[attr-defined]
        return "ok"

    with capture_events() as events:
        assert app.test_client().get("/x").status_code == 200
    assert len(given) == 3 and given[0] is given[1] is given[2]
    assert type(given[0]) is app.request_class
    [event] = features(events)
    assert event["userId"] == "u1" and event["context"]["groupId"] == "acme"
