"""The Django middleware in sync and async mode, through Django's own test clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import django
import pytest
from django.conf import settings

CONFIG = {
    "CLIENT": f"{__name__}.current_client",
    "USER_ID": None,
    "FEATURES": {"report": "reports", "/dashboard/*": "dashboard", "/async/*": "async"},
}
if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        DATABASES={},
        STATIC_URL="/assets/",
        MIDDLEWARE=[
            "django.middleware.csrf.CsrfViewMiddleware",
            f"{__name__}.HeaderUserMiddleware",
            "uptake.integrations.django.UptakeMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {"context_processors": ["uptake.integrations.django.context_processor"]},
            }
        ],
        UPTAKE={k: v for k, v in CONFIG.items() if v is not None},
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template import engines  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.deprecation import MiddlewareMixin  # noqa: E402
from django.utils.functional import SimpleLazyObject  # noqa: E402

import uptake  # noqa: E402
from uptake.integrations import IntegrationOptions, current_state  # noqa: E402
from uptake.integrations.django import UptakeMiddleware  # noqa: E402
from uptake.testing import capture_events  # noqa: E402

from .integrations_helpers import (  # noqa: E402
    HOSTILE_IDS,
    GatedStore,
    features,
    gated_client,
    make_client,
)

_client: list[uptake.Client] = []
forced: list[str] = []


def current_client() -> uptake.Client:
    return _client[0]


class User:
    is_authenticated = True

    def __init__(self, pk: str) -> None:
        self.pk = pk


class Anonymous:
    is_authenticated = False
    pk = None


class HeaderUserMiddleware(MiddlewareMixin):
    """A stand-in for AuthenticationMiddleware: a lazy user from the X-User header."""

    def process_request(self, request: Any) -> None:
        name = request.headers.get("X-User")

        def load() -> Any:
            forced.append(name or "")
            return User(name) if name else Anonymous()

        async def aload() -> Any:
            return User(name) if name else Anonymous()

        request.user = SimpleLazyObject(load)
        request.auser = aload


def report(request: HttpRequest, n: int) -> HttpResponse:
    state = current_state()
    assert state is request.uptake
    template = engines["django"].from_string(
        "{{ uptake.user_id }}:{% for n in uptake_nudges %}{{ n.name }}{% endfor %}"
    )
    return HttpResponse(template.render(request=request))


def dashboard(request: HttpRequest) -> HttpResponse:
    request.uptake.track("Dashboard Viewed")
    return HttpResponse("ok")


async def async_view(request: HttpRequest) -> JsonResponse:
    state = request.uptake
    assert current_state() is state
    await asyncio.sleep(0)
    nudges = await state.anudges()
    return JsonResponse({"user": state.user_id, "nudges": [n.name for n in nudges]})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        for i in range(3):
            state = current_state()
            yield f"{i}{state.user_id if state else None};".encode()

    return StreamingHttpResponse(chunks())


def renamed_stream(request: HttpRequest) -> StreamingHttpResponse:
    """A view that names its feature, then withdraws it while the body streams."""
    state = request.uptake  # type: ignore[attr-defined]
    state.feature = "exports"

    def chunks() -> Iterator[bytes]:
        yield b"a"
        state.feature = None
        yield b"b"

    return StreamingHttpResponse(chunks())


async def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def failing_stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("disk gone")

    return StreamingHttpResponse(chunks())


async def async_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0)
            state = current_state()
            yield f"{i}{state.user_id if state else None};".encode()

    return StreamingHttpResponse(chunks())


def boom(request: HttpRequest) -> HttpResponse:
    raise ZeroDivisionError


def deep(request: HttpRequest) -> HttpResponse:
    current_client().track("Report Exported")  # no ids: the request's context gives them
    return HttpResponse("ok")


async def adeep(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    current_client().track("Report Exported")
    return HttpResponse("ok")


urlpatterns = [
    path("reports/<int:n>/", report, name="report"),
    path("dashboard/", dashboard, name="dashboard"),
    path("dashboard/stream/", stream),
    path("dashboard/failing/", failing_stream),
    path("dashboard/renamed/", renamed_stream),
    path("unmapped/renamed/", renamed_stream),
    path("async/stream/", async_stream),
    path("async/plain/", plain),
    path("healthz", plain),
    path("dashboard/boom/", boom),
    path("async/", async_view),
    path("health", dashboard),
    path("deep/", deep),
    path("async/deep/", adeep),
]


@pytest.fixture(autouse=True)
def client() -> Iterator[uptake.Client]:
    _client[:] = [make_client()]
    forced.clear()
    yield _client[0]
    _client.clear()


def test_sync_mode_records_features_and_renders_nudges(client: uptake.Client) -> None:
    http = Client()
    with capture_events() as events:
        http.get("/dashboard/", headers={"X-User": "u1"})
        http.get("/dashboard/", headers={"X-User": "u1"})
        page = http.get("/reports/3/", headers={"X-User": "u1"})
        http.get("/health", headers={"X-User": "u1"})
        http.get("/assets/app.css", headers={"X-User": "u1"})
    assert page.content == b"u1:try_reports"
    used = features(events)
    assert [e["properties"]["feature"] for e in used] == ["dashboard", "dashboard", "reports"]
    assert used[2]["properties"]["route"] == "reports/<int:n>/"
    assert all(e["userId"] == "u1" for e in used)


def test_async_mode_never_forces_the_lazy_user(client: uptake.Client) -> None:
    async def run() -> Any:
        return await AsyncClient().get("/async/", headers={"X-User": "u1"})

    client.track("u1", "Dashboard Viewed")
    client.track("u1", "Dashboard Viewed")
    with capture_events() as events:
        response = asyncio.run(run())
    assert response.json() == {"user": "u1", "nudges": ["try_reports"]}
    assert forced == []  # request.user was never evaluated
    [event] = features(events)
    assert event["userId"] == "u1" and event["properties"]["feature"] == "async"


def test_async_mode_uses_a_user_something_already_loaded(client: uptake.Client) -> None:
    from uptake.integrations.django import default_user_id_async

    request = HttpRequest()
    request.user = SimpleLazyObject(lambda: User("loaded"))
    request.user.pk  # noqa: B018 - evaluated by someone else
    assert asyncio.run(default_user_id_async(request)) == "loaded"
    assert asyncio.run(default_user_id_async(HttpRequest())) is None


def test_a_streaming_response_is_recorded_once_its_body_is_sent(client: uptake.Client) -> None:
    with capture_events() as events:
        response = Client().get("/dashboard/stream/", headers={"X-User": "u1"})
        assert features(events) == []  # not sent yet
        assert b"".join(response.streaming_content) == b"0u1;1u1;2u1;"  # state published
        assert len(features(events)) == 1
        response.close()
    [event] = features(events)
    assert event["properties"]["status"] == 200 and "error" not in event["properties"]
    assert current_state() is None


@pytest.mark.parametrize(
    ("url", "recorded"), [("/dashboard/renamed/", ["dashboard"]), ("/unmapped/renamed/", [])]
)
def test_a_feature_the_view_withdraws_while_streaming_is_not_recorded(
    client: uptake.Client, url: str, recorded: list[str]
) -> None:
    with capture_events() as events:
        response = Client().get(url, headers={"X-User": "u1"})
        assert b"".join(response.streaming_content) == b"ab"
        response.close()
    assert [e["properties"]["feature"] for e in features(events)] == recorded


def test_a_streaming_response_closed_unread_is_recorded_once(client: uptake.Client) -> None:
    with capture_events() as events:
        response = Client().get("/dashboard/stream/", headers={"X-User": "u1"})
        response.close()
        response.close()
    assert len(features(events)) == 1


def test_an_error_mid_stream_is_recorded_as_an_error(client: uptake.Client) -> None:
    with capture_events() as events:
        response = Client().get("/dashboard/failing/", headers={"X-User": "u1"})
        with pytest.raises(OSError):
            b"".join(response.streaming_content)
        response.close()
    [event] = features(events)
    assert event["properties"]["error"] is True and event["properties"]["status"] == 200


def test_an_async_streaming_response_is_recorded_once_sent(client: uptake.Client) -> None:
    async def run() -> bytes:
        response = await AsyncClient().get("/async/stream/", headers={"X-User": "u1"})
        assert features(events) == []
        body = b"".join([chunk async for chunk in response.streaming_content])
        assert len(features(events)) == 1
        return body

    with capture_events() as events:
        assert asyncio.run(run()) == b"0u1;1u1;2u1;"
    assert len(features(events)) == 1


def test_an_exception_in_a_view_is_recorded_and_re_raised(client: uptake.Client) -> None:
    with capture_events() as events, pytest.raises(ZeroDivisionError):
        Client().get("/dashboard/boom/", headers={"X-User": "u1"})
    [event] = features(events)
    assert event["properties"]["status"] == 500 and event["properties"]["error"] is True
    assert current_state() is None


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_a_malicious_user_id_is_dropped(client: uptake.Client, hostile: str) -> None:
    config = {**settings.UPTAKE, "ANONYMOUS_COOKIE": None, "USER_ID": lambda r: r.GET.get("u")}
    with override_settings(UPTAKE=config), capture_events() as events:
        response = Client().get("/reports/1/", {"u": hostile})
    assert response.status_code == 200 and response.content == b"None:"
    assert features(events) == []


def test_a_missing_user_gets_an_anonymous_cookie_then_is_aliased(client: uptake.Client) -> None:
    http = Client()
    with capture_events() as events:
        http.get("/dashboard/")
        anon = http.cookies["uptake_anon"].value
        assert http.cookies["uptake_anon"]["httponly"]
        http.get("/dashboard/", headers={"X-User": "u1"})
        assert http.cookies["uptake_anon"].value == ""  # dropped
    assert [(e.get("userId"), e.get("anonymousId")) for e in features(events)] == [
        (None, anon),
        ("u1", None),
    ]
    identify = [e for e in events if e["type"] == "identify"]
    assert [(e["userId"], e["anonymousId"]) for e in identify] == [("u1", anon)]


def test_the_endpoint_is_served_by_the_middleware(client: uptake.Client) -> None:
    http = Client(enforce_csrf_checks=True)  # JSON-only POSTs stand in for the token
    for _ in range(2):
        client.track("u1", "Dashboard Viewed")
    with capture_events() as events:
        listed = http.get("/uptake/nudges", headers={"X-User": "u1"})
        clicked = http.post(
            "/uptake/nudges/try_reports/clicked",
            content_type="application/json",
            headers={"X-User": "u1"},
        )
        form = http.post("/uptake/nudges/try_reports/clicked", {"a": "b"}, headers={"X-User": "u1"})
        big = http.post(
            "/uptake/nudges/try_reports/dismissed",
            data=b" " * 5000,
            content_type="application/json",
            headers={"X-User": "u1"},
        )
        nobody = http.get("/uptake/nudges")
    assert [n["name"] for n in listed.json()["nudges"]] == ["try_reports"]
    assert (clicked.status_code, form.status_code, big.status_code) == (204, 415, 413)
    assert nobody.status_code == 401
    assert [e["event"] for e in events] == ["Nudge Clicked"]


def test_the_nudges_header_and_a_host_identity_function(client: uptake.Client) -> None:
    async def user(request: Any) -> str:
        return "from-async"

    config = {**settings.UPTAKE, "NUDGES_HEADER": "X-Uptake-Nudges", "USER_ID": user}

    async def run() -> Any:
        return await AsyncClient().get("/async/")

    for _ in range(2):
        client.track("from-async", "Dashboard Viewed")
    with override_settings(UPTAKE=config), capture_events():
        response = asyncio.run(run())
        assert response["X-Uptake-Nudges"] == "try_reports"
        assert response.json()["user"] == "from-async"
        # An async function in sync mode is a counted drop, not an error.
        sync_response = Client().get("/reports/1/")
        assert sync_response.status_code == 200 and sync_response.content == b"None:"


def test_an_options_object_in_settings_with_keys_replacing_its_fields(
    client: uptake.Client,
) -> None:
    options = IntegrationOptions(
        features={"/reports/*": "from_options"},
        nudges_header="X-Uptake-Nudges",
        skip_paths=["/dashboard/*"],
    )
    config = {"CLIENT": settings.UPTAKE["CLIENT"], "OPTIONS": options, "ENDPOINT": None}
    with override_settings(UPTAKE=config), capture_events() as events:
        http = Client()
        page = http.get("/reports/3/", headers={"X-User": "u1"})
        http.get("/dashboard/", headers={"X-User": "u1"})  # skipped by the options
        endpoint = http.get("/uptake/nudges", headers={"X-User": "u1"})
    assert page["X-Uptake-Nudges"] == "" and endpoint.status_code == 404  # ENDPOINT: None
    assert [e["properties"]["feature"] for e in features(events)] == ["from_options"]
    # STATIC_URL is still skipped on top of the options' paths.
    with override_settings(UPTAKE=config):
        middleware = UptakeMiddleware(lambda request: HttpResponse())
    assert middleware.options.skip_paths == ("/dashboard/*", "/assets/*")
    assert middleware.integration.endpoint is None


def test_configuration_errors_are_reported_at_start_up() -> None:
    for bad in (
        {},
        {"CLIENT": "os.path"},
        {"CLIENT": f"{__name__}.current_client", "FEATURE": {}},
        {"CLIENT": f"{__name__}.current_client", "USER_ID": 3},
        {"CLIENT": f"{__name__}.current_client", "OPTIONS": {"FEATURES": {}}},
    ):
        with override_settings(UPTAKE=bad), pytest.raises(ImproperlyConfigured):
            UptakeMiddleware(lambda request: HttpResponse())
    with override_settings(UPTAKE=None), pytest.raises(ImproperlyConfigured):
        UptakeMiddleware(lambda request: HttpResponse())


def test_listed_twice_is_harmless(client: uptake.Client) -> None:
    middleware = [*settings.MIDDLEWARE, "uptake.integrations.django.UptakeMiddleware"]
    with override_settings(MIDDLEWARE=middleware), capture_events() as events:
        response = Client().get("/dashboard/")
    assert len(features(events)) == 1
    assert response.cookies["uptake_anon"].value


def test_sdk_failures_never_break_a_request(
    client: uptake.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(client, "feature_used", broken)
    monkeypatch.setattr(client, "pending_nudges", broken)
    response = Client().get("/reports/1/", headers={"X-User": "u1"})
    assert response.status_code == 200 and response.content == b"u1:"


def test_a_hundred_parallel_async_requests(client: uptake.Client) -> None:
    async def run() -> list[Any]:
        http = AsyncClient()
        return await asyncio.gather(
            *(http.get("/async/", headers={"X-User": f"user-{i}"}) for i in range(100))
        )

    with capture_events() as events:
        responses = asyncio.run(run())
    assert [r.json()["user"] for r in responses] == [f"user-{i}" for i in range(100)]
    assert sorted(e["userId"] for e in features(events)) == sorted(f"user-{i}" for i in range(100))


# ---------------------------------------------------------------------- async mode details


def _gated() -> GatedStore:
    store = GatedStore()
    _client[:] = [gated_client(store)]
    _client[0].track("u1", "Feature Used", {"feature": "x"})  # "tip" is pending for u1
    return store


@pytest.mark.parametrize(
    ("method", "path", "config"),
    [
        ("get", "/async/plain/", {}),  # recording the feature: the rules write the store
        ("get", "/async/plain/", {"NUDGES_HEADER": "X-Uptake-Nudges", "FEATURES": {}}),
        ("get", "/uptake/nudges", {}),
        ("post", "/uptake/nudges/tip/shown", {}),
    ],
)
def test_a_slow_store_never_blocks_the_event_loop(
    method: str, path: str, config: dict[str, Any]
) -> None:
    store = _gated()

    async def run() -> tuple[int, int, bool]:
        http = AsyncClient()
        store.shut()
        slow = asyncio.create_task(
            getattr(http, method)(path, headers={"X-User": "u1"}, content_type="application/json")
        )
        entered = await asyncio.to_thread(store.entered.wait, 5)
        assert entered, "the request never reached the store"
        # The slow request holds the store; the loop still serves another (async) view.
        fast = await asyncio.wait_for(http.get("/healthz", headers={"X-User": "u1"}), 5)
        still_waiting = not slow.done()
        store.release()
        return fast.status_code, (await slow).status_code, still_waiting

    with override_settings(UPTAKE={**settings.UPTAKE, **config}), capture_events():
        fast, slow, still_waiting = asyncio.run(run())
    assert fast == 200 and still_waiting and slow in (200, 204)


def test_a_sync_user_function_may_use_the_orm_in_async_mode(client: uptake.Client) -> None:
    from django.utils.asyncio import async_unsafe

    @async_unsafe
    def from_database(request: Any) -> str:  # what an ORM query does on the event loop
        return "db-user"

    config = {**settings.UPTAKE, "USER_ID": from_database, "ACCOUNT_ID": from_database}

    async def run() -> Any:
        return await AsyncClient().get("/async/")

    with override_settings(UPTAKE=config), capture_events() as events:
        assert asyncio.run(run()).json()["user"] == "db-user"
    [event] = features(events)
    assert event["userId"] == "db-user" and event["context"]["groupId"] == "db-user"


def test_a_truncated_endpoint_body_is_refused(client: uptake.Client) -> None:
    with capture_events() as events:
        response = Client().generic(
            "POST",
            "/uptake/nudges/try_reports/dismissed",
            b'{"snooze',
            content_type="application/json",
            headers={"X-User": "u1"},
            CONTENT_LENGTH="22",
        )
    assert response.status_code == 400 and events == []


def test_a_cross_site_post_is_refused(client: uptake.Client) -> None:
    http = Client()
    with capture_events() as events:
        codes = [
            http.post(
                "/uptake/nudges/try_reports/shown",
                content_type="application/json",
                headers={"X-User": "u1", "Sec-Fetch-Site": site},
            ).status_code
            for site in ("cross-site", "same-origin")
        ]
    assert codes == [403, 204]
    assert [e["event"] for e in events] == ["Nudge Shown"]


def test_code_deep_inside_a_request_tracks_without_ids(client: uptake.Client) -> None:
    headers = {"X-User": "u1", "X-Uptake-Session": "s-42"}
    with capture_events() as events:
        assert Client().get("/deep/", headers=headers).status_code == 200
        response = asyncio.run(
            AsyncClient().get("/async/deep/", headers={**headers, "X-User": "u2"})
        )
        assert response.status_code == 200
    exported = [e for e in events if e["event"] == "Report Exported"]
    assert [(e["userId"], e["context"]["sessionId"]) for e in exported] == [
        ("u1", "s-42"),
        ("u2", "s-42"),
    ]
    assert client.current_context() is None
