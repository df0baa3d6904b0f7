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
import copy
import hmac
import logging
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import attrs

from ._wire import (
    _BATCH_PATH,
    _HEALTH_PATH,
    _HOST,
    _POLL_INTERVAL,
    RecordedRequest,
    _BodyError,
    _error_payload,
    _Hang,
    _header_tuple,
    _parse_batch,
    _Parsed,
    _Reply,
    _Server,
    _validate_status,
)

__all__ = ["LoopbackCollector", "RecordedRequest"]

_logger = logging.getLogger(__name__)


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
