"""A loopback server speaking the part of ClickHouse's HTTP interface clickhouse-connect uses.

There is no ClickHouse server to install here, so the tests run one of their own: a real
HTTP server on 127.0.0.1 that reads a request as ClickHouse does (the query in the ``query``
parameter and/or the body, settings as URL parameters, the user by Basic auth or the
``X-ClickHouse-User``/``X-ClickHouse-Key`` headers or the ``user``/``password``
parameters, a ``session_id``) and answers it with chdb, ClickHouse in process, in the
format the query asks for (clickhouse-connect asks for ``Native``). An error is answered
as ClickHouse answers it: a status, ``X-ClickHouse-Exception-Code`` and the message.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: URL parameters that are not settings of the query.
_TRANSPORT = {
    "query",
    "database",
    "default_format",
    "user",
    "password",
    "session_id",
    "session_timeout",
    "session_check",
    "query_id",
    "compress",
    "decompress",
    "quota_key",
    "wait_end_of_query",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "enable_http_compression",
    "buffer_size",
    "client_protocol_version",
}
_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z]+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)")
#: HTTP status of some exception codes, as ClickHouse gives them.
_STATUS = {60: 404, 81: 404, 516: 403, 47: 400, 62: 400}


class ChdbHttpServer:
    """ClickHouse's HTTP interface over one chdb session, on 127.0.0.1.

    Attributes:
        port: The port it listens on.
        queries: Every query text received, in order.
        sessions: The ``session_id`` of each request.
    """

    def __init__(self, session: Any, user: str = "default", password: str = "") -> None:
        self.session = session
        self.user = user
        self.password = password
        self.queries: list[str] = []
        self.sessions: list[str | None] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server._handle(self, self.rfile.read(length))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _credentials(
        self, handler: BaseHTTPRequestHandler, params: dict[str, str]
    ) -> tuple[str, str]:
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return user, password
        if "X-ClickHouse-User" in handler.headers:
            return handler.headers["X-ClickHouse-User"], handler.headers.get("X-ClickHouse-Key", "")
        return params.get("user", "default"), params.get("password", "")

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        params = dict(parse_qsl(urlsplit(handler.path).query, keep_blank_values=True))
        if urlsplit(handler.path).path == "/ping":
            self._reply(handler, 200, b"Ok.\n", {})
            return
        user, password = self._credentials(handler, params)
        if (user, password) != (self.user, self.password):
            message = (
                f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)"
            )
            self._error(handler, message)
            return
        query = "\n".join(p for p in (params.get("query", ""), body.decode()) if p.strip())
        fmt = "TabSeparated"
        found = _FORMAT.search(query)
        if found:
            fmt = found.group(1)
            query = query[: found.start()]
        with self._lock:
            self.queries.append(query)
            self.sessions.append(params.get("session_id"))
            try:
                database = params.get("database")
                if database:
                    self.session.query(f"USE `{database}`")
                for key, value in params.items():
                    if key not in _TRANSPORT and _SETTING.fullmatch(key):
                        self.session.query(f"SET {key} = '{value}'")
                result = self.session.query(query, fmt)
                data = result.bytes() if hasattr(result, "bytes") else bytes(result)
            except Exception as exc:  # answered as ClickHouse answers: status and message
                self._error(handler, str(exc))
                return
        self._reply(handler, 200, data, {"X-ClickHouse-Format": fmt})

    def _error(self, handler: BaseHTTPRequestHandler, message: str) -> None:
        found = _CODE.search(message)
        code = int(found.group(1)) if found else 1002
        if not found:
            message = f"Code: {code}. DB::Exception: {message}"
        self._reply(
            handler,
            _STATUS.get(code, 500),
            (message + "\n").encode(),
            {"X-ClickHouse-Exception-Code": str(code)},
        )

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str]
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("X-ClickHouse-Server-Display-Name", "uptake-test")
        handler.send_header("X-ClickHouse-Timezone", "UTC")
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


@contextmanager
def chdb_http_server(
    session: Any, user: str = "default", password: str = ""
) -> Iterator[ChdbHttpServer]:
    """Serve a chdb session over ClickHouse's HTTP interface on 127.0.0.1 while in use."""
    server = ChdbHttpServer(session, user, password)
    server.start()
    try:
        yield server
    finally:
        server.stop()
