"""The pure WSGI middleware, called the way a WSGI server calls it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import uptake
from uptake.integrations import current_state
from uptake.integrations.wsgi import ENVIRON_KEY, UptakeMiddleware
from uptake.testing import LoopbackCollector, capture_events

from .conftest import WRITE_KEY
from .integrations_helpers import HOSTILE_IDS, call_wsgi, features, make_client

Environ = dict[str, Any]


def hello(environ: Environ, start_response: Any) -> Iterable[bytes]:
    state = current_state()
    assert state is environ[ENVIRON_KEY]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{state.user_id}|{[n.name for n in state.nudges]}".encode()]


def wrap(app: Any = hello, client: uptake.Client | None = None, **options: Any) -> UptakeMiddleware:
    options.setdefault("user_id", lambda environ: environ.get("HTTP_X_USER"))
    options.setdefault("features", {"/reports/*": "reports", "/dashboard": "dashboard"})
    return UptakeMiddleware(app, client or make_client(), **options)


def test_mapped_routes_record_feature_used_and_show_pending_nudges() -> None:
    client = make_client()
    app = wrap(client=client, nudges_header="X-Uptake-Nudges")
    with capture_events() as events:
        for _ in range(2):
            client.track("u1", "Dashboard Viewed")
        result = call_wsgi(app, "/reports/7", headers={"X-User": "u1"})
        call_wsgi(app, "/unmapped", headers={"X-User": "u1"})
    assert result.code == 200
    assert result.body == b"u1|['try_reports']"
    assert result.header("X-Uptake-Nudges") == "try_reports"
    [event] = features(events)
    assert event["userId"] == "u1"
    assert event["properties"] == {"feature": "reports", "method": "GET", "status": 200}


def test_skipped_requests_record_nothing_and_read_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client()
    monkeypatch.setattr(client, "pending_nudges", pytest.fail)
    app = wrap(client=client, features={"*": "everything"}, nudges_header="X-Uptake-Nudges")
    with capture_events() as events:
        for path in ("/static/app.css", "/health", "/logo.png"):
            result = call_wsgi(app, path, headers={"X-User": "u1"})
            assert result.code == 200 and result.body == b"None|[]"
            assert result.header("Set-Cookie") is None
        call_wsgi(app, "/reports/1", method="HEAD", headers={"X-User": "u1"})
    assert events == []


def test_an_anonymous_visitor_gets_a_cookie_then_is_aliased_at_sign_in() -> None:
    app = wrap()
    with capture_events() as events:
        first = call_wsgi(app, "/reports/1")
        cookie = first.header("Set-Cookie")
        assert cookie is not None and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        anon = cookie.split(";")[0].split("=")[1]
        again = call_wsgi(app, "/reports/2", headers={"Cookie": f"uptake_anon={anon}"})
        assert again.header("Set-Cookie") is None
        signed_in = call_wsgi(
            app, "/reports/3", headers={"Cookie": f"uptake_anon={anon}", "X-User": "u1"}
        )
        assert (signed_in.header("Set-Cookie") or "").startswith("uptake_anon=; Max-Age=0")
    used = features(events)
    assert [(e.get("userId"), e.get("anonymousId")) for e in used] == [
        (None, anon),
        (None, anon),
        ("u1", None),
    ]
    [identify] = [e for e in events if e["type"] == "identify"]
    assert (identify["userId"], identify["anonymousId"]) == ("u1", anon)


def test_a_secure_request_gets_a_secure_cookie() -> None:
    app = wrap()
    environ_app = app

    def https(environ: Environ, start_response: Any) -> Iterable[bytes]:
        environ["wsgi.url_scheme"] = "https"
        return environ_app(environ, start_response)

    with capture_events():
        result = call_wsgi(https, "/reports/1")
    assert "; Secure" in (result.header("Set-Cookie") or "")


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_a_malicious_user_id_header_is_dropped_and_the_request_served(hostile: str) -> None:
    app = wrap(anonymous_cookie=None)
    with capture_events() as events:
        result = call_wsgi(app, "/reports/1", headers={"X-User": hostile})
    assert result.code == 200 and result.body == b"None|[]"
    assert events == []
    assert app.dropped == {"invalid_user_id": 1}


def test_a_missing_user_is_not_an_error() -> None:
    app = wrap(anonymous_cookie=None)
    with capture_events() as events:
        assert call_wsgi(app, "/reports/1").code == 200
    assert events == [] and app.dropped == {}


def test_an_exception_in_the_app_is_recorded_and_re_raised() -> None:
    def boom(environ: Environ, start_response: Any) -> Iterable[bytes]:
        raise ZeroDivisionError

    app = wrap(boom)
    with capture_events() as events, pytest.raises(ZeroDivisionError):
        call_wsgi(app, "/reports/1", headers={"X-User": "u1"})
    [event] = features(events)
    assert event["properties"]["status"] == 500 and event["properties"]["error"] is True
    assert current_state() is None


def test_a_streamed_body_keeps_the_state_and_close_is_forwarded() -> None:
    seen: list[str | None] = []
    closed = threading.Event()

    class Stream:
        def __iter__(self) -> Iterator[bytes]:
            for i in range(3):
                state = current_state()
                seen.append(state.user_id if state else None)
                yield str(i).encode()

        def close(self) -> None:
            closed.set()

    def streaming(environ: Environ, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Stream()

    app = wrap(streaming)
    with capture_events() as events:
        result = call_wsgi(app, "/reports/1", headers={"X-User": "u1"})
    assert result.body == b"012"
    assert seen == ["u1", "u1", "u1"]
    assert closed.is_set()
    assert len(features(events)) == 1  # once, though both the end and close() were seen
    assert current_state() is None


def test_an_error_while_streaming_is_recorded() -> None:
    def failing(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise OSError("disk gone")

    app = wrap(failing)
    with capture_events() as events, pytest.raises(OSError):
        call_wsgi(app, "/reports/1", headers={"X-User": "u1"})
    [event] = features(events)
    assert event["properties"]["error"] is True and event["properties"]["status"] == 200


def test_a_body_closed_early_is_still_recorded() -> None:
    app = wrap()
    environ: Environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/reports/1", "HTTP_X_USER": "u1"}
    with capture_events() as events:
        body = app(environ, lambda status, headers, exc_info=None: None)
        body.close()  # type: ignore[attr-defined]
    assert len(features(events)) == 1


def test_wrapping_twice_is_harmless() -> None:
    client = make_client()
    inner = wrap(client=client)
    outer = wrap(inner, client=client)
    with capture_events() as events:
        result = call_wsgi(outer, "/reports/1")
    assert len(result.all("Set-Cookie")) == 1
    assert len(features(events)) == 1


def test_the_nudge_endpoint_is_served_by_the_middleware() -> None:
    client = make_client()
    app = wrap(client=client)
    for _ in range(2):
        client.track("u1", "Dashboard Viewed")
    with capture_events() as events:
        listed = call_wsgi(app, "/uptake/nudges", headers={"X-User": "u1"})
        shown = call_wsgi(
            app,
            "/uptake/nudges/try_reports/shown",
            method="POST",
            headers={"X-User": "u1"},
            content_type="application/json",
        )
        big = call_wsgi(
            app,
            "/uptake/nudges/try_reports/dismissed",
            method="POST",
            headers={"X-User": "u1"},
            content_type="application/json",
            body=b" " * 10_000,
        )
        nobody = call_wsgi(app, "/uptake/nudges")
    assert listed.code == 200 and b"try_reports" in listed.body
    assert listed.header("Content-Type") == "application/json"
    assert shown.code == 204 and shown.body == b""
    assert big.code == 413
    assert nobody.code == 401 and nobody.header("Set-Cookie") is None
    assert [e["event"] for e in events] == ["Nudge Shown"]
    assert call_wsgi(wrap(endpoint=None), "/uptake/nudges").body == b"None|[]"


def test_sdk_failures_never_break_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client()
    app = wrap(client=client)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.integration, "begin", broken)
    assert call_wsgi(app, "/reports/1", headers={"X-User": "u1"}).body == b"None|[]"
    monkeypatch.undo()
    monkeypatch.setattr(client, "feature_used", broken)
    monkeypatch.setattr(client, "pending_nudges", broken)
    assert call_wsgi(app, "/reports/1", headers={"X-User": "u1"}).body == b"u1|[]"
    assert app.dropped == {"sdk_error": 2, "nudges_error": 1}


def test_the_request_never_waits_on_a_hung_collector() -> None:
    with LoopbackCollector(write_key=WRITE_KEY) as collector:
        collector.hang()
        client = uptake.Client(
            write_key=WRITE_KEY, endpoint=collector.url, flush_at=1, timeout=30, exit_timeout=0
        )
        app = wrap(client=client)
        try:
            import time

            started = time.monotonic()
            for i in range(20):
                assert call_wsgi(app, "/reports/1", headers={"X-User": f"u{i}"}).code == 200
            assert time.monotonic() - started < 1.0
        finally:
            collector.release()
            client.shutdown(timeout=2)


def test_a_hundred_parallel_requests_keep_their_own_state() -> None:
    client = make_client()
    barrier = threading.Barrier(20)

    def echo(environ: Environ, start_response: Any) -> Iterable[bytes]:
        barrier.wait(timeout=10)  # twenty requests in flight at once
        state = current_state()
        start_response("200 OK", [])
        return [(state.user_id or "").encode()]

    app = wrap(echo, client=client)
    with capture_events() as events, ThreadPoolExecutor(20) as pool:
        results = list(
            pool.map(
                lambda i: call_wsgi(app, "/reports/1", headers={"X-User": f"user-{i}"}).body,
                range(100),
            )
        )
    assert results == [f"user-{i}".encode() for i in range(100)]
    assert sorted(e["userId"] for e in features(events)) == sorted(f"user-{i}" for i in range(100))


def _post_environ(path: str, body: bytes, declared: int, **extra: Any) -> Environ:
    import io

    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "HTTP_X_USER": "u1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(declared),
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def test_a_truncated_endpoint_body_is_refused_and_records_nothing() -> None:
    app = wrap()
    started: list[str] = []
    environ = _post_environ("/uptake/nudges/try_reports/dismissed", b'{"snooze', 22)
    with capture_events() as events:
        app(environ, lambda status, headers, exc_info=None: started.append(status))
    assert started == ["400 Bad Request"] and events == []


def test_a_cross_site_post_is_refused() -> None:
    app = wrap()
    codes = []
    with capture_events() as events:
        for site in ("cross-site", "same-site"):
            result = call_wsgi(
                app,
                "/uptake/nudges/try_reports/shown",
                method="POST",
                headers={"X-User": "u1", "Sec-Fetch-Site": site},
                content_type="application/json",
            )
            codes.append(result.code)
    assert codes == [403, 204]
    assert [e["event"] for e in events] == ["Nudge Shown"]


def test_a_file_wrapper_body_is_returned_untouched_and_recorded_at_close() -> None:
    import io
    from wsgiref.util import FileWrapper

    data = io.BytesIO(b"file contents")

    def send_file(environ: Environ, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](data, 4)
        return wrapper

    app = wrap(send_file)
    environ: Environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/reports/1",
        "HTTP_X_USER": "u1",
        "wsgi.file_wrapper": FileWrapper,
    }
    with capture_events() as events:
        body = app(environ, lambda status, headers, exc_info=None: None)
        assert isinstance(body, FileWrapper)  # the server can still use sendfile
        assert features(events) == []  # not sent yet
        body.close()  # type: ignore[attr-defined]
        body.close()  # type: ignore[attr-defined]
    assert data.closed  # close() forwarded
    [event] = features(events)
    assert event["properties"]["status"] == 200


def test_a_file_wrapper_whose_close_cannot_be_wrapped_is_recorded_at_once() -> None:
    class Slotted:
        __slots__ = ("filelike",)

        def __init__(self, filelike: Any, block_size: int = 8192) -> None:
            self.filelike = filelike

        def __iter__(self) -> Iterator[bytes]:
            yield self.filelike

    def send_file(environ: Environ, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](b"x")
        return wrapper

    app = wrap(send_file)
    environ: Environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/reports/1",
        "HTTP_X_USER": "u1",
        "wsgi.file_wrapper": Slotted,
    }
    with capture_events() as events:
        assert isinstance(app(environ, lambda status, headers, exc_info=None: None), Slotted)
    assert len(features(events)) == 1


def test_an_app_that_never_starts_a_response_is_recorded_as_an_error() -> None:
    def silent(environ: Environ, start_response: Any) -> Iterable[bytes]:
        return []

    app = wrap(silent)
    with capture_events() as events:
        body = app(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/reports/1", "HTTP_X_USER": "u1"},
            lambda status, headers, exc_info=None: None,
        )
        assert list(body) == []
    [event] = features(events)
    assert event["properties"]["status"] == 500 and event["properties"]["error"] is True
