"""Moving batches to the collector: the :class:`Transport` protocol and :class:`HttpTransport`.

A transport has one method that matters, ``send``: give it the encoded events of one batch,
get back a :class:`SendOutcome` saying how many were delivered and which failed. The worker
depends on the protocol only, so tests (and :class:`uptake.testing.MockTransport`) can
stand in for the network. :class:`HttpTransport` speaks the Segment batch API over httpx;
httpx and tenacity stay behind it and no type of theirs leaves this module.

Retry policy: connection errors, timeouts, 408, 429 and 5xx are retried with exponential
backoff and full jitter (``min_backoff * 2**n``, each wait capped by ``max_backoff``) until
``retry_timeout`` seconds have passed since the batch's first attempt. A ``Retry-After``
header (seconds or an HTTP date) is obeyed: nothing is sent before it, by this batch or the
next. 413 splits the batch in halves that are sent on their own. Any other status is final.
"""

from __future__ import annotations

import base64
import email.utils
import gzip as _gzip
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs
import httpx as _httpx
import tenacity as _t

from ._version import __version__
from .errors import DeliveryError
from .events import format_timestamp

logger = logging.getLogger("uptake")

_RETRY_STATUSES = frozenset({408, 429})
#: Longest ``Retry-After`` obeyed, in seconds; longer requests are shortened to this.
MAX_RETRY_AFTER = 24 * 3600.0
_USER_AGENT = f"uptake-python/{__version__}"


@attrs.frozen
class Failure:
    """Events of a batch that were not delivered.

    Attributes:
        error: What went wrong, as handed to ``on_error``.
        start: Index of the first event concerned in the batch sent.
        stop: Index after the last one.
        retryable: True when a later attempt may succeed (no answer, 408, 429, 5xx, or the
            client shut down first); False when the collector refused the events for good.
    """

    error: DeliveryError
    start: int
    stop: int
    retryable: bool


@attrs.frozen
class SendOutcome:
    """What became of one batch: how many events were delivered, and the failures."""

    delivered: int = 0
    failures: tuple[Failure, ...] = ()

    def __add__(self, other: SendOutcome) -> SendOutcome:
        return SendOutcome(self.delivered + other.delivered, self.failures + other.failures)


