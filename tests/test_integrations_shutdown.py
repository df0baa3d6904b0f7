"""``kill -TERM`` of loaded servers: every request answered has its event at the collector.

Real servers in child processes (uvicorn; gunicorn with sync workers and with uvicorn's
workers), a client with the default one-second flush interval, the reference collector
(``uptake serve``'s app) on 127.0.0.1. Each request carries its own user id, so the
collector's events can be matched one to one with the answered requests.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .integrations_helpers import (
    free_port,
    running_collector,
    server_process,
    wait_for_http,
    wait_until,
)

KEY = "wk_shutdown"
REQUESTS = 300
SLOW = 12

ASGI_APP = """
import asyncio

from fastapi import FastAPI

import uptake
from uptake.integrations.fastapi import UptakeMiddleware

client = uptake.Client()  # UPTAKE_ENDPOINT, UPTAKE_WRITE_KEY; flush_interval=1.0
app = FastAPI()
app.add_middleware(
    UptakeMiddleware,
    client=client,
    user_id=lambda request: request.headers.get("x-user"),
    features={"/work/*": "work", "/slow/*": "slow"},
)
in_flight = 0


@app.get("/work/{i}")
def work(i: int) -> dict[str, int]:
    return {"i": i}


@app.get("/slow/{i}")
async def slow(i: int) -> dict[str, int]:
    global in_flight
    in_flight += 1
    print(f"in flight: {in_flight}", flush=True)
    await asyncio.sleep(1.0)  # still running when SIGTERM comes
    return {"i": i}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
"""

WSGI_APP = """
import uptake
from uptake.integrations.wsgi import UptakeMiddleware

client = uptake.Client()  # UPTAKE_ENDPOINT, UPTAKE_WRITE_KEY; flush_interval=1.0


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


app = UptakeMiddleware(
    hello, client, user_id=lambda environ: environ.get("HTTP_X_USER"), features={"/work/*": "work"}
)
"""


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    with running_collector(tmp_path / "events.db", KEY) as found:
        yield found


def write_app(tmp_path: Path, source: str) -> Path:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "shutdown_app.py").write_text(textwrap.dedent(source))
    return app_dir


def env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "UPTAKE_ENDPOINT": url,
        "UPTAKE_WRITE_KEY": KEY,
        "PYTHONUNBUFFERED": "1",
    }


def load(base: str, prefix: str, count: int, start: int = 0) -> list[str]:
    """``count`` requests from 16 threads, each as its own user; the users answered."""
    with httpx.Client(base_url=base, timeout=30) as http, ThreadPoolExecutor(16) as pool:

        def one(i: int) -> str | None:
            user = f"{prefix}{i}"
            ok = http.get(f"/{prefix}/{i}", headers={"X-User": user}).status_code == 200
            return user if ok else None

        return [u for u in pool.map(one, range(start, start + count)) if u is not None]


def users_at(store: Any) -> list[str]:
    return [e["userId"] for e in store.events() if e.get("event") == "Feature Used"]


def assert_all_delivered(store: Any, answered: list[str], log: Path) -> None:
    wait_until(lambda: len(users_at(store)) >= len(answered), 10, "the events at the collector")
    got = users_at(store)
    assert sorted(got) == sorted(answered), log.read_text()[-2000:]


def test_sigterm_to_uvicorn_under_load_loses_nothing(
    tmp_path: Path, collector: tuple[str, Any]
) -> None:
    url, store = collector
    port = free_port()
    args = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(write_app(tmp_path, ASGI_APP)),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "shutdown_app:app",
    ]  # fmt: skip
    log = tmp_path / "uvicorn.log"
    base = f"http://127.0.0.1:{port}"
    with server_process(args, env(url), log) as proc:
        wait_for_http(f"{base}/health", proc)
        answered = load(base, "work", REQUESTS)
        with ThreadPoolExecutor(SLOW) as pool:  # requests still in flight at SIGTERM
            slow = pool.submit(load, base, "slow", SLOW)
            wait_until(lambda: f"in flight: {SLOW}" in log.read_text(), 10, "slow requests")
            proc.send_signal(signal.SIGTERM)
            answered += slow.result(timeout=30)
        assert proc.wait(30) == -signal.SIGTERM  # uvicorn still dies by the signal
    assert len(answered) == REQUESTS + SLOW
    assert_all_delivered(store, answered, log)


@pytest.mark.parametrize("worker", ["sync", "uvicorn.workers.UvicornWorker"])
def test_sigterm_to_gunicorn_workers_and_arbiter_under_load_loses_nothing(
    tmp_path: Path, collector: tuple[str, Any], worker: str
) -> None:
    url, store = collector
    port = free_port()
    source = WSGI_APP if worker == "sync" else ASGI_APP
    args = [
        sys.executable, "-m", "gunicorn", "-w", "2", "-k", worker,
        "-b", f"127.0.0.1:{port}", "--chdir", str(write_app(tmp_path, source)),
        "shutdown_app:app",
    ]  # fmt: skip
    log = tmp_path / "gunicorn.log"
    base = f"http://127.0.0.1:{port}"
    with server_process(args, env(url), log) as proc:
        wait_for_http(f"{base}/health", proc)
        answered = load(base, "work", REQUESTS)
        # A worker stopped on its own (a reload, max_requests): the arbiter starts another.
        first = workers_of(proc.pid)
        assert len(first) == 2
        for pid in first:
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not first & workers_of(proc.pid), 30, "the old workers to exit")
        wait_for_http(f"{base}/health", proc)
        answered += load(base, "work", 50, start=REQUESTS)
        proc.send_signal(signal.SIGTERM)  # the arbiter passes it to its workers
        assert proc.wait(30) == 0, log.read_text()[-2000:]
    assert len(answered) == REQUESTS + 50
    assert_all_delivered(store, answered, log)
    assert "Traceback" not in log.read_text()


def workers_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux ``/proc``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children}


SCRIPT_SERVER = """
import sys

import uvicorn

import uptake

client = uptake.Client(flush_interval=60, flush_at=10_000)  # built before uvicorn runs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # no lifespan, and no uptake middleware: only the SIGTERM handler can flush
    if scope["path"] != "/health":
        user = dict(scope["headers"])[b"x-user"].decode()
        client.track(user, "Feature Used", {"feature": "work"})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_uvicorn_puts_uptakes_handler_back_and_it_flushes_before_the_process_dies(
    tmp_path: Path, collector: tuple[str, Any]
) -> None:
    url, store = collector
    port = free_port()
    script = write_app(tmp_path, SCRIPT_SERVER) / "shutdown_app.py"
    log = tmp_path / "script.log"
    base = f"http://127.0.0.1:{port}"
    with server_process([sys.executable, str(script), str(port)], env(url), log) as proc:
        wait_for_http(f"{base}/health", proc)
        answered = load(base, "work", 100)
        assert users_at(store) == []  # all queued: the interval is a minute
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM, log.read_text()
    assert_all_delivered(store, answered, log)
