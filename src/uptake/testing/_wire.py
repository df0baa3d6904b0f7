"""The HTTP side of the loopback collector: body parsing, replies, the threaded server.

Kept apart from :mod:`uptake.testing._collector`, which decides what to answer; this module
reads requests, decodes batches and writes the replies it is given.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import socketserver
import threading
import zlib
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import attrs

if TYPE_CHECKING:
    from ._collector import LoopbackCollector

__all__ = ["RecordedRequest"]

_logger = logging.getLogger(__name__)

_HOST: Final = "127.0.0.1"
_BATCH_PATH: Final = "/v1/batch"
_HEALTH_PATH: Final = "/health"
# Requests whose body is larger than this are refused outright (413) to keep memory bounded.
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_MAX_LINE_BYTES: Final = 64 * 1024
# How often ``serve_forever`` checks for a shutdown request; bounds the latency of ``stop()``.
_POLL_INTERVAL: Final = 0.05
# Response headers the collector computes itself and that canned headers may not override.
_RESERVED_HEADERS: Final = frozenset({"content-length", "transfer-encoding"})


@attrs.frozen
class RecordedRequest:
    """One HTTP request received by a :class:`LoopbackCollector`.

    Attributes:
        method: The HTTP method, e.g. ``"POST"``.
        path: The request path without its query string, e.g. ``"/v1/batch"``.
        headers: The request headers, with lower-case names. Repeated headers are joined
            with ``", "``.
        status: The status code the collector answered with, or ``None`` if the request was
            never answered (it arrived while the collector was hanging, see
            :meth:`LoopbackCollector.hang`).
        event_count: The number of events in the request's batch, or ``0`` if the body could
            not be parsed as a batch.
        body: The parsed JSON body (``{"batch": [...], "sentAt": ...}``) if it was a valid
            batch, whether or not it was accepted; ``None`` otherwise.
        body_size: The size in bytes of the body as received on the wire (after any
            transfer decoding, before gzip decompression).
        accepted: Whether the batch was accepted, i.e. its events were added to
            :attr:`LoopbackCollector.events`. Canned responses (even 2xx) never accept.
    """

    method: str
    path: str
    headers: dict[str, str]
    status: int | None
    event_count: int = 0
    body: dict[str, Any] | None = None
    body_size: int = 0
    accepted: bool = False


@attrs.frozen
class _Reply:
    """A response decided by the collector, written by the request handler."""

    status: int
    payload: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


@attrs.frozen
class _Hang:
    """Tells the request handler to leave the request unanswered until ``release`` is set."""

    release: threading.Event


@attrs.define
class _Parsed:
    """The outcome of decoding a request body as a batch."""

    body: dict[str, Any] | None = None
    error_status: int = 0
    error: str = ""
    events: list[dict[str, Any]] = attrs.field(factory=list)


class _BodyError(Exception):
    """The request body could not be read (bad framing or too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error_payload(status: int, message: str | None = None) -> dict[str, Any]:
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = f"HTTP {status}"
    return {"success": False, "error": message}


def _parse_batch(headers: Mapping[str, str], raw: bytes) -> _Parsed:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return _Parsed(error_status=400, error="body is not valid gzip data")
    elif encoding not in ("", "identity"):
        return _Parsed(error_status=415, error=f"unsupported Content-Encoding: {encoding}")
    try:
        document = json.loads(raw)
    except ValueError:
        return _Parsed(error_status=400, error="body is not valid JSON")
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        return _Parsed(error_status=400, error="body must be a JSON object with a 'batch' array")
    batch: list[Any] = document["batch"]
    if not all(isinstance(event, dict) for event in batch):
        return _Parsed(error_status=400, error="every item of 'batch' must be a JSON object")
    return _Parsed(body=document, events=list(batch))


def _validate_status(status: int) -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError(f"status must be an int between 200 and 599, got {status!r}")
    return status


def _header_tuple(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    result = tuple((str(name), str(value)) for name, value in headers.items())
    for name, value in result:
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is computed by the collector and cannot be set")
        if any(ch in name or ch in value for ch in "\r\n"):
            raise ValueError("header names and values must not contain line breaks")
    return result


class _Server(ThreadingHTTPServer):
    """A loopback-only threaded HTTP server that can drop its open connections on stop."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], collector: LoopbackCollector) -> None:
        self.collector = collector
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the host, which can be slow; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut down every open connection so idle keep-alive handlers end promptly."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # Clients going away (timeouts, resets) are expected; never print tracebacks.
        _logger.debug("loopback collector: error while handling a request", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uptake-loopback"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # Never log requests (they may carry payloads or keys).
        return

    def _dispatch(self) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raw = b""
        body_error: _BodyError | None = None
        try:
            raw = self._read_body()
        except _BodyError as exc:
            body_error = exc
        except OSError:
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        outcome = self.server.collector._handle(self.command, path, headers, raw, body_error)
        if isinstance(outcome, _Hang):
            outcome.release.wait()
            self.close_connection = True
            return
        try:
            self._send(outcome)
        except OSError:
            self.close_connection = True

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BodyError(400, "invalid Content-Length") from None
        if length < 0:
            raise _BodyError(400, "invalid Content-Length")
        if length > _MAX_BODY_BYTES:
            raise _BodyError(413, "request body too large")
        data = self.rfile.read(length)
        if len(data) < length:
            raise _BodyError(400, "incomplete request body")
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE_BYTES)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "invalid chunked encoding") from None
            if size < 0:
                raise _BodyError(400, "invalid chunked encoding")
            if size == 0:
                break
            total += size
            if total > _MAX_BODY_BYTES:
                raise _BodyError(413, "request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _BodyError(400, "incomplete request body")
            chunks.append(chunk)
            self.rfile.readline(_MAX_LINE_BYTES)
        # Skip trailer fields up to the blank line that ends the message.
        while self.rfile.readline(_MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)

    def _send(self, reply: _Reply) -> None:
        no_body = reply.status in (204, 304)
        body = b"" if no_body else json.dumps(reply.payload or {}).encode()
        self.send_response(reply.status)
        custom = {name.lower() for name, _ in reply.headers}
        if "content-type" not in custom and not no_body:
            self.send_header("Content-Type", "application/json")
        for name, value in reply.headers:
            self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        if reply.close:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()
