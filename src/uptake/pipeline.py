"""The path of one event on the caller's thread: sessionize, encode, filter, queue, rules.

A :class:`Pipeline` is built once per client from its settings. Its stages are chosen at
construction (in the manner of structlog's processor chain): without ``before_send`` a
track event is written straight to bytes by a specialised encoder; with it, the event is
built as a dict, copied into JSON types for the hook, and encoded once. The last stage is
the sink: the client's buffer, or a test capture while ``uptake.testing.capture_events``
is active (the capture replaces the sink; nothing on the path checks a global).

Everything here runs on the thread that called the client, host hooks included
(``before_send``, and through the rules stage ``on_milestone`` / ``on_nudge``). The
delivery thread never runs this code.

Order for a track event: the session (which may first emit "Session Ended" and "Session
Started"), the event itself, then the rules, whose milestone and nudge events follow it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import _before_send as _bs
from . import events as _ev
from .buffer import Buffer
from .sessions import Sessionizer, SessionSpan
from .stats import Reporter

logger = logging.getLogger("uptake")

__all__ = ["Pipeline"]

_encode_track = _ev.encode_track
_format_timestamp = _ev.format_timestamp
_MAX_EVENT_BYTES = _ev.MAX_EVENT_BYTES

BeforeSend = Callable[[dict[str, Any]], "Mapping[str, Any] | None"]
Capture = list[dict[str, Any]]

#: Seconds between two sweeps for idle sessions, and tracking calls between two looks
#: at the clock to see whether one is due.
_SWEEP_EVERY_S = 60.0
_SWEEP_CHECK_EVERY = 256
#: Longest wait, in milliseconds, of one tracking call for a backlog past three quarters.
_MAX_WAIT_MS = 5


class Waker(Protocol):
    """What the sink needs of the delivery thread."""

    def wake(self) -> None: ...

    def ensure_started(self) -> None: ...

    @property
    def started(self) -> bool: ...


class RulesStage(Protocol):
    """What the pipeline hands each tracked event to, after queueing it."""

    def after_track(
        self,
        uid: str | None,
        anon: str | None,
        account: str | None,
        event: str,
        properties: Mapping[str, Any] | None,
        t: float,
        session_id: str | None,
        stamped: bool,
    ) -> None: ...


class Pipeline:
    """Turns tracking calls into queued events (internal; one per client).

    Thread-safe: every tracking thread runs it at once; the buffer and the counters take
    their own locks.
    """

    def __init__(
        self,
        *,
        sessions: Sessionizer,
        reporter: Reporter,
        buffer: Buffer,
        send: bool,
        flush_at: int,
        before_send: BeforeSend | None,
    ) -> None:
        self.sessions = sessions
        self.reporter = reporter
        self.buffer = buffer
        self.send = send
        self.flush_at = flush_at
        self.before_send = before_send
        self.worker: Waker | None = None
        self.rules: RulesStage | None = None
        self.closed = False
        #: Events waiting in memory (the buffer's ``backlog()``, when it has one) past which
        #: a tracking call yields the GIL to the delivery thread once every ``flush_at``
        #: events (0: never).
        self.high_water = 0
        self.backlog: Callable[[], int] | None = getattr(buffer, "backlog", None)
        self._captures: list[Capture] = []
        self._too_large_logged: dict[str, float] = {}
        self._started = False
        self._countdown = _SWEEP_CHECK_EVERY
        self._next_sweep = time.monotonic() + _SWEEP_EVERY_S
        self._select()

    # ------------------------------------------------------------------ stages

    def _select(self) -> None:
        """Choose the output stages for the current settings and captures."""
        if self._captures:
            sink = self._captures[0]
            self._raw: Callable[[bytes], None] = lambda data: sink.append(_ev.decode(data))
            self._fast = True
        else:
            self._raw = self._enqueue if self.send else self._disabled
            self._fast = self.before_send is None

    def capture(self, sink: Capture) -> None:
        """Send events to ``sink`` (as wire-format dicts) instead of the buffer."""
        self._captures.insert(0, sink)
        self._select()

    def release(self, sink: Capture) -> None:
        """End a capture started with :meth:`capture`."""
        self._captures = [c for c in self._captures if c is not sink]
        self._select()

    # ------------------------------------------------------------------ events

    def track(
        self,
        uid: str | None,
        anon: str | None,
        account: str | None,
        event: str,
        properties: Mapping[str, Any] | None,
        t: float,
        context: Mapping[str, Any] | None,
        stamped: bool,
    ) -> None:
        """Sessionize, queue and apply the rules to one track event."""
        if self.closed:
            self.drop("closed")
            return
        session_id: str | None
        if context is None or context.get("sessionId") in (None, ""):
            session_id, started, ended = self.sessions.touch(
                uid or anon or "", t, uid, anon, account
            )
            if started is not None or ended is not None:
                if ended is not None:
                    self.emit_session("Session Ended", ended, ended.last)
                if started is not None:
                    self.emit_session("Session Started", started, started.started)
        else:
            session_id = str(context["sessionId"])
        data = None
        if context is None and self._fast:
            data = _encode_track(
                None,
                _format_timestamp(t),
                uid,
                anon,
                event,
                properties,
                account,
                session_id,
            )
        if data is not None:
            if len(data) > _MAX_EVENT_BYTES:
                self.too_large(event, len(data))
            else:
                self._raw(data)
        else:  # a hook, extra context, or values the fast encoder hands back
            # With before_send and no host context, the message is built as the hook's own
            # JSON-ready copy at once (rather than built, then copied for the hook).
            own = context is None and self.before_send is not None and not self._captures
            message = self.message("track", uid, anon, t, account, context, session_id, own=own)
            message["event"] = event
            message["properties"] = properties if properties is not None else {}
            if own and properties:
                try:
                    message["properties"] = _bs.json_ready(properties)
                except Exception:  # (changed by another thread?) emit's copy counts it
                    own = False
            self.emit(message, host_context=context is not None, ready=own)
        rules = self.rules
        if rules is not None:
            rules.after_track(uid, anon, account, event, properties, t, session_id, stamped)
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = _SWEEP_CHECK_EVERY
            if time.monotonic() >= self._next_sweep:
                self.sweep()

    def sweep(self) -> None:
        """End the sessions idle past the timeout ("Session Ended"), on this thread."""
        self._next_sweep = time.monotonic() + _SWEEP_EVERY_S
        if self.closed:
            return
        for span in self.sessions.expire():
            self.emit_session("Session Ended", span, span.last)

    def emit_session(self, name: str, span: SessionSpan, t: float) -> None:
        """Emit a "Session Started" or "Session Ended" event (unless the client sends none)."""
        if not self.sessions.emit:
            return
        message = self.message(
            "track", span.user_id, span.anonymous_id, t, span.account_id, None, span.session_id
        )
        message["event"] = name
        message["properties"] = {"duration_s": span.duration_s} if name == "Session Ended" else {}
        self.emit(message)

    def message(
        self,
        kind: str,
        uid: str | None,
        anon: str | None,
        t: float,
        account: str | None,
        context: Mapping[str, Any] | None,
        session_id: str | None,
        *,
        own: bool = False,
    ) -> dict[str, Any]:
        """Build the common fields of a wire message (the caller adds the rest).

        ``own``: the message will be handed to ``before_send`` as it is, so nothing in it
        may be shared (the library gets its own dict).
        """
        if context is None:
            ctx: dict[str, Any] = {"library": dict(_ev.LIBRARY) if own else _ev.LIBRARY}
        else:
            ctx = dict(context)
            ctx["library"] = _ev.LIBRARY
        if account is not None:
            ctx["groupId"] = account
        if session_id is not None:
            ctx["sessionId"] = session_id
        message: dict[str, Any] = {
            "type": kind,
            "messageId": _ev.new_message_id(),
            "timestamp": _ev.format_timestamp(t),
            "context": ctx,
        }
        if uid is not None:
            message["userId"] = uid
        if anon is not None:
            message["anonymousId"] = anon
        return message

    def emit(
        self, message: dict[str, Any], *, host_context: bool = False, ready: bool = False
    ) -> None:
        """Encode, filter and queue one message. Never raises.

        ``host_context`` says that the message's context holds values the host passed
        (they are copied for ``before_send``; uptake's own are not). ``ready``: the message
        is already a copy made only of JSON types that nothing else holds (see
        :meth:`message`'s ``own``), which ``before_send`` may get as it is.
        """
        before_send = None if self._captures else self.before_send
        try:
            if before_send is None:
                data = _ev.encode(message)
            else:
                if not ready:
                    message = _bs.json_ready_message(message, host_context=host_context)
                filtered = before_send(message)
                if filtered is None:
                    self.drop("before_send", log=False)
                    return
                if not isinstance(filtered, Mapping):
                    logger.error(
                        "before_send returned %s, not a dict or None; event dropped",
                        type(filtered).__name__,
                    )
                    self.drop("before_send_error")
                    return
                data = _bs.encode_message(filtered)
        except _ev.UnencodableEventError as exc:
            logger.warning("event dropped, it cannot be encoded as JSON: %s", exc)
            self.drop("unencodable")
            return
        except Exception:
            logger.exception("before_send raised; event dropped")
            self.drop("before_send_error")
            return
        if len(data) > _MAX_EVENT_BYTES:
            self.too_large(str(message.get("event") or message.get("type")), len(data))
            return
        self._raw(data)

    # ------------------------------------------------------------------ sink

    def _disabled(self, data: bytes) -> None:
        """The sink of a ``send=False`` client: count the event as not sent."""
        counters = self.reporter.counters
        with counters.lock:
            counters.disabled += 1

    def _enqueue(self, data: bytes) -> None:
        """Queue one encoded event (or count why not). Never raises."""
        if self.closed:
            self.drop("closed")
            return
        buffer = self.buffer
        reporter = self.reporter
        if buffer.durable:  # may touch the disk and call back on_drop: not under the lock
            accepted_now = buffer.put(data)
            with reporter.counters.lock:
                accepted = reporter.count_put(accepted_now)
        else:
            counters = reporter.counters
            with counters.lock:  # one step for the buffer and the counters
                if buffer.put(data):  # (the common case of Reporter.count_put, inline)
                    counters.tracked += 1
                    counters.enqueued += 1
                    accepted = counters.enqueued
                else:
                    accepted = reporter.count_put(False)
        worker = self.worker
        if not accepted or worker is None:
            return
        if not self._started:  # (once the delivery thread runs, no call is needed)
            worker.ensure_started()
            self._started = worker.started
        if not accepted % self.flush_at:  # another flush_at events: a full batch may wait
            worker.wake()
            high = self.high_water
            backlog = self.backlog
            if high and backlog is not None and backlog() >= high:
                # A burst is outrunning the thread that drains the buffer (the delivery
                # thread, or the outbox's writer), which needs the GIL: yield it rather
                # than drop events at the bound. Past three quarters, wait for it, a
                # millisecond at a time and at most _MAX_WAIT_MS (once per flush_at
                # events, and only while the backlog is that large).
                time.sleep(0)
                waited = 0
                while backlog() >= high + high // 2 and waited < _MAX_WAIT_MS:
                    time.sleep(0.001)
                    waited += 1

    def too_large(self, name: str, size: int) -> None:
        """Refuse an event over the size limit on the caller's thread: counted and logged.

        The log line names the event and its size (never its content); it is written at
        most once a minute per event name, and ``on_error`` still hears of every drop.
        """
        self.reporter.dropped("too_large", logged=True)
        now = time.monotonic()
        logged = self._too_large_logged
        if now - logged.get(name, -_SWEEP_EVERY_S) >= _SWEEP_EVERY_S:
            if len(logged) >= 1000:
                logged.clear()
            logged[name] = now
            logger.warning(
                "event %r dropped: %d bytes once encoded, over the %d-byte limit "
                "(logged at most once a minute per event name)",
                name,
                size,
                _MAX_EVENT_BYTES,
            )
        if self.closed:
            self.reporter.report_drops(rate_limited=True)

    def drop(self, reason: str, *, log: bool = True) -> None:
        """Count one event dropped for ``reason`` (reported to the host unless chosen)."""
        self.reporter.dropped(reason, log=log)
        if log and self.closed:  # no delivery thread any more to report it
            self.reporter.report_drops(rate_limited=True)
