"""The Client: the facade that builds the parts of uptake and hands each call to them.

It checks arguments at the call site and delegates: settings to ``_config``, the event's
path on the caller's thread to :class:`~uptake.pipeline.Pipeline`, delivery to the
:class:`~uptake.worker.Worker` and its transport (flush, shutdown and the counters come
from :class:`~uptake._delivery_api.DeliveryApi`), the rules to
:class:`~uptake.rules.facade.RulesFacade` (whose public methods come from
:class:`~uptake._rules_api.RulesApi`), and exit and fork to ``_lifecycle``. See
docs/architecture.md for the flow of one event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from . import _config, _context_api, _lifecycle
from . import events as _ev
from ._async_api import AsyncApi
from ._config import MAX_BATCH_BYTES, BeforeSend
from ._context_api import ContextApi
from ._delivery_api import DeliveryApi
from ._engagement_api import EngagementApi
from ._identity_api import IdentityApi
from ._lifecycle import ClientState
from ._rules_api import RulesApi, _when
from ._sessions_api import SessionsApi
from ._shared_sessions import sessionizer_for
from .buffer import Buffer, MemoryBuffer
from .errors import ConfigurationError, DeliveryError, InvalidEventError
from .pipeline import Pipeline
from .rules.engagement import Engagement
from .rules.engine import RulesEngine
from .rules.facade import RulesFacade
from .rules.milestones import FEATURE_EVENT, Milestone
from .rules.nudge_fatigue import BudgetArg, QuietHoursArg
from .rules.nudges import Nudge
from .stats import Reporter
from .stores import Store
from .stores.memory import MemoryStore
from .transport import Transport
from .worker import Worker

__all__ = ["Client"]


def _setting(group: str, name: str, doc: str) -> Any:
    """A read-only attribute mirroring one field of a frozen settings object."""
    return property(lambda self: getattr(getattr(self, group), name), doc=doc)


class Client(AsyncApi, ContextApi, DeliveryApi, IdentityApi, SessionsApi, RulesApi, EngagementApi):
    """Records events and delivers them in batches to a Segment-compatible collector.

    Tracking is thread-safe and never waits on the collector: events are checked and queued
    on the caller's thread, sent by a background thread. A ``SqliteStore`` or ``RedisStore``
    is waited for, up to its ``timeout`` (``atrack()`` never holds the event loop). Mistakes
    raise :class:`~uptake.InvalidEventError`; bad data is coerced or dropped and counted.

    Args:
        write_key: The collector write key (default: ``$UPTAKE_WRITE_KEY``). Sent as HTTP
            Basic auth; never logged or shown in ``repr``.
        endpoint: The collector base URL (default: ``$UPTAKE_ENDPOINT``); batches go to
            ``POST {endpoint}/v1/batch``. Must be ``https://`` unless the host is loopback
            or ``allow_http=True``.
        flush_at: Queued events that trigger a send before ``flush_interval`` is up.
        flush_interval: Longest time, in seconds, an event waits before being sent.
        max_queue_size: Most events held for sending; beyond it new events are dropped and
            counted (``stats.dropped_by_reason["queue_full"]``).
        max_queue_bytes: Most encoded bytes held for sending; same treatment beyond it.
        buffer: Where queued events wait (default: a :class:`~uptake.MemoryBuffer`).
        on_error: Called with a :class:`~uptake.DeliveryError` for events given up or
            dropped. Runs on the delivery thread; exceptions it raises are logged.
        before_send: Called with each event as a JSON-ready dict (already coerced, yours to
            change); return the event to send, or ``None`` to drop it. Runs on the caller's
            thread; an exception drops the event (counted and logged).
        send: ``False`` evaluates and records everything but sends nothing.
        gzip: Compress request bodies.
        timeout: Seconds allowed for one HTTP request.
        retry_timeout: Seconds a batch is retried for before it is given up.
        max_backoff: Longest wait between two attempts, in seconds (``Retry-After`` may ask
            for longer and is obeyed).
        exit_timeout: Seconds the interpreter-exit hook spends delivering what is queued.
        allow_http: Permit a plain ``http://`` endpoint on a non-loopback host.
        session_timeout: Seconds without events after which a user's session ends.
        max_session_duration: Seconds after which a session ends regardless.
        session_events: ``False`` sends no "Session Started" / "Session Ended" events;
            every event still carries its ``context.sessionId``.
        max_batch_bytes: Largest request body, in bytes (at most 500,000).
        milestones: :class:`~uptake.Milestone` objects evaluated at each event.
        store: Where rule state lives (default :class:`~uptake.MemoryStore`;
            :class:`~uptake.SqliteStore` for the processes of one machine,
            :class:`~uptake.RedisStore` for many hosts).
        inactive_events: Event names that are not activity (uptake's own never are).
        timezone: The ``tzinfo`` whose calendar days and ISO weeks the rules use (UTC).
        engagement: ``True``, ``False`` or an :class:`~uptake.Engagement`; by default on
            when milestones or nudges are given.
        nudges: :class:`~uptake.Nudge` objects.
        nudge_rate_limit: At most one nudge per user and channel per this period (an hour);
            ``None``: no limit.
        global_holdout: Fraction of users (a stable hash of the user id) no nudge ever
            fires for: the nudge programme's control group (see docs/nudges.md).
        nudge_budget: :class:`~uptake.NudgeBudget` (or a list): nudges per user and channel.
            ``quiet_hours``: ``(start, end)`` or :class:`~uptake.QuietHours` (see docs).
        transport: Where batches go instead of ``POST {endpoint}/v1/batch``: an object
            with a ``send(messages)`` method, such as
            :class:`uptake.testing.MockTransport` in your tests. ``write_key`` and
            ``endpoint`` are then optional.

    Settings are fixed at construction. Where each hook runs: docs/architecture.md.
    """

    def __init__(
        self,
        *,
        write_key: str | None = None,
        endpoint: str | None = None,
        flush_at: int = 100,
        flush_interval: float = 1.0,
        max_queue_size: int = 100_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        buffer: Buffer | None = None,
        on_error: Callable[[DeliveryError], object] | None = None,
        before_send: BeforeSend | None = None,
        send: bool = True,
        gzip: bool = True,
        timeout: float = 10.0,
        retry_timeout: float = 300.0,
        max_backoff: float = 30.0,
        exit_timeout: float = 5.0,
        allow_http: bool = False,
        session_timeout: float = 30 * 60.0,
        max_session_duration: float = 24 * 3600.0,
        session_events: bool = True,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        milestones: Sequence[Milestone] = (),
        store: Store | None = None,
        inactive_events: Iterable[str] = (),
        timezone: tzinfo | None = None,
        engagement: Engagement | bool | None = None,
        nudges: Sequence[Nudge] = (),
        nudge_rate_limit: timedelta | None = timedelta(hours=1),
        global_holdout: float = 0.0,
        nudge_budget: BudgetArg = None,
        quiet_hours: QuietHoursArg = None,
        transport: Transport | None = None,
    ) -> None:
        if transport is not None and not callable(getattr(transport, "send", None)):
            raise ConfigurationError(
                f"transport must have a send(messages) method, not {transport!r}"
            )
        self._delivery = _config.delivery(
            write_key=write_key,
            endpoint=endpoint,
            send=send,
            flush_at=flush_at,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            max_queue_bytes=max_queue_bytes,
            gzip=gzip,
            timeout=timeout,
            retry_timeout=retry_timeout,
            max_backoff=max_backoff,
            exit_timeout=exit_timeout,
            allow_http=allow_http,
            max_batch_bytes=max_batch_bytes,
            need_endpoint=transport is None,
        )
        _config.hooks(on_error=on_error, before_send=before_send)
        session_settings = _config.sessions(session_timeout, max_session_duration, session_events)
        self._rule_settings = _config.rules(
            milestones=milestones,
            nudges=nudges,
            engagement=engagement,
            inactive_events=inactive_events,
            timezone=timezone,
            rate_limit=nudge_rate_limit,
            global_holdout=global_holdout,
            nudge_budget=nudge_budget,
            quiet_hours=quiet_hours,
        )
        if store is not None:
            _config.check_store(store)
        self._store: Store = store if store is not None else MemoryStore()
        self._on_error = on_error
        self._transport = transport
        engine = self._rule_settings.engine(self._store)
        self._rules_on = engine.enabled
        self._buffer: Buffer = buffer if buffer is not None else MemoryBuffer()
        delivery = self._delivery
        self._buffer.configure(
            max_events=delivery.max_queue_size,
            max_bytes=delivery.max_queue_bytes,
            on_drop=self._buffer_dropped,
            lease=delivery.retry_timeout + delivery.timeout + 30.0,
        )
        self._sessions = sessionizer_for(
            self._store,
            idle_timeout=session_settings.idle_timeout,
            max_duration=session_settings.max_duration,
            max_users=100_000,
            emit=session_settings.events,
        )
        self._before_send = before_send
        self._context_var = _context_api.new_var()
        self._state = ClientState.OPEN
        self._shutdown_result = False
        self._build(engine)
        for sink in _lifecycle.global_captures[::-1]:
            self._pipeline.capture(sink)
        _lifecycle.register(self, sends=self._delivery.send)

    def _build(self, engine: RulesEngine, *, in_child: bool = False) -> None:
        """Create the reporter, pipeline, transport and worker (again, in a forked child)."""
        delivery = self._delivery
        self._reporter = Reporter(self._on_error)
        self._lock = self._reporter.counters.lock
        self._flush_checkpoint = 0
        self._pipeline = Pipeline(
            sessions=self._sessions,
            reporter=self._reporter,
            buffer=self._buffer,
            send=delivery.send,
            flush_at=delivery.flush_at,
            before_send=self._before_send,
        )
        self._rules = RulesFacade(
            engine, self._pipeline, self._rule_settings.milestones, self._rule_settings.nudges
        )
        if self._rules_on:
            self._pipeline.rules = self._rules
        transport = self._transport
        if transport is None:  # at fork, stay light: the child connects on first use
            transport = delivery.http_transport(self._reporter.retried, prepare=not in_child)
        self._worker = Worker(
            buffer=self._buffer,
            transport=transport,
            reporter=self._reporter,
            flush_at=delivery.flush_at,
            flush_interval=delivery.flush_interval,
            max_batch_bytes=delivery.max_batch_bytes,
        )
        self._pipeline.worker = self._worker
        self._pipeline.high_water = delivery.max_queue_size // 2

    endpoint = _setting("_delivery", "endpoint", "The collector base URL (read-only).")
    send = _setting("_delivery", "send", "False when events are evaluated but not sent.")
    flush_at = _setting("_delivery", "flush_at", "Queued events that trigger a send.")
    flush_interval = _setting("_delivery", "flush_interval", "Longest wait before a send (s).")
    max_queue_size = _setting("_delivery", "max_queue_size", "Most events held for sending.")
    max_queue_bytes = _setting("_delivery", "max_queue_bytes", "Most bytes held for sending.")
    exit_timeout = _setting("_delivery", "exit_timeout", "Seconds spent delivering at exit.")
    milestones = _setting("_rule_settings", "milestones", "The client's milestones.")
    nudges = _setting("_rule_settings", "nudges", "The client's nudges.")
    timezone = _setting("_rule_settings", "timezone", "The rules' time zone (None: UTC).")
    global_holdout = _setting("_rule_settings", "global_holdout", "Users no nudge fires for.")

    def __repr__(self) -> str:
        return (
            f"Client(endpoint={self.endpoint!r}, send={self.send}, state={self._state.value}, "
            f"queued={len(self._buffer)})"
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ tracking

    def track(
        self,
        user_id: str | int | None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        account_id: str | None = None,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that a user did something. Thread-safe; never waits on the network.

        Inside ``with client.context(...)`` the ids may be left out (``track("Report
        Exported")``, or ``None``): the context gives them, and its properties.

        Args:
            user_id: Your id for the user (or ``None`` with ``anonymous_id``).
            event: The event name, e.g. ``"Report Created"``.
            properties: Event properties; values JSON cannot carry are coerced.
            account_id: The account (group) the user acted in; sent as ``context.groupId``.
            anonymous_id: An id for a visitor not yet known by ``user_id``.
            timestamp: When it happened (``datetime``; naive means UTC). Default: now.
            context: Extra Segment context (``ip``, ``page``, ...); a ``sessionId`` in it
                replaces automatic sessionization for this event.

        Raises:
            InvalidEventError: no user id, an empty or non-string event name, properties
                or context that are not mappings, a timestamp that is not a datetime.
        """
        uid: str | None
        anon: str | None
        scope = self._context_var.get()
        if scope is not None or event is None:
            user_id, event, properties, account_id, anonymous_id, context = _context_api.fill(
                scope, user_id, event, properties, account_id, anonymous_id, context
            )
        if type(user_id) is str and user_id and anonymous_id is None:
            uid, anon = user_id, None
        else:
            uid, anon = _ev.check_identity(user_id, anonymous_id)
        if type(event) is not str or not event:
            _ev.check_name(event)
        if properties is not None and type(properties) is not dict:
            _ev.check_mapping(properties, "properties")
        if account_id is not None:
            account_id = _ev.check_account(account_id)
        if context is not None:
            _ev.check_mapping(context, "context")
        t = time.time() if timestamp is None else _when(timestamp, "timestamp")
        self._pipeline.track(
            uid, anon, account_id, event, properties, t, context, timestamp is not None
        )

    def feature_used(
        self,
        user_id: str | int | None,
        feature: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        account_id: str | None = None,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record use of a product feature: a ``"Feature Used"`` event with ``{"feature": ...}``.

        Same arguments and guarantees as :meth:`track`; ``feature`` is the feature's name
        (``feature_used("reports")`` inside a ``client.context()`` block).
        """
        if feature is None:
            user_id, feature = None, _ev.check_name(user_id, "feature")
        _ev.check_name(feature, "feature")
        props = dict(_ev.check_mapping(properties, "properties") or {})
        props["feature"] = feature
        self.track(
            user_id,
            FEATURE_EVENT,
            props,
            account_id=account_id,
            anonymous_id=anonymous_id,
            timestamp=timestamp,
            context=context,
        )

    def group(
        self,
        user_id: str | int | None,
        account_id: str,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that a user belongs to an account, with the account's traits (``seats``...).

        Raises:
            InvalidEventError: no user id, no account id, or traits that are not a mapping.
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        account = _ev.check_account(account_id)
        if account is None:
            raise InvalidEventError("group() needs an account_id")
        traits = _ev.check_mapping(traits, "traits")
        context = _ev.check_mapping(context, "context")
        t = _when(timestamp, "timestamp")
        session = self._sessions.current(uid or anon or "")
        message = self._pipeline.message("group", uid, anon, t, account, context, session)
        message["groupId"] = account
        message["traits"] = traits if traits is not None else {}
        self._pipeline.emit(message, host_context=context is not None)
        if traits and self._rules_on:
            self._rules.engine.group(account, traits)

    # ------------------------------------------------------------------ internals

    def _after_fork_in_child(self) -> None:
        """Start afresh in a forked child: own lock, worker and connections, empty queue.

        Events queued in the parent stay the parent's to send, so nothing is sent twice.
        The parent's transport is abandoned, not closed: its sockets belong to the parent.
        """
        self._buffer.after_fork_in_child()
        self._store.after_fork_in_child()
        if self._rules_on and isinstance(self._store, MemoryStore):
            _lifecycle.warn_memory_store_after_fork()
        self._sessions.reset_lock()
        self._sessions.clear()  # the parent's sessions are the parent's to end
        captures, parent_rules = self._pipeline._captures, self._rules
        self._build(self._rules.engine, in_child=True)
        self._rules.inherit(parent_rules)  # the host's callbacks hold in the child too
        for sink in captures[::-1]:
            self._pipeline.capture(sink)
