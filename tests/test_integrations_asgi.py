"""The pure ASGI middleware, raw and under Starlette and FastAPI (their test clients)."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

with warnings.catch_warnings():  # a newer Starlette asks for another httpx; this one works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

import uptake
from uptake.integrations import RequestState, current_state
from uptake.integrations import asgi as uptake_asgi
from uptake.integrations.fastapi import UptakeMiddleware, UptakeState, uptake_state
from uptake.testing import capture_events

from .integrations_helpers import (
    HOSTILE_IDS,
    GatedStore,
    features,
    gated_client,
    make_client,
)

FEATURES = {"/reports/*": "reports", "dashboard": "dashboard"}


class HeaderAuth(AuthenticationBackend):
    """Signs in whoever the X-User header names (a test double for a real backend)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        user = conn.headers.get("x-user")
        return None if user is None else (AuthCredentials(["authenticated"]), SimpleUser(user))


def fastapi_app(client: uptake.Client, **options: Any) -> FastAPI:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    app.state.lifespan_events = events
    options.setdefault("features", FEATURES)
    app.add_middleware(UptakeMiddleware, client=client, **options)
    app.add_middleware(AuthenticationMiddleware, backend=HeaderAuth())  # outermost

    @app.get("/dashboard", name="dashboard")
    def dashboard(state: UptakeState) -> dict[str, Any]:
        state.track("Dashboard Viewed")
        return {"user": state.user_id, "loaded": state.nudges_loaded}

    @app.get("/reports/{report_id}")
    async def report(report_id: int, request: Request) -> dict[str, Any]:
        state = request.state.uptake
        assert current_state() is state
        await asyncio.sleep(0)
        return {"user": state.user_id, "nudges": [n.name for n in await state.anudges()]}

    @app.get("/reports/{report_id}/stream")
    def stream(report_id: int) -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            for i in range(3):
                yield f"{i}".encode()

        return StreamingResponse(chunks())

    @app.get("/reports/{report_id}/boom")
    async def boom(report_id: int) -> None:
        raise ZeroDivisionError

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
def client() -> uptake.Client:
    return make_client()


def test_fastapi_routes_record_features_by_path_and_by_route_name(client: uptake.Client) -> None:
    app = fastapi_app(client)
    with capture_events() as events, TestClient(app) as http:
        assert http.get("/dashboard", headers={"X-User": "u1"}).json() == {
            "user": "u1",
            "loaded": False,  # nothing read: the view never asked for the nudges
        }
        http.get("/dashboard", headers={"X-User": "u1"})
        body = http.get("/reports/3", headers={"X-User": "u1"}).json()
        http.get("/health", headers={"X-User": "u1"})
    assert body == {"user": "u1", "nudges": ["try_reports"]}
    used = features(events)
    assert [e["properties"]["feature"] for e in used] == ["dashboard", "dashboard", "reports"]
    assert used[2]["properties"] == {
        "feature": "reports",
        "method": "GET",
        "status": 200,
        "route": "/reports/{report_id}",
    }


def test_lifespan_passes_through(client: uptake.Client) -> None:
    app = fastapi_app(client)
    with TestClient(app):
        assert app.state.lifespan_events == ["startup"]
    assert app.state.lifespan_events == ["startup", "shutdown"]


def test_streaming_responses_stream(client: uptake.Client) -> None:
    app = fastapi_app(client, nudges_header="X-Uptake-Nudges")
    with (
        capture_events() as events,
        TestClient(app) as http,
        http.stream("GET", "/reports/1/stream", headers={"X-User": "u1"}) as response,
    ):
        assert response.headers["x-uptake-nudges"] == ""
        assert b"".join(response.iter_bytes()) == b"012"
    [event] = features(events)
    assert event["properties"]["status"] == 200


def test_an_exception_in_an_async_view_is_recorded_and_re_raised(client: uptake.Client) -> None:
    app = fastapi_app(client)
    with capture_events() as events, TestClient(app) as http, pytest.raises(ZeroDivisionError):
        http.get("/reports/1/boom", headers={"X-User": "u1"})
    [event] = features(events)
    assert event["properties"]["status"] == 500 and event["properties"]["error"] is True


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_a_malicious_user_header_is_dropped(client: uptake.Client, hostile: str) -> None:
    app = fastapi_app(client, anonymous_cookie=None)
    with capture_events() as events, TestClient(app) as http:
        response = http.get("/reports/1", headers={"X-User": hostile.encode()})
    assert response.status_code == 200 and response.json()["user"] is None
    assert features(events) == []


