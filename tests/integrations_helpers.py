"""Shared pieces of the framework integration tests: clients, a WSGI caller, events."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import uptake
from uptake.collector import EventStore, create_app
from uptake.stores.memory import MemoryStore

#: A user id a hostile client could send in a header: control characters, then 10 KB.
HOSTILE_IDS = ["bob\r\nSet-Cookie: x=1", "a\x00b", "x" * 10_000, "\u2028"]


def make_client(**options: Any) -> uptake.Client:
    """A client that sends nothing, with a nudge that fires on the second dashboard view."""
    options.setdefault("send", False)
    options.setdefault("nudge_rate_limit", None)
    options.setdefault(
        "nudges",
        [
            uptake.Nudge(
                "try_reports",
                trigger=uptake.EventCount("Dashboard Viewed", 2),
                max_shows=5,
                priority=3,
                payload={"tooltip": "Try reports"},
            ),
            uptake.Nudge("other", trigger=uptake.EventCount("Never Happens", 1)),
        ],
    )
    return uptake.Client(**options)


class GatedStore(MemoryStore):
    """A rule store whose calls wait while its gate is closed: a slow store, made exact.

    ``shut()`` the gate, start a request, wait for ``entered`` (a call is now blocked in
    the store, as on a slow Redis round trip), check what else gets served meanwhile,
    then ``release()`` it.
    """

    in_process = False  # it waits, as a Redis or SQLite store does

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def shut(self) -> None:
        self.entered.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def _wait(self) -> None:
        if not self.gate.is_set():
            self.entered.set()
            if not self.gate.wait(5):
                raise TimeoutError("the store's gate was never opened")

    def get(self, key: str) -> Any:
        self._wait()
        return super().get(key)

    def update(self, key: str, change: Callable[..., Any], *args: Any) -> Any:
        self._wait()
        return super().update(key, change, *args)

    def update_many(self, keys: Any, change: Callable[..., Any], *args: Any) -> Any:
        self._wait()
        return super().update_many(keys, change, *args)


def gated_client(store: GatedStore) -> uptake.Client:
    """A client on ``store`` whose nudge fires on any feature use (the store is written)."""
    return make_client(
        store=store,
        nudges=[uptake.Nudge("tip", trigger=uptake.EventCount("Feature Used", 1))],
    )


def features(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The "Feature Used" events, in order."""
    return [e for e in events if e.get("event") == "Feature Used"]


def names(events: Iterable[dict[str, Any]]) -> list[str]:
    return [e.get("event") or e["type"] for e in events]


class WsgiResult:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.code = int(status.split()[0])
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def call_wsgi(
    app: Callable[..., Iterable[bytes]],
    path: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    close: bool = True,
) -> WsgiResult:
    """Call a WSGI app the way a server does: iterate the body, then ``close()`` it."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    started: list[Any] = []

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        started[:] = [status, response_headers]
        return lambda data: None

    result = app(environ, start_response)
    try:
        chunks = list(result)
    finally:
        if close and hasattr(result, "close"):
            result.close()
    return WsgiResult(started[0], started[1], b"".join(chunks))


# ---------------------------------------------------------------------- real servers


class CollectorServer(uvicorn.Server):
    """The reference collector under uvicorn in a thread; ``listening`` is set once it is."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


@contextlib.contextmanager
def running_collector(db: Path, write_key: str) -> Iterator[tuple[str, EventStore]]:
    """Run ``uptake serve``'s app on a free loopback port; yield its URL and store."""
    store = EventStore(db)
    config = uvicorn.Config(
        create_app(store, [write_key]), host="127.0.0.1", port=free_port(), log_level="warning"
    )
    server = CollectorServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert server.listening.wait(10), "the collector did not start"
        yield f"http://127.0.0.1:{config.port}", store
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until ``url`` answers 200, failing early (with its log) if ``proc`` exits."""

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout, url)


@contextlib.contextmanager
def server_process(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command, its output in ``log``; stop it (SIGTERM, then kill) at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
