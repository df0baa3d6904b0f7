"""The framework-free core: matching, skipping, identity, the request state, the endpoint."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

import pytest

import uptake
import uptake.integrations
from uptake.integrations._core import MAX_BODY, Integration, RequestState, activate, cookie_value
from uptake.testing import capture_events

from .integrations_helpers import HOSTILE_IDS, make_client


def test_the_package_exports_a_sorted_namespace_and_imports_no_framework() -> None:
    assert uptake.integrations.__all__ == sorted(uptake.integrations.__all__)
    import subprocess
    import sys

    code = (
        "import sys, uptake.integrations, uptake.integrations.wsgi, uptake.integrations.asgi;"
        "print(sorted(m for m in ('django', 'flask', 'fastapi', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_routes_map_to_features_by_route_name_first_then_glob_in_order() -> None:
    core = Integration(
        make_client(),
        features={
            "reports:detail": "report_detail",
            "/reports/export*": "export",
            "/reports/*": "reports",
            "/settings": "settings",
        },
    )
    assert core.feature_for("/reports/1", "reports:detail") == "report_detail"
    assert core.feature_for("/reports/export.csv") == "export"
    assert core.feature_for("/reports/1/edit") == "reports"
    assert core.feature_for("/reports") is None
    assert core.feature_for("/settings") == "settings"
    assert core.feature_for("/settings/x") is None
    assert core.feature_for("/other", "unknown") is None


@pytest.mark.parametrize(
    ("method", "path", "skipped"),
    [
        ("GET", "/static/app.css", True),
        ("GET", "/assets/app.js", True),
        ("GET", "/health", True),
        ("GET", "/favicon.ico", True),
        ("HEAD", "/reports", True),
        ("OPTIONS", "/reports", True),
        ("GET", "/reports", False),
        ("POST", "/healthy", False),
    ],
)
def test_static_files_health_checks_and_listed_methods_are_skipped(
    method: str, path: str, skipped: bool
) -> None:
    assert Integration(make_client()).skips(method, path) is skipped


def test_skip_lists_can_be_replaced() -> None:
    core = Integration(make_client(), skip_paths=["/admin/*"], skip_methods=["DELETE"])
    assert core.skips("GET", "/admin/users") and core.skips("delete", "/x")
    assert not core.skips("GET", "/health") and not core.skips("HEAD", "/x")


def test_path_answers_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("uptake.integrations._core._PATHS_KEPT", 8)
    core = Integration(make_client(), features={"/reports/*": "reports", "home": "home"})
    for _ in range(2):  # asked again: the remembered answers are the same
        for n in range(20):
            assert core.feature_for(f"/reports/{n}") == "reports"
            assert core.skips("GET", f"/static/{n}.css") and not core.skips("GET", f"/r/{n}")
            assert core.feature_for(f"/other/{n}", "home") == "home"
    assert 0 < len(core._paths) <= 8
    long_path = "/reports/" + "x" * 300
    assert core.feature_for(long_path) == "reports" and long_path not in core._paths
    assert core.skips("GET", "/static/" + "y" * 300 + ".css")


def test_responses_get_headers_only_when_there_is_one_to_add() -> None:
    core = Integration(make_client())
    known = core.begin(user_id="u1", cookie=None)
    minted = core.begin(user_id=None, cookie=None)
    signed_in = core.begin(user_id="u1", cookie="anon-12345678")
    assert not core.adds_headers(known) and core.response_headers(known, secure=True) == []
    assert core.adds_headers(minted) and core.adds_headers(signed_in)
    assert not core.adds_headers(core.skipped_state())
    [(name, value)] = core.response_headers(signed_in, secure=False)
    assert name == "Set-Cookie" and value.startswith("uptake_anon=; Max-Age=0")
    quiet = Integration(make_client(), anonymous_cookie=None)
    assert quiet.never_adds_headers and not quiet.adds_headers(
        quiet.begin(user_id="u1", cookie=None)
    )
    header = Integration(make_client(), anonymous_cookie=None, nudges_header="X-Nudges")
    state = header.begin(user_id="u1", cookie=None)
    assert header.adds_headers(state) and header.response_headers(state, secure=False) == [
        ("X-Nudges", "")
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"features": ["/reports/*"]},
        {"features": {"/reports/*": ""}},
        {"features": {"": "reports"}},
        {"skip_paths": "/static/*"},
        {"anonymous_cookie": "bad name;"},
        {"nudges_header": "X Nudges"},
        {"endpoint": "uptake"},
    ],
)
def test_bad_configuration_is_refused_up_front(options: dict[str, Any]) -> None:
    with pytest.raises(uptake.ConfigurationError):
        Integration(make_client(), **options)


def test_a_client_is_required() -> None:
    with pytest.raises(uptake.ConfigurationError, match=r"uptake\.Client"):
        Integration(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_ids_are_dropped_counted_and_logged_once(
    hostile: str, caplog: pytest.LogCaptureFixture
) -> None:
    core = Integration(make_client())
    with caplog.at_level(logging.WARNING, logger="uptake.integrations"):
        for _ in range(3):
            assert core.clean_id(hostile, "user_id") is None
    assert core.dropped == {"invalid_user_id": 3}
    logged = [r for r in caplog.records if "user_id" in r.getMessage()]
    assert len(logged) == 1
    assert hostile not in caplog.text  # the value itself is never logged


def test_good_ids_pass_and_ints_become_strings() -> None:
    import uuid

    core = Integration(make_client())
    assert core.clean_id("user-1", "user_id") == "user-1"
    assert core.clean_id(42, "user_id") == "42"
    assert core.clean_id("é" * 256, "user_id") == "é" * 256
    some = uuid.uuid4()
    assert core.clean_id(some, "user_id") == str(some)
    assert core.clean_id("", "user_id") is None
    assert core.clean_id(None, "user_id") is None
    assert core.dropped == {}
    assert core.clean_id(True, "user_id") is None
    assert core.clean_id(1.5, "account_id") is None
    assert core.dropped == {"invalid_user_id": 1, "invalid_account_id": 1}


def test_a_host_function_that_raises_is_a_counted_drop() -> None:
    core = Integration(make_client())

    def broken(request: object) -> object:
        raise RuntimeError("boom")

    assert core.call_host(broken, object(), "user_id") is None
    assert core.dropped == {"user_id_error": 1}


def test_cookie_values_are_parsed_without_surprises() -> None:
    header = 'a=1; uptake_anon="abcdef0123456789"; uptake_anonx=2'
    assert cookie_value(header, "uptake_anon") == "abcdef0123456789"
    assert cookie_value(header, "missing") is None
    assert cookie_value(None, "a") is None


def test_an_unknown_visitor_gets_a_fresh_anonymous_id_and_no_store_read() -> None:
    client = make_client()
    core = Integration(client)
    state = core.begin(user_id=None, cookie=None)
    assert state.new_anonymous and state.anonymous_id and len(state.anonymous_id) == 32
    assert state.nudges == []
    headers = core.cookie_headers(state, secure=True)
    assert headers == [
        (
            "Set-Cookie",
            f"uptake_anon={state.anonymous_id}; Max-Age=31536000; Path=/; HttpOnly; "
            "SameSite=Lax; Secure",
        )
    ]
    # A cookie that is not one of ours is replaced, not trusted.
    assert core.begin(user_id=None, cookie="<script>").new_anonymous


def test_without_the_cookie_anonymous_visitors_are_not_tracked() -> None:
    core = Integration(make_client(), anonymous_cookie=None)
    state = core.begin(user_id=None, cookie="abcdef0123456789")
    assert state.subject is None
    with capture_events() as events:
        core.finish(state, path="/x", method="GET", status=200)
        state.track("Anything")
    assert events == []


def test_sign_in_aliases_the_anonymous_id_once_and_drops_the_cookie() -> None:
    client = make_client()
    core = Integration(client)
    with capture_events() as events:
        for _ in range(3):
            state = core.begin(user_id="u1", cookie="abcdef0123456789")
    assert [(e["type"], e["userId"], e["anonymousId"]) for e in events] == [
        ("identify", "u1", "abcdef0123456789")
    ]
    assert state.user_id == "u1" and state.forget_anonymous
    assert core.cookie_headers(state, secure=False)[0][1].startswith("uptake_anon=; Max-Age=0")


def test_nudges_are_read_once_lazily_and_a_failure_gives_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client()
    core = Integration(client)
    client.track("u1", "Dashboard Viewed")
    client.track("u1", "Dashboard Viewed")
    reads: list[str] = []
    real = client.pending_nudges

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append("read")
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "pending_nudges", counting)
    state = core.begin(user_id="u1", cookie=None)
    assert not state.nudges_loaded and reads == []
    threads = [threading.Thread(target=lambda: state.nudges) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [n.name for n in state.nudges] == ["try_reports"]
    assert reads == ["read"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store down")

    monkeypatch.setattr(client, "pending_nudges", broken)
    assert core.begin(user_id="u1", cookie=None).nudges == []
    assert core.dropped == {"nudges_error": 1}


def test_finish_records_the_feature_with_method_status_route_and_session() -> None:
    core = Integration(make_client(), features={"/reports/*": "reports"})
    state = core.begin(user_id="u1", cookie=None, account_id="acme", session="s-123")
    with capture_events() as events:
        core.finish(state, path="/reports/1", method="GET", status=200, route="/reports/{id}")
        core.finish(state, path="/other", method="GET", status=200)
    [event] = events
    assert event["event"] == "Feature Used" and event["userId"] == "u1"
    assert event["properties"] == {
        "feature": "reports",
        "method": "GET",
        "status": 200,
        "route": "/reports/{id}",
    }
    assert event["context"]["groupId"] == "acme"
    assert event["context"]["sessionId"] == "s-123"


def _comparable(event: dict[str, Any]) -> tuple[Any, ...]:
    context = {k: v for k, v in event["context"].items() if k != "sessionId"}
    return (
        event["event"],
        event.get("userId"),
        event.get("anonymousId"),
        event["properties"],
        context,
    )


@pytest.mark.parametrize(
    ("user", "cookie", "account", "session"),
    [
        ("u1", None, None, None),
        ("u1", None, "acme", "s-1"),
        (None, "abcdef0123456789", "acme", None),
    ],
)
def test_finish_records_what_feature_used_records_inside_its_own_context(
    user: str | None, cookie: str | None, account: str | None, session: str | None
) -> None:
    """The integration's shortcut past track()'s checks gives the very event it would."""
    core = Integration(make_client(), features={"/reports/*": "reports"})
    state = core.begin(user_id=user, cookie=cookie, account_id=account, session=session)
    with capture_events() as events, activate(state):
        core.finish(state, path="/reports/1", method="GET", status=200, route="/reports/{id}")
        state.client.feature_used(  # type: ignore[union-attr]
            user,
            "reports",
            {"method": "GET", "status": 200, "route": "/reports/{id}"},
            anonymous_id=None if user else cookie,
            account_id=account,
            context=None if session is None else {"sessionId": session},
        )
    recorded = [e for e in events if e["event"] == "Feature Used"]
    assert len(recorded) == 2
    assert _comparable(recorded[0]) == _comparable(recorded[1])
    assert recorded[0]["context"].get("sessionId") == recorded[1]["context"].get("sessionId")


def test_finish_inside_a_host_context_keeps_its_properties_and_account() -> None:
    client = make_client()
    core = Integration(client, features={"/reports/*": "reports"})
    with client.context(user_id="u1", account_id="acme", properties={"job": "nightly"}):
        state = core.begin(user_id="u1", cookie=None)
        with capture_events() as events, activate(state):
            core.finish(state, path="/reports/1", method="GET", status=200)
    [event] = [e for e in events if e["event"] == "Feature Used"]
    assert event["properties"] == {
        "job": "nightly",
        "method": "GET",
        "status": 200,
        "feature": "reports",
    }
    assert event["context"]["groupId"] == "acme"


@pytest.mark.parametrize(
    ("field", "value", "user", "account"),
    [
        ("user_id", 42, "42", None),
        ("user_id", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", None),
        ("account_id", 7, "u1", "7"),
    ],
)
@pytest.mark.parametrize("inside", [True, False])
def test_ids_a_view_sets_on_the_state_are_checked_as_track_checks_them(
    field: str, value: object, user: str, account: str | None, inside: bool
) -> None:
    core = Integration(make_client(), features={"/login": "login"})
    state = core.begin(user_id=None if field == "user_id" else "u1", cookie=None)
    setattr(state, field, value)  # a login view: state.user_id = user.pk
    with capture_events() as events:
        if inside:
            with activate(state):
                core.finish(state, path="/login", method="POST", status=200)
        else:
            core.finish(state, path="/login", method="POST", status=200)
    [event] = [e for e in events if e["event"] == "Feature Used"]
    assert event["userId"] == user
    assert event["context"].get("groupId") == account
    assert core.dropped == {}


def test_a_feature_a_view_set_that_is_no_name_is_a_counted_drop() -> None:
    core = Integration(make_client())
    state = core.begin(user_id="u1", cookie=None)
    state.feature = 42  # type: ignore[assignment]
    with capture_events() as events:
        core.finish(state, path="/x", method="GET", status=200)
    assert [e for e in events if e["event"] == "Feature Used"] == []
    assert core.dropped == {"sdk_error": 1}


def test_a_view_can_name_its_feature_and_track_for_the_request() -> None:
    core = Integration(make_client())
    state = core.begin(user_id=None, cookie="abcdef0123456789")
    state.feature = "exports"
    with capture_events() as events:
        state.track("Export Clicked", {"rows": 3})
        core.finish(state, path="/anything", method="POST", status=201)
    assert [(e["event"], e.get("anonymousId"), e.get("userId")) for e in events] == [
        ("Session Started", "abcdef0123456789", None),
        ("Export Clicked", "abcdef0123456789", None),
        ("Feature Used", "abcdef0123456789", None),
    ]


def test_an_sdk_failure_while_recording_is_counted_never_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client()
    core = Integration(client, features={"/x": "x"})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(client, "feature_used", broken)
    core.finish(core.begin(user_id="u1", cookie=None), path="/x", method="GET", status=200)
    assert core.dropped == {"sdk_error": 1}


def test_the_nudges_header_lists_names_percent_encoded() -> None:
    client = make_client(
        nudges=[uptake.Nudge("a b,c", trigger=uptake.EventCount("Dashboard Viewed", 1))]
    )
    core = Integration(client, nudges_header="X-Uptake-Nudges")
    client.track("u1", "Dashboard Viewed")
    state = core.begin(user_id="u1", cookie=None)
    assert core.response_headers(state, secure=False) == [("X-Uptake-Nudges", "a%20b%2Cc")]
    assert core.response_headers(core.skipped_state(), secure=False) == []


# ---------------------------------------------------------------------- the endpoint


def reply(
    core: Integration,
    state: RequestState,
    method: str,
    path: str,
    body: bytes | None = b"",
    content_type: str | None = "application/json",
) -> tuple[int, Any]:
    r = core.endpoint_reply(state, method=method, path=path, content_type=content_type, body=body)
    return r.status, json.loads(r.body) if r.body else None


def test_the_endpoint_lists_pending_nudges_and_records_outcomes() -> None:
    client = make_client()
    core = Integration(client)
    client.track("u1", "Dashboard Viewed")
    client.track("u1", "Dashboard Viewed")
    status, data = reply(core, core.begin(user_id="u1", cookie=None), "GET", "/uptake/nudges")
    assert status == 200
    [nudge] = data["nudges"]
    assert nudge["name"] == "try_reports" and nudge["payload"] == {"tooltip": "Try reports"}
    assert nudge["priority"] == 3 and nudge["timestamp"].endswith("Z")
    with capture_events() as events:
        for outcome in ("shown", "clicked"):
            state = core.begin(user_id="u1", cookie=None)
            assert reply(core, state, "POST", f"/uptake/nudges/try_reports/{outcome}") == (
                204,
                None,
            )
        state = core.begin(user_id="u1", cookie=None)
        body = b'{"snooze_seconds": 3600}'
        assert reply(core, state, "POST", "/uptake/nudges/try_reports/dismissed", body)[0] == 204
        state = core.begin(user_id=None, cookie="abcdef0123456789", mint=False)
        assert reply(core, state, "POST", "/uptake/nudges/other/dismissed/")[0] == 204
    assert [(e["event"], e.get("userId"), e.get("anonymousId")) for e in events] == [
        ("Nudge Shown", "u1", None),
        ("Nudge Clicked", "u1", None),
        ("Nudge Snoozed", "u1", None),
        ("Nudge Dismissed", None, "abcdef0123456789"),
    ]
    assert events[2]["properties"]["snooze_s"] == 3600.0


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status"),
    [
        ("GET", "/uptake/nope", b"", None, 404),
        ("POST", "/uptake/nudges", b"", "application/json", 405),
        ("GET", "/uptake/nudges/try_reports/shown", b"", None, 405),
        ("POST", "/uptake/nudges/unknown/shown", b"", "application/json", 404),
        ("POST", "/uptake/nudges/try_reports/shown", b"", "text/plain", 415),
        ("POST", "/uptake/nudges/try_reports/shown", b"", None, 415),
        ("POST", "/uptake/nudges/try_reports/shown", None, "application/json", 413),
        ("POST", "/uptake/nudges/try_reports/shown", b"x" * (MAX_BODY + 1), "application/json",
         413),
        ("POST", "/uptake/nudges/try_reports/shown", b"{not json", "application/json", 400),
        ("POST", "/uptake/nudges/try_reports/shown", b"[1]", "application/json", 400),
        ("POST", "/uptake/nudges/try_reports/shown", b'{"x": 1}', "application/json", 400),
        ("POST", "/uptake/nudges/try_reports/shown", b"[" * 4000, "application/json", 400),
        ("POST", "/uptake/nudges/try_reports/dismissed", b'{"snooze_seconds": -1}',
         "application/json", 400),
        ("POST", "/uptake/nudges/try_reports/dismissed", b'{"snooze_seconds": true}',
         "application/json", 400),
        ("POST", "/uptake/nudges/try_reports/dismissed", b'{"snooze_seconds": 1e400}',
         "application/json", 400),
        ("POST", "/uptake/nudges/try_reports/shown", b"{}", "application/json; charset=utf-8", 204),
    ],
)  # fmt: skip
def test_the_endpoint_refuses_what_it_cannot_use(
    method: str, path: str, body: bytes | None, content_type: str | None, status: int
) -> None:
    core = Integration(make_client())
    state = core.begin(user_id="u1", cookie=None)
    with capture_events():
        got, data = reply(core, state, method, path, body, content_type)
    assert got == status
    if status >= 400:
        assert isinstance(data["error"], str)


def test_the_endpoint_needs_a_user_or_visitor() -> None:
    core = Integration(make_client())
    nobody = core.begin(user_id=None, cookie=None, mint=False)
    assert reply(core, nobody, "GET", "/uptake/nudges")[0] == 401
    assert reply(core, nobody, "POST", "/uptake/nudges/try_reports/shown")[0] == 401


def test_the_endpoint_answers_500_when_the_sdk_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client()
    core = Integration(client)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(client, "nudge_shown", broken)
    state = core.begin(user_id="u1", cookie=None)
    assert reply(core, state, "POST", "/uptake/nudges/try_reports/shown")[0] == 500
    assert core.dropped == {"endpoint_error": 1}


def test_the_state_is_published_and_reset() -> None:
    core = Integration(make_client())
    state = core.begin(user_id="u1", cookie=None)
    assert uptake.integrations.current_state() is None
    assert uptake.integrations.current_nudges() == []
    from uptake.integrations._core import activate

    with activate(state):
        assert uptake.integrations.current_state() is state
    assert uptake.integrations.current_state() is None