def test_the_endpoint_and_anonymous_visitors_under_fastapi(client: uptake.Client) -> None:
    app = fastapi_app(client)
    with capture_events() as events, TestClient(app) as http:
        http.get("/dashboard")
        http.get("/dashboard")
        anon = http.cookies["uptake_anon"]
        listed = http.get("/uptake/nudges").json()
        shown = http.post("/uptake/nudges/try_reports/shown", json={})
        refused = http.post("/uptake/nudges/try_reports/shown", content=b"{}")
        after = http.get("/uptake/nudges").json()
        http.get("/dashboard", headers={"X-User": "u9"})
        assert "uptake_anon" not in http.cookies  # aliased at sign-in, then dropped
    assert [n["name"] for n in listed["nudges"]] == ["try_reports"]
    assert shown.status_code == 204 and refused.status_code == 415
    assert after == {"nudges": []}
    identify = [e for e in events if e["type"] == "identify"]
    assert [(e["userId"], e["anonymousId"]) for e in identify] == [("u9", anon)]


def test_the_dependency_without_the_middleware_gives_an_empty_state() -> None:
    app = FastAPI()

    @app.get("/")
    def view(state: RequestState = Depends(uptake_state)) -> dict[str, Any]:  # noqa: B008
        return {"skipped": state.skipped, "nudges": state.nudges}

    with TestClient(app) as http:
        assert http.get("/").json() == {"skipped": True, "nudges": []}


def test_fastapi_functions_of_the_request_may_be_async(client: uptake.Client) -> None:
    async def user(request: Request) -> str | None:
        return request.headers.get("x-other")

    app = FastAPI()
    app.add_middleware(
        UptakeMiddleware,
        client=client,
        user_id=user,
        account_id=lambda request: request.query_params.get("account"),
        features={"/*": "all"},
    )

    @app.get("/x")
    def view(state: UptakeState) -> dict[str, Any]:
        return {"user": state.user_id, "account": state.account_id}

    with TestClient(app) as http:
        body = http.get("/x?account=acme", headers={"X-Other": "u7"}).json()
    assert body == {"user": "u7", "account": "acme"}


# ---------------------------------------------------------------------- raw ASGI


def starlette_app(client: uptake.Client, in_flight: int = 1, **options: Any) -> Starlette:
    arrived: list[str] = []
    everyone_here = asyncio.Event()

    async def home(request: Request) -> PlainTextResponse:
        state = request.state.uptake
        arrived.append(state.user_id)
        if len(arrived) == in_flight:
            everyone_here.set()
        await asyncio.wait_for(everyone_here.wait(), 10)  # all requests in flight at once
        assert current_state() is state
        return PlainTextResponse(state.user_id or "")

    return Starlette(
        routes=[Route("/reports/{n}", home, name="report")],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
            Middleware(uptake_asgi.UptakeMiddleware, client=client, **options),
        ],
    )


def test_starlette_identity_comes_from_scope_user_and_route_names_map(
    client: uptake.Client,
) -> None:
    app = starlette_app(client, features={"report": "reports"})
    with capture_events() as events, TestClient(app) as http:
        assert http.get("/reports/1", headers={"X-User": "alice"}).text == "alice"
    [event] = features(events)
    assert event["userId"] == "alice" and event["properties"]["feature"] == "reports"


def test_a_hundred_parallel_requests_keep_their_own_state(client: uptake.Client) -> None:
    app = starlette_app(client, in_flight=100, features={"report": "reports"})

    async def run() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            responses = await asyncio.gather(
                *(http.get("/reports/1", headers={"X-User": f"user-{i}"}) for i in range(100))
            )
        return [r.text for r in responses]

    with capture_events() as events:
        assert asyncio.run(run()) == [f"user-{i}" for i in range(100)]
    assert sorted(e["userId"] for e in features(events)) == sorted(f"user-{i}" for i in range(100))


def test_raw_asgi_non_http_scopes_and_double_wrapping(client: uptake.Client) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    inner = uptake_asgi.UptakeMiddleware(app, client, features={"/*": "all"})
    outer = uptake_asgi.UptakeMiddleware(inner, client, features={"/*": "all"})

    async def run() -> httpx.Response:
        await outer({"type": "websocket", "path": "/ws"}, _never, _ignore)
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.get("/x")

    with capture_events() as events:
        response = asyncio.run(run())
    assert seen == ["websocket", "http"]
    assert (
        response.headers.get_list("set-cookie") != []
        and len(response.headers.get_list("set-cookie")) == 1
    )
    assert len(features(events)) == 1