@runtime_checkable
class Transport(Protocol):
    """Delivers one batch of encoded events; what the delivery thread depends on.

    ``send`` is called from the client's delivery thread only, one batch at a time, and
    must not raise for delivery problems: it returns them as failures. A transport may also
    have ``close()`` (called once at shutdown), ``abort_after(deadline)`` (called from
    another thread at shutdown: give up retries past that ``time.monotonic()`` value) and
    ``ready_in()`` (seconds the collector asked to wait before the next request); the
    worker uses them when present.
    """

    def send(self, messages: Sequence[bytes]) -> SendOutcome:
        """Deliver the encoded events of one batch; report delivered and failed ranges."""
        ...


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _GaveUp(Exception):
    def __init__(self, reason: str, status: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Aborted(Exception):
    """The client's hard deadline (shutdown) arrived before the batch was delivered."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the delay a ``Retry-After`` header asks for, in seconds, or ``None``.

    Accepts delta-seconds (``"120"``, also ``"1.5"``) and HTTP dates. Negative, past or
    unparseable values give ``None`` (no constraint).
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds) or seconds <= 0:  # NaN, infinite, or in the past
        return None
    return min(seconds, MAX_RETRY_AFTER)


class HttpTransport:
    """Sends batches to ``POST {endpoint}/v1/batch`` in the Segment format.

    Used from the client's single worker thread; ``abort_after`` may be called from any
    thread.
    """

    def __init__(
        self,
        endpoint: str,
        write_key: str,
        *,
        gzip: bool = True,
        timeout: float = 10.0,
        retry_timeout: float = 300.0,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.url = endpoint.rstrip("/") + "/v1/batch"
        self.gzip = gzip
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._on_retry = on_retry
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
        }
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._http: _httpx.Client | None = None
        self._not_before = 0.0  # monotonic time before which nothing may be sent
        self._budget_end = 0.0  # monotonic time the batch being sent must be done by
        self._deadline: float | None = None  # monotonic hard deadline (shutdown)
        self._wake = threading.Event()

    def __repr__(self) -> str:
        return f"HttpTransport(url={self.url!r}, gzip={self.gzip})"

    # ------------------------------------------------------------------ lifecycle

    def ready_in(self) -> float:
        """Seconds until the collector allows another request (``Retry-After``); 0 if now."""
        return max(0.0, self._not_before - time.monotonic())

    def abort_after(self, deadline: float) -> None:
        """Give up any delivery not finished by ``deadline`` (a ``time.monotonic()`` value)."""
        self._deadline = deadline
        self._wake.set()

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()
            self._http = None

    # ------------------------------------------------------------------ sending

    def send(self, messages: Sequence[bytes]) -> SendOutcome:
        """Deliver one batch of encoded events, retrying as the policy says.

        Never raises for delivery problems: they are returned as failures, with index
        ranges into ``messages``. The whole batch, halves of a 413 split included, gets
        one ``retry_timeout`` budget, so its sending never outlasts a durable buffer's lease.
        """
        self._budget_end = time.monotonic() + self.retry_timeout
        return self._send(messages, 0)

    def _send(self, messages: Sequence[bytes], offset: int) -> SendOutcome:
        if not messages:
            return SendOutcome()
        stop = offset + len(messages)
        try:
            status = self._send_with_retries(messages)
        except _GaveUp as exc:
            error = DeliveryError(exc.reason, status=exc.status, count=len(messages))
            return SendOutcome(failures=(Failure(error, offset, stop, retryable=True),))
        if 200 <= status < 300:
            return SendOutcome(delivered=len(messages))
        if status == 413 and len(messages) > 1:
            half = len(messages) // 2
            logger.info("batch of %d events too large (413); splitting", len(messages))
            return self._send(messages[:half], offset) + self._send(messages[half:], offset + half)
        reason = _FINAL_REASONS.get(status, f"the collector refused the batch ({status})")
        error = DeliveryError(reason, status=status, count=len(messages))
        return SendOutcome(failures=(Failure(error, offset, stop, retryable=False),))

    def _send_with_retries(self, messages: Sequence[bytes]) -> int:
        """Return the final status of the batch or raise _GaveUp."""
        retrying = _t.Retrying(
            retry=_t.retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=self._stop,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        started = time.monotonic()
        status = 0
        try:
            for attempt in retrying:
                with attempt:
                    status = self._attempt(messages)
        except _Retryable as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            elapsed = time.monotonic() - started
            raise _GaveUp(
                f"{exc.reason}; gave up after {attempts} attempts in {elapsed:.1f}s",
                exc.status,
            ) from exc
        except _Aborted as exc:
            raise _GaveUp("client shut down before delivery", None) from exc
        return status

    def _attempt(self, messages: Sequence[bytes]) -> int:
        delay = self._not_before - time.monotonic()
        if delay > 0:  # a previous batch was told to wait; obey it here too
            if time.monotonic() + delay > self._budget_end:
                raise _Retryable("held back by Retry-After past the retry budget", None)
            self._sleep(delay)
        body = b'{"batch":[%s],"sentAt":"%s"}' % (
            b",".join(messages),
            format_timestamp(time.time()).encode("ascii"),
        )
        if self.gzip:
            body = _gzip.compress(body, compresslevel=1, mtime=0)
        timeout = self.timeout
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                raise _Aborted
        started = time.monotonic()
        try:
            response = self._client().post(
                self.url, content=body, headers=self._headers, timeout=timeout
            )
        except _httpx.TimeoutException as exc:
            raise _Retryable(f"timed out after {timeout:.1f}s", None) from exc
        except _httpx.HTTPError as exc:  # connection, protocol or response decoding error
            raise _Retryable(f"connection error: {type(exc).__name__}", None) from exc
        status = response.status_code
        logger.debug(
            "POST %s %d events, %d bytes -> %d in %.1f ms",
            self.url,
            len(messages),
            len(body),
            status,
            (time.monotonic() - started) * 1000,
        )
        if status in _RETRY_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                self._not_before = max(self._not_before, time.monotonic() + retry_after)
            raise _Retryable(f"HTTP {status} from the collector", status)
        return status

    def prepare(self) -> None:
        """Build the connection pool now, off the hot path.

        Creating it loads TLS certificates and touches many files; done lazily on the worker
        thread while the host's threads are busy, every one of those steps waits for the
        GIL, and the first batch can take most of a second to leave.
        """
        self._client()

    def _client(self) -> _httpx.Client:
        if self._http is None:
            self._http = _httpx.Client(headers={"Connection": "keep-alive"})
        return self._http

    # ------------------------------------------------------------------ tenacity hooks

    def _wait(self, state: _t.RetryCallState) -> float:
        backoff = min(self.max_backoff, self.min_backoff * 2 ** (state.attempt_number - 1))
        jittered = _t.wait_random(0, backoff)(state)
        return max(jittered, self._not_before - time.monotonic(), 0.0)

    def _stop(self, state: _t.RetryCallState) -> bool:
        sleep = state.upcoming_sleep
        if time.monotonic() + sleep > self._budget_end:
            return True
        deadline = self._deadline
        return deadline is not None and time.monotonic() + sleep > deadline

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            deadline = self._deadline
            if deadline is not None and end > deadline:
                raise _Aborted  # the wait would outlast the shutdown deadline
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _before_sleep(self, state: _t.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.info(
            "delivery attempt %d failed (%s); retrying in %.2fs",
            state.attempt_number,
            exc,
            state.upcoming_sleep,
        )
        if self._on_retry is not None:
            self._on_retry()


_FINAL_REASONS = {
    400: "the collector rejected the batch as malformed (400)",
    401: "the collector rejected the write key (401)",
    403: "the write key is not allowed to send here (403)",
    404: "no batch endpoint at this URL (404); check the endpoint",
    413: "a single event is larger than the collector accepts (413)",
    422: "the collector could not process the events (422)",
}
