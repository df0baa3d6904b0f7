"""Celery: the context travels in a task's message header to a real worker.

The broker is a redis-server on 127.0.0.1 (the suite's own): every message, headers
included, is serialised to JSON, stored in Redis and read back by the worker (a thread of
this process, with a context of its own), as with any production broker.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.worker import state

import uptake
from uptake.integrations.celery import HEADER, CeleryContext, install
from uptake.testing import capture_events

from .redis_server import RedisServer


@pytest.fixture
def client() -> Iterator[uptake.Client]:
    client = uptake.Client(send=False, session_events=False)
    yield client
    client.shutdown()


@pytest.fixture
def handlers(client: uptake.Client) -> Iterator[CeleryContext]:
    handlers = install(client)
    yield handlers
    handlers.uninstall()


def make_app(redis_server: RedisServer) -> Celery:
    app = Celery("uptake_test", set_as_current=False)
    app.conf.update(
        broker_url=redis_server.url,
        # keys of its own: other tests share this redis-server
        broker_transport_options={"global_keyprefix": f"test-{uuid.uuid4().hex}:"},
        task_default_queue=f"uptake-{uuid.uuid4().hex}",
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    return app


@contextlib.contextmanager
def worker(app: Celery) -> Iterator[None]:
    """A worker thread for the block; Celery's logging set-up is undone afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]

    @app.task(name="wake")
    def wake() -> None:
        pass

    try:
        with start_worker(app, pool="solo", perform_ping_check=False):
            yield
            # Stop now rather than at the end of the worker's 2 s wait for messages: ask
            # it to stop, then wake it (what start_worker's exit does, without the wait).
            state.should_terminate = 0
            wake.delay()
            wake.delay()
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def test_a_task_runs_in_the_context_it_was_sent_from(
    redis_server: RedisServer, client: uptake.Client, handlers: CeleryContext
) -> None:
    app = make_app(redis_server)
    seen: queue.Queue[Any] = queue.Queue()

    @app.task(name="export")
    def export(rows: int) -> None:
        context = client.current_context()
        if context is not None:
            client.track("Report Exported", properties={"rows": rows})
        seen.put(context)

    with capture_events(client) as events, worker(app):
        with client.context(user_id="u1", account_id="acme", properties={"plan": "pro"}):
            export.delay(3)
        first = seen.get(timeout=10)
        export.delay(4)  # sent outside any context: none in the worker either
        second = seen.get(timeout=10)
        with client.context(anonymous_id="visitor-1"):
            export.delay(5)
        third = seen.get(timeout=10)
    assert (first.user_id, first.account_id, dict(first.properties)) == (
        "u1",
        "acme",
        {"plan": "pro"},
    )
    assert second is None  # the first task's context was closed after it ran
    assert (third.user_id, third.anonymous_id) == (None, "visitor-1")
    assert [
        (e.get("userId"), e.get("anonymousId"), e["context"].get("groupId"), e["properties"])
        for e in events
    ] == [
        ("u1", None, "acme", {"plan": "pro", "rows": 3}),
        (None, "visitor-1", None, {"rows": 5}),
    ]
    assert handlers.dropped == 0


def test_the_header_carries_json(client: uptake.Client, handlers: CeleryContext) -> None:
    headers: dict[str, Any] = {}
    with client.context(user_id=7, properties={"when": __import__("datetime").date(2026, 1, 2)}):
        handlers.before_publish(headers=headers)
    assert headers == {HEADER: {"user_id": "7", "properties": {"when": "2026-01-02"}}}


def test_a_bad_header_is_dropped_and_the_task_runs(
    client: uptake.Client, handlers: CeleryContext, caplog: pytest.LogCaptureFixture
) -> None:
    class Request:
        uptake_context: object = {"user_id": ["not", "an", "id"]}

    class Task:
        request = Request()

    handlers.prerun(task_id="t1", task=Task())
    assert client.current_context() is None and handlers.dropped == 1
    handlers.postrun(task_id="t1")  # nothing was opened: nothing to close
    assert "runs without it" in caplog.text


def test_install_checks_its_arguments() -> None:
    with pytest.raises(uptake.ConfigurationError, match=r"uptake\.Client"):
        install(object())  # type: ignore[arg-type]
    with pytest.raises(uptake.ConfigurationError, match="header"):
        install(uptake.Client(send=False), header="")