def test_raw_asgi_reads_split_cookie_headers_and_the_session_header(
    client: uptake.Client,
) -> None:
    seen: list[RequestState | None] = []
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_state())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        sent.append(message)

    middleware = uptake_asgi.UptakeMiddleware(app, client, features={"/*": "all"})
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "headers": [
            (b"cookie", b"theme=dark"),
            (b"X-Uptake-Session", b"tab-1"),
            (b"cookie", b"uptake_anon=abcdef123456"),
        ],
    }
    with capture_events() as events:
        asyncio.run(middleware(scope, _never, send))
    [state] = seen
    assert state is not None and state.anonymous_id == "abcdef123456"
    assert state.session_id == "tab-1" and not state.new_anonymous
    assert sent[0]["headers"] == []  # a known visitor: no cookie to set
    [event] = features(events)
    assert event["anonymousId"] == "abcdef123456" and event["context"]["sessionId"] == "tab-1"
    assert event["properties"]["status"] == 204


def test_raw_asgi_endpoint_limits_the_body(client: uptake.Client) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError("the endpoint answers by itself")

    middleware = uptake_asgi.UptakeMiddleware(app, client, user_id=lambda scope: "u1")

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            url = "/uptake/nudges/try_reports/dismissed"
            headers = {"Content-Type": "application/json"}

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(10):
                    yield b" " * 1000

            streamed = await http.post(url, content=chunks(), headers=headers)
            declared = await http.post(url, content=b" " * 5000, headers=headers)
            ok = await http.post(url, json={"snooze_seconds": 60})
        return [streamed.status_code, declared.status_code, ok.status_code]

    with capture_events():
        assert asyncio.run(run()) == [413, 413, 204]


def test_an_async_user_function_that_raises_is_a_counted_drop(client: uptake.Client) -> None:
    async def user(scope: Any) -> str:
        raise RuntimeError("auth service down")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = uptake_asgi.UptakeMiddleware(app, client, user_id=user, anonymous_cookie=None)

    async def run() -> int:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return (await http.get("/x")).status_code

    assert asyncio.run(run()) == 200
    assert middleware.dropped == {"user_id_error": 1}


# ---------------------------------------------------------------------- the event loop


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("method", "path", "options"),
    [
        ("GET", "/reports/1", {}),  # the feature event: the rules write the store
        ("GET", "/other", {"nudges_header": "X-Uptake-Nudges"}),  # the header reads it
        ("GET", "/uptake/nudges", {}),  # the endpoint lists the nudges
        ("POST", "/uptake/nudges/tip/shown", {}),  # the endpoint records an outcome
    ],
)
def test_a_slow_store_never_blocks_the_event_loop(
    method: str, path: str, options: dict[str, Any]
) -> None:
    store = GatedStore()
    client = gated_client(store)
    client.track("u1", "Feature Used", {"feature": "x"})  # "tip" is pending for u1
    middleware = uptake_asgi.UptakeMiddleware(
        _ok, client, user_id=lambda scope: "u1", features={"/reports/*": "reports"}, **options
    )

    async def run() -> tuple[int, int, bool]:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            store.shut()
            slow = asyncio.create_task(http.request(method, path, json={}))
            entered = await asyncio.to_thread(store.entered.wait, 5)
            assert entered, "the request never reached the store"
            # The slow request holds the store; the loop still serves another request.
            fast = await asyncio.wait_for(http.get("/health"), 5)
            still_waiting = not slow.done()
            store.release()
            return fast.status_code, (await slow).status_code, still_waiting

    with capture_events() as events:
        fast, slow, still_waiting = asyncio.run(run())
    assert fast == 200 and still_waiting
    assert slow in (200, 204)
    assert len(features(events)) == (1 if path.startswith("/reports") else 0)
    assert middleware.dropped == {}


class _ThreadStore(uptake.MemoryStore):
    """A MemoryStore that notes the thread of each update (and may say it waits)."""

    def __init__(self, in_process: bool) -> None:
        super().__init__()
        self.in_process = in_process  # type: ignore[misc]
        self.threads: set[int] = set()

    def update(self, key: str, change: Any, *args: Any) -> Any:
        self.threads.add(threading.get_ident())
        return super().update(key, change, *args)


