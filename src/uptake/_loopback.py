"""A loopback HTTP receiver that speaks the Segment tracking API, for tests.

:class:`LoopbackCollector` runs a tiny threaded HTTP server on ``127.0.0.1`` that accepts
``POST /v1/batch`` the way a Segment-compatible collector does, records everything it
receives, and can be told to misbehave (error statuses, rate limiting, oversized-batch
rejections, hanging connections, going down and coming back up) so that delivery, retry and
back-off behaviour can be tested end to end without a network.

It uses only the standard library, never binds anything but the loopback interface and never
logs payloads.

Example:
    ```python
    from uptake.testing import LoopbackCollector

    with LoopbackCollector(write_key="test-key") as collector:
        client = uptake.Client(write_key="test-key", endpoint=collector.url)
        client.track("user-1", "Signed Up")
        assert client.flush(timeout=5)
        assert collector.wait_for_events(1, timeout=5)
        assert collector.events[0]["event"] == "Signed Up"
    ```
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import copy
import gzip
import hmac
import json
import logging
import socket
import socketserver
import threading
import zlib
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

__all__ = ["LoopbackCollector", "RecordedRequest"]

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


class LoopbackCollector:
    """A thread-based HTTP receiver for the Segment tracking API, bound to ``127.0.0.1``.

    The collector serves:

    * ``POST /v1/batch``: a JSON body ``{"batch": [...], "sentAt": "..."}``, plain or with
      ``Content-Encoding: gzip``. Accepted batches are answered ``200 {"success": true}``;
      malformed bodies get ``400``, a missing or wrong write key ``401``, batches with more
      than :attr:`max_events_per_batch` events ``413``.
    * ``GET /health``: ``200 {"status": "ok"}``.
    * Anything else: ``404`` (or ``405`` for a method other than POST on ``/v1/batch``).

    Every request is recorded in :attr:`requests`; accepted batches additionally feed
    :attr:`batches`, :attr:`events` and :attr:`message_ids`. All responses are JSON with a
    ``Content-Length``, and HTTP/1.1 keep-alive is supported.

    Faults can be injected, and changed, while the collector is running:
    :meth:`respond_with`, :meth:`fail_every`, :attr:`max_events_per_batch`, :meth:`hang`, and
    stopping then restarting on the same port (:meth:`stop` / :meth:`start`).

    All methods and properties are thread-safe; properties return copies.

    Example:
        ```python
        with LoopbackCollector() as collector:
            collector.respond_with(429, headers={"Retry-After": "1"})
            ...  # the first batch is rate limited, the retry is accepted
            assert collector.wait_for_events(3, timeout=5)
            assert collector.duplicates == 0
        ```

    Args:
        write_key: If set, every ``POST /v1/batch`` must carry
            ``Authorization: Basic base64(write_key + ":")`` or is answered ``401``.
        port: The port to bind on ``127.0.0.1``; ``0`` picks a free port on the first
            :meth:`start`, which later restarts reuse.
        max_events_per_batch: If set, batches with more events than this are answered
            ``413 Payload Too Large``.
    """

    def __init__(
        self,
        *,
        write_key: str | None = None,
        port: int = 0,
        max_events_per_batch: int | None = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int between 0 and 65535, got {port!r}")
        self._write_key = write_key
        self._port = port
        self._initial_max_events = self._check_max_events(max_events_per_batch)

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Serialises start() and stop(); never taken by request handlers.
        self._lifecycle = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

        # Records.
        self._requests: list[RecordedRequest] = []
        self._batches: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._message_ids: collections.Counter[str] = collections.Counter()

        # Faults.
        self._max_events = self._initial_max_events
        self._canned: collections.deque[_Reply] = collections.deque()
        self._fail_every = 0
        self._fail_reply = _Reply(503)
        self._batch_posts = 0
        self._hanging = False
        self._release = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind ``127.0.0.1`` and start serving in a daemon thread.

        After :meth:`stop`, this binds the same port again (the socket uses
        ``SO_REUSEADDR``), so a test can simulate a collector that goes down and comes back.
        Does nothing if the collector is already running.

        Raises:
            OSError: If the port cannot be bound, e.g. because something else took it.
        """
        with self._lifecycle:
            if self._server is not None:
                return
            server = _Server((_HOST, self._port), self)
            self._port = server.server_address[1]
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"uptake-loopback-{self._port}",
                daemon=True,
            )
            with self._lock:
                self._server = server
                self._thread = thread
            thread.start()

    def stop(self) -> None:
        """Stop serving, drop open connections and close the listening socket.

        Requests left hanging by :meth:`hang` are released without an answer and the hang
        mode ends. Records and other faults are kept. Safe to call more than once, and on a
        collector that was never started.
        """
        with self._lifecycle:
            with self._lock:
                server, thread = self._server, self._thread
                self._server = None
                self._thread = None
                self._end_hang()
            if server is None:
                return
            server.shutdown()
            server.drop_connections()
            server.server_close()
            if thread is not None:
                thread.join(timeout=5.0)

    def __enter__(self) -> LoopbackCollector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def is_running(self) -> bool:
        """Whether the collector is currently serving."""
        with self._lock:
            return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (``0`` if the collector was created with ``port=0`` and never started)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL to point a client at, e.g. ``"http://127.0.0.1:54321"``.

        Still valid after :meth:`stop`: a restart binds the same port.

        Raises:
            RuntimeError: If no port is known yet (``port=0`` and never started).
        """
        if self._port == 0:
            raise RuntimeError("LoopbackCollector has no port yet; call start() first")
        return f"http://{_HOST}:{self._port}"

    @property
    def write_key(self) -> str | None:
        """The write key required on ``POST /v1/batch``, or ``None`` if any is accepted."""
        return self._write_key

    # ------------------------------------------------------------------ records

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order, including rejected and faulted ones."""
        with self._lock:
            return copy.deepcopy(self._requests)

    @property
    def batches(self) -> list[dict[str, Any]]:
        """The parsed bodies of accepted ``POST /v1/batch`` requests, in arrival order."""
        with self._lock:
            return copy.deepcopy(self._batches)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events of all accepted batches, flattened, in arrival order."""
        with self._lock:
            return copy.deepcopy(self._events)

    @property
    def message_ids(self) -> collections.Counter[str]:
        """How many times each ``messageId`` was seen among accepted events."""
        with self._lock:
            return collections.Counter(self._message_ids)

    @property
    def duplicates(self) -> int:
        """The number of accepted events whose ``messageId`` had already been accepted.

        A ``messageId`` accepted three times counts as two duplicates.
        """
        with self._lock:
            return sum(count - 1 for count in self._message_ids.values() if count > 1)

    def wait_for_events(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` events have been accepted in total.

        Args:
            n: The number of accepted events to wait for.
            timeout: The maximum time to wait, in seconds.

        Returns:
            ``True`` if at least ``n`` events were accepted, ``False`` on timeout.
        """
        with self._changed:
            return self._changed.wait_for(lambda: len(self._events) >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` requests have been received in total.

        Every request counts, including rejected, faulted and hanging ones.

        Args:
            n: The number of requests to wait for.
            timeout: The maximum time to wait, in seconds.

        Returns:
            ``True`` if at least ``n`` requests were received, ``False`` on timeout.
        """
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= n, timeout)

    # ------------------------------------------------------------------ faults

    def respond_with(
        self,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` ``POST /v1/batch`` requests with a canned response.

        Canned responses queue up (first in, first out) and take precedence over
        :meth:`fail_every`, authentication and validation. Their batches are recorded in
        :attr:`requests` but never accepted: a 2xx canned response simulates a collector that
        claims success but loses the batch.

        Args:
            status: The HTTP status to answer with (200-599).
            headers: Extra response headers, e.g. ``{"Retry-After": "2"}``. A
                ``Connection: close`` header makes the collector close the connection.
            times: How many consecutive requests get this response.

        Raises:
            ValueError: If ``status``, ``headers`` or ``times`` is invalid.
        """
        payload = {"success": True} if _validate_status(status) < 300 else _error_payload(status)
        reply = _Reply(status, payload, _header_tuple(headers))
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int, got {times!r}")
        with self._lock:
            self._canned.extend([reply] * times)

    def fail_every(
        self, k: int, status: int = 503, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer every ``k``-th ``POST /v1/batch`` request with ``status``.

        Counting starts afresh at each call and covers every ``POST /v1/batch``, including
        those answered by :meth:`respond_with`. ``fail_every(2)`` fails the 2nd, 4th, ...
        request from now on.

        Args:
            k: The period; ``0`` disables the fault.
            status: The HTTP status to answer with (200-599).
            headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.

        Raises:
            ValueError: If ``k``, ``status`` or ``headers`` is invalid.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a non-negative int, got {k!r}")
        reply = _Reply(_validate_status(status), _error_payload(status), _header_tuple(headers))
        with self._lock:
            self._fail_every = k
            self._fail_reply = reply
            self._batch_posts = 0

    @property
    def max_events_per_batch(self) -> int | None:
        """Batches with more events than this are answered ``413``; ``None`` means no limit."""
        with self._lock:
            return self._max_events

    @max_events_per_batch.setter
    def max_events_per_batch(self, value: int | None) -> None:
        value = self._check_max_events(value)
        with self._lock:
            self._max_events = value

    def hang(self) -> None:
        """Stop answering: from now on, requests are read but never answered.

        Connections are still accepted and requests still recorded (with ``status=None``),
        so a client sees a read timeout. Hanging requests are released, and their
        connections closed without an answer, by :meth:`release`, :meth:`reset` or
        :meth:`stop`.
        """
        with self._lock:
            if not self._hanging:
                self._hanging = True
                self._release = threading.Event()

    def release(self) -> None:
        """End :meth:`hang`: close the hanging connections and answer new requests again."""
        with self._lock:
            self._end_hang()

    def reset(self) -> None:
        """Clear all records and faults.

        Empties :attr:`requests`, :attr:`batches`, :attr:`events` and :attr:`message_ids`;
        drops queued :meth:`respond_with` responses, disables :meth:`fail_every`, ends
        :meth:`hang`, and restores :attr:`max_events_per_batch` to its constructor value.
        The collector keeps running (or stopped) on the same port.
        """
        with self._lock:
            self._requests.clear()
            self._batches.clear()
            self._events.clear()
            self._message_ids.clear()
            self._canned.clear()
            self._fail_every = 0
            self._fail_reply = _Reply(503)
            self._batch_posts = 0
            self._max_events = self._initial_max_events
            self._end_hang()
            self._changed.notify_all()

    def __repr__(self) -> str:
        with self._lock:
            state = "running" if self._server is not None else "stopped"
            counts = f"requests={len(self._requests)} events={len(self._events)}"
        port = self._port or "unbound"
        return f"<LoopbackCollector {_HOST}:{port} {state} {counts}>"

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_max_events(value: int | None) -> int | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"max_events_per_batch must be an int or None, got {value!r}")
        if value is not None and value < 0:
            raise ValueError(f"max_events_per_batch must be >= 0, got {value!r}")
        return value

    def _end_hang(self) -> None:
        # Caller holds self._lock.
        self._hanging = False
        self._release.set()

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        if self._write_key is None:
            return True
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, f"{self._write_key}:".encode())

    def _record(self, request: RecordedRequest) -> None:
        # Caller holds self._lock.
        self._requests.append(request)
        self._changed.notify_all()

    def _handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        body_error: _BodyError | None,
    ) -> _Reply | _Hang:
        """Decide the response to one request and record it. Called from handler threads."""
        is_batch_post = method == "POST" and path == _BATCH_PATH
        parsed = _parse_batch(headers, raw) if is_batch_post and body_error is None else _Parsed()
        event_count = len(parsed.events)
        record = RecordedRequest(
            method=method,
            path=path,
            headers=headers,
            status=None,
            event_count=event_count,
            body=parsed.body,
            body_size=len(raw),
        )
        with self._lock:
            if body_error is not None:
                reply = _Reply(
                    body_error.status,
                    _error_payload(body_error.status, body_error.message),
                    close=True,
                )
                self._record(attrs.evolve(record, status=reply.status))
                return reply
            if is_batch_post:
                self._batch_posts += 1
            if self._hanging:
                self._record(record)
                return _Hang(self._release)
            accepted = False
            if is_batch_post:
                reply, accepted = self._decide_batch(headers, parsed)
            elif path == _BATCH_PATH:
                reply = _Reply(405, _error_payload(405), (("Allow", "POST"),))
            elif path == _HEALTH_PATH and method == "GET":
                reply = _Reply(200, {"status": "ok"})
            else:
                reply = _Reply(404, _error_payload(404))
            if accepted and parsed.body is not None:
                self._batches.append(parsed.body)
                self._events.extend(parsed.events)
                for event in parsed.events:
                    message_id = event.get("messageId")
                    if isinstance(message_id, str):
                        self._message_ids[message_id] += 1
            self._record(attrs.evolve(record, status=reply.status, accepted=accepted))
            return reply

    def _decide_batch(self, headers: Mapping[str, str], parsed: _Parsed) -> tuple[_Reply, bool]:
        """Return the reply to a ``POST /v1/batch`` and whether its batch is accepted."""
        # Caller holds self._lock.
        if self._canned:
            return self._canned.popleft(), False
        if self._fail_every and self._batch_posts % self._fail_every == 0:
            return self._fail_reply, False
        if not self._authorized(headers):
            reply = _Reply(
                401,
                _error_payload(401, "missing or invalid write key"),
                (("WWW-Authenticate", 'Basic realm="uptake-loopback"'),),
            )
            return reply, False
        if parsed.body is None:
            status = parsed.error_status
            return _Reply(status, _error_payload(status, parsed.error)), False
        if self._max_events is not None and len(parsed.events) > self._max_events:
            message = f"batch has {len(parsed.events)} events, limit is {self._max_events}"
            return _Reply(413, _error_payload(413, message)), False
        return _Reply(200, {"success": True}), True


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