@pytest.mark.parametrize(
    ("in_process", "with_callback", "durable", "hops"),
    [
        (True, False, False, False),
        (False, False, False, True),  # a store that waits on I/O
        (True, True, False, True),  # host code
        (True, False, True, True),  # an outbox that may commit or make a burst wait
    ],
)
def test_recording_hops_off_the_loop_only_when_it_could_wait(
    in_process: bool, with_callback: bool, durable: bool, hops: bool, tmp_path: Path
) -> None:
    store = _ThreadStore(in_process)
    buffer = uptake.SqliteBuffer(tmp_path / "outbox.db") if durable else None
    client = make_client(store=store, buffer=buffer, milestones=[uptake.Milestone("m", features=1)])
    if with_callback:  # host code may block: never on the loop
        client.on_milestone()(lambda reached: None)
    middleware = uptake_asgi.UptakeMiddleware(
        _ok, client, user_id=lambda scope: "u1", features={"/reports/*": "reports"}
    )
    loop_threads: set[int] = set()

    async def run() -> int:
        loop_threads.add(threading.get_ident())
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return (await http.get("/reports/1")).status_code

    with capture_events() as events:
        assert asyncio.run(run()) == 200
    assert len(features(events)) == 1
    assert store.threads and (
        store.threads.isdisjoint(loop_threads) if hops else store.threads == loop_threads
    )


def test_the_nudges_header_is_read_off_the_loop_before_the_response_starts() -> None:
    store = GatedStore()
    client = gated_client(store)
    client.track("u1", "Feature Used", {"feature": "x"})
    middleware = uptake_asgi.UptakeMiddleware(
        _ok, client, user_id=lambda scope: "u1", nudges_header="X-Uptake-Nudges"
    )

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.get("/x")

    assert asyncio.run(run()).headers["x-uptake-nudges"] == "tip"


def test_a_cancelled_request_is_still_recorded_once() -> None:
    store = GatedStore()
    middleware = uptake_asgi.UptakeMiddleware(
        _ok, gated_client(store), user_id=lambda scope: "u1", features={"/*": "all"}
    )

    async def run() -> None:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            store.shut()
            request = asyncio.create_task(http.get("/x"))
            assert await asyncio.to_thread(store.entered.wait, 5)
            request.cancel()  # the client went away while the event was being recorded
            with pytest.raises(asyncio.CancelledError):
                await request
            store.release()

    with capture_events() as events:
        asyncio.run(run())  # asyncio.run waits for the worker thread at shutdown
    assert len(features(events)) == 1


def _raw_post(path: str, messages: list[dict[str, Any]], length: int | None) -> Any:
    """POST to a bare middleware, the body arriving as ``messages``; what was sent back."""
    client = make_client()

    async def inner(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError("the endpoint answers by itself")

    middleware = uptake_asgi.UptakeMiddleware(inner, client, user_id=lambda scope: "u1")
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    queue = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with capture_events() as events:
        asyncio.run(middleware(scope, receive, send))
    return sent, events


def test_a_client_disconnect_mid_body_records_nothing() -> None:
    body = b'{"snooze_seconds": 60}'
    sent, events = _raw_post(
        "/uptake/nudges/try_reports/dismissed",
        [
            {"type": "http.request", "body": body[:5], "more_body": True},
            {"type": "http.disconnect"},
        ],
        len(body),
    )
    assert sent == [] and events == []  # never a dismissal without its snooze


def test_a_body_shorter_or_longer_than_its_content_length_is_refused() -> None:
    for declared in (22, 1):
        sent, events = _raw_post(
            "/uptake/nudges/try_reports/dismissed",
            [{"type": "http.request", "body": b"{}", "more_body": False}],
            declared,
        )
        assert sent[0]["status"] == 400 and events == []
    sent, events = _raw_post(
        "/uptake/nudges/try_reports/dismissed",
        [{"type": "http.request", "body": b"{}", "more_body": False}],
        2,
    )
    assert sent[0]["status"] == 204 and [e["event"] for e in events] == ["Nudge Dismissed"]


def test_a_cross_site_post_is_refused(client: uptake.Client) -> None:
    middleware = uptake_asgi.UptakeMiddleware(_ok, client, user_id=lambda scope: "u1")

    async def run(site: str) -> int:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            url = "/uptake/nudges/try_reports/shown"
            return (await http.post(url, json={}, headers={"Sec-Fetch-Site": site})).status_code

    with capture_events() as events:
        assert asyncio.run(run("cross-site")) == 403
        assert asyncio.run(run("same-origin")) == 204
    assert [e["event"] for e in events] == ["Nudge Shown"]


def test_an_app_that_sends_no_response_is_recorded_as_an_error(client: uptake.Client) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    middleware = uptake_asgi.UptakeMiddleware(
        silent, client, user_id=lambda scope: "u1", features={"/*": "all"}
    )
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    with capture_events() as events:
        asyncio.run(middleware(scope, _never, _ignore))
    [event] = features(events)
    assert event["properties"]["status"] == 500 and event["properties"]["error"] is True


async def _never() -> Any:  # pragma: no cover
    raise AssertionError("not called")


async def _ignore(message: Any) -> None:  # pragma: no cover
    pass
