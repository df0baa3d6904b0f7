"""The Client: the facade that validates events, sessionizes them and queues them for sending."""

from __future__ import annotations

import atexit
import contextlib
import enum
import ipaddress
import logging
import os
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as _timezone
from typing import Any
from urllib.parse import urlsplit

import attrs

from . import _signals
from . import events as _ev
from .buffer import Buffer, MemoryBuffer
from .definitions import MILESTONE_EVENT, OWN_EVENTS, parse_time
from .errors import ConfigurationError, DeliveryError, InvalidEventError
from .rules.engagement import Engagement, EngagementSnapshot
from .rules.engine import Effects, RulesEngine, subject_keys
from .rules.milestones import Milestone, MilestoneReached
from .rules.nudges import Action, Declining, Nudge, NudgeExplanation, NudgeFired
from .rules.simulation import Simulation, simulate
from .sessions import Sessionizer, SessionSpan
from .stats import Counters, Stats
from .stores import Store
from .stores.memory import MemoryStore
from .transport import HttpTransport
from .worker import Worker

logger = logging.getLogger("uptake")

__all__ = ["Client"]

BeforeSend = Callable[[dict[str, Any]], "Mapping[str, Any] | None"]
MilestoneHook = Callable[[MilestoneReached], object]
NudgeHook = Callable[[NudgeFired], object]
#: uptake's own events: never activity, whatever the host says.
INACTIVE_EVENTS = OWN_EVENTS
OnError = Callable[[DeliveryError], None]

#: Events stamped further ahead than this are kept out of the rules (a wrong clock).
_MAX_FUTURE_S = 24 * 3600.0
#: Largest batch body sent, in bytes (the Segment spec allows 500 KB).
MAX_BATCH_BYTES = 500_000
_SESSION_SWEEP_S = 60.0


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


# Every live client, so fork and interpreter exit can reach them without keeping them alive.
_clients: weakref.WeakSet[Client] = weakref.WeakSet()
# Active uptake.testing captures: each is (client or None for all clients, list to fill).
_captures: list[tuple[Client | None, list[dict[str, Any]]]] = []


class Client:
    """Records events and delivers them in batches to a Segment-compatible collector.

    Every tracking method is thread-safe, returns in microseconds and never waits on the
    network: events are validated and encoded on the caller's thread, queued, and sent by a
    background thread. Programming mistakes raise :class:`~uptake.InvalidEventError`; data
    problems are coerced, or dropped and counted (see :attr:`stats`), never raised.

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
        nudge_rate_limit: At most one nudge per user per this period (default one hour);
            ``None``: no limit.
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
        on_error: OnError | None = None,
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
        max_batch_bytes: int = MAX_BATCH_BYTES,
        milestones: Sequence[Milestone] = (),
        store: Store | None = None,
        inactive_events: Iterable[str] = (),
        timezone: tzinfo | None = None,
        engagement: Engagement | bool | None = None,
        nudges: Sequence[Nudge] = (),
        nudge_rate_limit: timedelta | None = timedelta(hours=1),
    ) -> None:
        write_key = write_key if write_key is not None else os.environ.get("UPTAKE_WRITE_KEY")
        endpoint = endpoint if endpoint is not None else os.environ.get("UPTAKE_ENDPOINT")
        _check_positive_int("flush_at", flush_at)
        _check_positive_int("max_queue_size", max_queue_size)
        _check_positive_int("max_queue_bytes", max_queue_bytes)
        for name, value in (
            ("flush_interval", flush_interval),
            ("timeout", timeout),
            ("retry_timeout", retry_timeout),
            ("max_backoff", max_backoff),
            ("session_timeout", session_timeout),
            ("max_session_duration", max_session_duration),
        ):
            _check_positive_number(name, value)
        _check_positive_number("exit_timeout", exit_timeout, allow_zero=True)
        _check_positive_int("max_batch_bytes", max_batch_bytes)
        if max_batch_bytes > MAX_BATCH_BYTES:
            raise ConfigurationError(f"max_batch_bytes must be at most {MAX_BATCH_BYTES}")
        for name, hook in (("on_error", on_error), ("before_send", before_send)):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name} must be callable, not {type(hook).__name__}")
        if send:
            if not write_key or not isinstance(write_key, str):
                raise ConfigurationError(
                    "a write_key is required to send events: pass write_key=... or set "
                    "UPTAKE_WRITE_KEY (or pass send=False)"
                )
            if not endpoint:
                raise ConfigurationError(
                    "an endpoint is required to send events: pass endpoint=... or set "
                    "UPTAKE_ENDPOINT (or pass send=False)"
                )
            endpoint = _check_endpoint(endpoint, allow_http)

        self.endpoint = endpoint
        self.send = send
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.exit_timeout = exit_timeout
        self._write_key = write_key or ""
        self._on_error = on_error
        self._before_send = before_send
        self._transport_options = {
            "gzip": gzip,
            "timeout": timeout,
            "retry_timeout": retry_timeout,
            "max_backoff": max_backoff,
        }
        self._max_batch_bytes = max_batch_bytes
        milestones = tuple(milestones)
        for m in milestones:
            if not isinstance(m, Milestone):
                raise ConfigurationError(f"milestones must be uptake.Milestone, not {m!r}")
        self._milestone_names = frozenset(m.name for m in milestones)
        if len(self._milestone_names) != len(milestones):
            seen = [m.name for m in milestones]
            twice = sorted({n for n in seen if seen.count(n) > 1})
            raise ConfigurationError(f"milestone names must be unique; repeated: {twice}")
        self.milestones = milestones
        if timezone is not None and not isinstance(timezone, tzinfo):
            raise ConfigurationError(
                f"timezone must be a datetime.tzinfo such as ZoneInfo('Europe/Paris'), "
                f"not {timezone!r}"
            )
        self.timezone = timezone
        nudges = tuple(nudges)
        _check_nudges(nudges, milestones, nudge_rate_limit)
        if engagement is None:  # on with the rules, off for a plain tracker
            engagement = bool(milestones) or bool(nudges)
        if engagement is True:
            engagement = Engagement()
        elif engagement is not False and not isinstance(engagement, Engagement):
            raise ConfigurationError(
                f"engagement must be an uptake.Engagement or a bool, not {engagement!r}"
            )
        if store is not None:
            needed = ("update", "update_many", "get", "delete", "after_fork_in_child")
            missing = [name for name in needed if not callable(getattr(store, name, None))]
            if missing:
                raise ConfigurationError(
                    f"store must be a rule store such as uptake.MemoryStore(), "
                    f"uptake.SqliteStore(path) or uptake.RedisStore(url), not {store!r}"
                )
        self._store: Store = store if store is not None else MemoryStore()
        if isinstance(inactive_events, str):
            raise ConfigurationError("inactive_events must be a list of event names")
        if any(isinstance(n.trigger, Declining) for n in nudges) and not engagement:
            raise ConfigurationError("a Declining() trigger needs engagement (it is off)")
        self.nudges = nudges
        self._rules = RulesEngine(
            milestones=milestones,
            engagement=engagement or None,
            nudges=nudges,
            rate_limit=None if nudge_rate_limit is None else nudge_rate_limit.total_seconds(),
            store=self._store,
            tz=timezone,
            inactive_events=INACTIVE_EVENTS | frozenset(inactive_events),
        )
        self._rules_on = self._rules.enabled
        self._hooks: dict[str | None, list[MilestoneHook]] = {}
        self._nudge_hooks: dict[str | None, list[NudgeHook]] = {}
        self._buffer: Buffer = buffer if buffer is not None else MemoryBuffer()
        self._buffer.configure(
            max_events=max_queue_size,
            max_bytes=max_queue_bytes,
            on_drop=self._buffer_dropped,
            lease=retry_timeout + timeout + 30.0,
        )
        self._sessions = Sessionizer(
            idle_timeout=session_timeout, max_duration=max_session_duration, max_users=100_000
        )
        self._state = _State.OPEN
        self._shutdown_result = False
        self._build_engine()
        _clients.add(self)
        if self.send:  # SIGTERM skips atexit: flush first (once per process, main thread)
            _signals.install_sigterm_flush(lambda: list(_clients))

    def _build_engine(self, *, in_child: bool = False) -> None:
        """Create the lock, counters, transport and worker (again, in a forked child)."""
        self._counters = Counters()
        self._lock = self._counters.lock
        self._flush_checkpoint = 0
        self._last_warning = 0.0
        self._unreported: Counter[str] = Counter()
        self._next_sweep = time.monotonic() + _SESSION_SWEEP_S
        transport = HttpTransport(
            self.endpoint or "http://127.0.0.1",
            self._write_key,
            on_retry=self._count_retry,
            **self._transport_options,  # type: ignore[arg-type]
        )
        if self.send and not in_child:  # at fork, stay light: the child builds it on first use
            transport.prepare()
        self._worker = Worker(
            buffer=self._buffer,
            counters=self._counters,
            transport=transport,
            flush_at=self.flush_at,
            flush_interval=self.flush_interval,
            max_batch_bytes=self._max_batch_bytes,
            report=self._report,
            on_tick=self._tick,
        )

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
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        account_id: str | None = None,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that a user did something. Thread-safe; never waits on the network.

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
        self._track(uid, anon, account_id, event, properties, timestamp, context)

    def feature_used(
        self,
        user_id: str | int | None,
        feature: str,
        properties: Mapping[str, Any] | None = None,
        *,
        account_id: str | None = None,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record use of a product feature: a ``"Feature Used"`` event with ``{"feature": ...}``.

        Same arguments and guarantees as :meth:`track`; ``feature`` is the feature's name.
        """
        _ev.check_name(feature, "feature")
        props = dict(_ev.check_mapping(properties, "properties") or {})
        props["feature"] = feature
        self.track(
            user_id,
            "Feature Used",
            props,
            account_id=account_id,
            anonymous_id=anonymous_id,
            timestamp=timestamp,
            context=context,
        )

    def identify(
        self,
        user_id: str | int | None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record who a user is (``plan``, ``email``, ...). Thread-safe; never blocks.

        Identify does not count as activity: it starts no session.

        Raises:
            InvalidEventError: no user id, or traits that are not a mapping.
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        traits = _ev.check_mapping(traits, "traits")
        t = self._event_time(timestamp)
        session = self._sessions.current(uid or anon or "")
        message = self._message("identify", uid, anon, t, None, context, session)
        message["traits"] = traits if traits is not None else {}
        self._emit(message)
        if traits and self._rules_on:
            self._rules.identify(uid, anon, traits)

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
        t = self._event_time(timestamp)
        key = uid or anon or ""
        session = self._sessions.current(key)
        message = self._message("group", uid, anon, t, account, context, session)
        message["groupId"] = account
        message["traits"] = traits if traits is not None else {}
        self._emit(message)
        if traits and self._rules_on:
            self._rules.group(account, traits)

    # ------------------------------------------------------------------ sessions

    def session_start(
        self,
        user_id: str | int | None,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Start an explicit session for a user and return its id.

        An explicit session does not end after ``session_timeout`` of inactivity, only by
        :meth:`session_end` or after ``max_session_duration``. A session already open for
        the user is ended first.
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        account = _ev.check_account(account_id)
        t = self._event_time(timestamp)
        started, ended = self._sessions.start(
            uid or anon or "", t, user_id=uid, anonymous_id=anon, account_id=account
        )
        if ended is not None:
            self._emit_session("Session Ended", ended, ended.last)
        self._emit_session("Session Started", started, t)
        return started.session_id

    def session_end(
        self,
        user_id: str | int | None,
        *,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """End the user's open session (explicit or automatic), if any."""
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        t = self._event_time(timestamp)
        ended = self._sessions.end(uid or anon or "", t)
        if ended is not None:
            self._emit_session("Session Ended", ended, ended.last)

    @contextlib.contextmanager
    def session(
        self,
        user_id: str | int | None,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
    ) -> Iterator[str]:
        """Wrap a block in an explicit session; yields the session id.

        Example::

            with client.session("user-1") as session_id:
                client.track("user-1", "Report Created")
        """
        session_id = self.session_start(user_id, anonymous_id=anonymous_id, account_id=account_id)
        try:
            yield session_id
        finally:
            self.session_end(user_id, anonymous_id=anonymous_id)

    # ------------------------------------------------------------------ delivery

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is queued now and wait for it, at most ``timeout`` seconds.

        Returns:
            True when every event queued before the call was delivered; False when some
            were given up, or the timeout passed first. Thread-safe.
        """
        _check_timeout(timeout)
        if self._state is _State.CLOSED or not self.send:
            return self._nothing_lost() and not len(self._buffer)
        return self._flush(timeout)

    def _flush(self, timeout: float) -> bool:
        clean = self._nothing_lost()
        delivered = self._worker.flush(timeout)
        self._nothing_lost()  # losses seen while waiting are this call's answer, not the next's
        return delivered and clean

    def _nothing_lost(self) -> bool:
        """True if no event was lost since the previous call (flush() asks this)."""
        with self._lock:
            losses = self._counters.losses()
            clean = losses == self._flush_checkpoint
            self._flush_checkpoint = losses
        return clean

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued (for at most ``timeout`` seconds) and stop the worker.

        Events still queued at the deadline are dropped, counted and reported (a durable
        buffer keeps them on disk instead). Later tracking calls drop their events (counted
        as ``"closed"``). Safe to call twice: the second call returns the first's result.

        Returns:
            True when everything tracked since the last flush() was delivered.
        """
        _check_timeout(timeout)
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state is _State.CLOSED:
                return self._shutdown_result
            self._state = _State.CLOSED
        _clients.discard(self)
        # Open sessions are not ended: a process exit is not the user leaving.
        self._sessions.clear()
        # Leave a fifth of the time (at most a second) to stop the thread cleanly, and make
        # retries give up by then rather than sleep past it.
        grace = min(1.0, timeout / 5)
        self._worker.transport.abort_after(deadline - grace / 2)
        delivered = self._flush(timeout - grace) if self.send else self._nothing_lost()
        stopped = self._worker.stop(deadline)
        self._tick()
        self._shutdown_result = delivered and stopped
        return self._shutdown_result

    @property
    def stats(self) -> Stats:
        """A snapshot of the delivery counters (see :class:`~uptake.Stats`). Thread-safe."""
        stats = self._counters.snapshot(self._buffer)
        skipped = self._rules.failures
        return attrs.evolve(stats, rules_skipped=skipped) if skipped else stats

    # ------------------------------------------------------------------ internals

    def _event_time(self, timestamp: datetime | None, what: str = "timestamp") -> float:
        if timestamp is None:
            return time.time()
        t = _ev.check_timestamp(timestamp, what)
        assert t is not None  # for the type checker: only None gives None
        return t

    def _track(
        self,
        uid: str | None,
        anon: str | None,
        account: str | None,
        event: str,
        properties: Mapping[str, Any] | None,
        timestamp: datetime | None,
        context: Mapping[str, Any] | None,
    ) -> None:
        if self._state is _State.CLOSED:
            self._drop("closed")
            return
        t = time.time() if timestamp is None else self._event_time(timestamp)
        session_id: str | None
        if context is not None and context.get("sessionId") not in (None, ""):
            session_id = str(context["sessionId"])
        else:
            session_id, started, ended = self._sessions.touch(
                uid or anon or "", t, user_id=uid, anonymous_id=anon, account_id=account
            )
            if ended is not None:
                self._emit_session("Session Ended", ended, ended.last)
            if started is not None:
                self._emit_session("Session Started", started, started.started)
        data = None
        if context is None and self._before_send is None and not _captures:
            data = _ev.encode_track(
                _ev.new_message_id(),
                _ev.format_timestamp(t),
                uid,
                anon,
                event,
                properties,
                account,
                session_id,
            )
        if data is not None:
            self._enqueue(data)
        else:  # hooks, captures, extra context, or values the fast encoder hands back
            message = self._message("track", uid, anon, t, account, context, session_id)
            message["event"] = event
            message["properties"] = properties if properties is not None else {}
            self._emit(message)
        if self._rules_on and (timestamp is None or t <= time.time() + _MAX_FUTURE_S):
            # (An event stamped in the future is sent, but kept out of the rules: one bad
            # clock must not make a user's real days look old.)
            effects = self._rules.update(uid, anon, account, event, properties, t)
            if effects:
                self._effects(effects, uid, anon, account, t, session_id)

    def _effects(
        self,
        effects: Effects,
        uid: str | None,
        anon: str | None,
        account: str | None,
        t: float,
        session_id: str | None,
    ) -> None:
        """Report what the rules decided for one event: milestones, then nudges."""
        for milestone, at, first in effects.reached:
            self._milestone_reached(milestone, at, first, uid, anon, account, session_id)
        self._nudge_actions(effects.nudges, uid, anon, account, t, session_id)

    def _nudge_actions(
        self,
        actions: list[Action],
        uid: str | None,
        anon: str | None,
        account: str | None,
        t: float,
        session_id: str | None,
    ) -> None:
        """Record nudge decisions as events; call the callbacks of those fired."""
        for kind, nudge, reason in actions:
            properties: dict[str, Any] = {"nudge": nudge.name, "reason": reason}
            if kind == "suppressed":
                name = "Nudge Suppressed"
            else:
                name = "Nudge Fired" if kind == "fired" else "Nudge Held Out"
                properties["priority"] = nudge.priority
                properties["holdout"] = nudge.holdout
                if nudge.goal is not None:
                    properties["goal"] = nudge.goal
                    properties["goal_within_s"] = nudge.goal_within.total_seconds()
            message = self._message("track", uid, anon, t, account, None, session_id)
            message["event"] = name
            message["properties"] = properties
            self._emit(message)
            if kind != "fired":
                continue
            fired = _fired(nudge, uid or anon or "", account, t, reason)
            for hook in (*self._nudge_hooks.get(nudge.name, ()), *self._nudge_hooks.get(None, ())):
                try:
                    hook(fired)
                except Exception:  # one broken callback must not stop the others
                    logger.exception("on_nudge callback %r raised", hook)

    def _milestone_reached(
        self,
        milestone: Milestone,
        at: float,
        first: float,
        uid: str | None,
        anon: str | None,
        account: str | None,
        session_id: str | None,
    ) -> None:
        message = self._message("track", uid, anon, at, account, None, session_id)
        message["event"] = MILESTONE_EVENT
        message["properties"] = {
            "milestone": milestone.name,
            "scope": milestone.scope,
            "time_to_reach_s": round(at - first, 3),
        }
        self._emit(message)
        reached = MilestoneReached(
            milestone=milestone.name,
            user_id=uid if uid is not None else anon,
            account_id=account,
            timestamp=datetime.fromtimestamp(at, _timezone.utc),
            time_to_reach=timedelta(seconds=at - first),
        )
        for hook in (*self._hooks.get(milestone.name, ()), *self._hooks.get(None, ())):
            try:
                hook(reached)
            except Exception:  # one broken callback must not stop the others
                logger.exception("on_milestone callback %r raised", hook)

    def replay(self, events: Iterable[Mapping[str, Any]]) -> ReplayResult:
        """Rebuild milestone state from past events, without sending or calling back anything.

        Feed it your history (event dicts in the wire format this client sends, e.g. the
        lines of a JSONL export) so that users who activated long ago are known as such from
        day one. Events are applied on their own timestamps, in any order; track events
        count, identify and group events give their traits (nudge audiences, an account's
        seats), other types are skipped. Malformed events are counted, never raised.
        Milestones reached here are recorded in the store but produce no "Milestone
        Reached" event and no callback (they are history); nudges count the events their
        triggers look at, and none fires. Thread-safe.

        Returns:
            Counts of events read, applied, skipped and milestones reached.
        """
        read = applied = skipped = reached = 0
        for raw in events:
            read += 1
            parsed = _parse_history(raw)
            if parsed is None:
                if self._rules_on and self._rules.apply_traits(raw):
                    applied += 1  # an identify or group: traits for audiences, seats
                else:
                    skipped += 1
                continue
            uid, anon, account, name, props, t = parsed
            applied += 1
            if self._rules_on:
                effects = self._rules.update(uid, anon, account, name, props, t, decide=False)
                reached += len(effects.reached)
        return ReplayResult(read=read, applied=applied, skipped=skipped, reached=reached)

    def state(
        self, user_id: str | int | None = None, *, account_id: str | None = None
    ) -> dict[str, Any] | None:
        """What uptake stores about a user (or an account): its rule state, or None.

        The user's id is looked up as a user id, then as an anonymous id. Thread-safe.
        Example: ``client.state("user-42")["reached"]``. Raises
        :class:`~uptake.StoreUnavailable` when the store cannot be reached.
        """
        now = time.time()
        found = self._rules.state(user_id, account_id, now)
        if found is None:
            return None
        key, state = found
        data = state.to_json()
        data["missed"] = self._rules.missed(key, state, now)
        return data

    def engagement(
        self,
        user_id: str | int | None = None,
        *,
        account_id: str | None = None,
        at: datetime | None = None,
    ) -> EngagementSnapshot:
        """How engaged a user (or an account) is: score 0-100, tier and its components.

        Computed from the rule state at ``at`` (default: now), so a backfilled or replayed
        history gives the snapshot it had at any moment. A user's id is looked up as a user
        id, then as an anonymous id. A subject never seen gets an all-zero snapshot with
        ``first_seen`` None. Thread-safe; one store read.

        Example: ``client.engagement("user-42").tier`` or
        ``client.engagement(account_id="acme").declining``.

        Raises:
            StoreUnavailable: the store (e.g. Redis) could not be reached.
            ConfigurationError: engagement is off (``Client(engagement=False)``, or neither
                milestones nor ``engagement=`` given).
            InvalidEventError: neither or both of ``user_id`` and ``account_id``.
        """
        if self._rules.engagement is None:
            raise ConfigurationError(
                "engagement is off: pass Client(engagement=True) or "
                "Client(engagement=uptake.Engagement(...)) to keep what it needs"
            )
        now = time.time() if at is None else self._event_time(at, "at")
        return self._rules.snapshot(user_id, account_id, now)

    def forget(self, user_id: str | int | None = None, *, account_id: str | None = None) -> bool:
        """Erase what uptake stores about a user (or an account), e.g. for a GDPR request.

        Removes the rule state from the store (for every process sharing it), under the id
        as a user id and as an anonymous id, and the user's open session in this process.
        Events already sent are the collector's to erase. Raises
        :class:`~uptake.StoreUnavailable` when the store cannot be reached (retry then).
        Returns True if anything was
        stored.
        """
        known = self._rules.forget(user_id, account_id)
        if account_id is None:
            subject = subject_keys(user_id, None)[0].split(":", 1)[1]
            known = self._sessions.end(subject) is not None or known
        return known

    def on_milestone(self, name: str | None = None) -> Callable[[MilestoneHook], MilestoneHook]:
        """Register a callback for a milestone (or, with no name, for every milestone).

        The callback receives one :class:`~uptake.MilestoneReached` and runs on the thread
        whose event reached the milestone, right after it was tracked. Exceptions it raises
        are logged; other callbacks still run and the tracking call still returns.

        Example::

            @client.on_milestone("activated")
            def celebrate(reached: uptake.MilestoneReached) -> None:
                print(reached.user_id, "activated in", reached.time_to_reach)

        Raises:
            ConfigurationError: ``name`` is not one of the client's milestones.
        """
        if name is not None and name not in self._milestone_names:
            raise ConfigurationError(
                f"no milestone named {name!r}; the client has {sorted(self._milestone_names)}"
            )

        def register(hook: MilestoneHook) -> MilestoneHook:
            if not callable(hook):
                raise ConfigurationError(f"on_milestone needs a callable, not {hook!r}")
            self._hooks.setdefault(name, []).append(hook)
            return hook

        return register

    # ------------------------------------------------------------------ nudges

    def on_nudge(self, name: str | None = None) -> Callable[[NudgeHook], NudgeHook]:
        """Register a callback for a nudge (or, with no name, for every nudge).

        The callback receives one :class:`~uptake.NudgeFired` each time the nudge fires,
        on the thread whose event (or ``pending_nudges`` call) fired it. Exceptions it
        raises are logged; other callbacks still run and the tracking call still returns.
        Held-out users get no callback (they are recorded as "Nudge Held Out").

        Example::

            @client.on_nudge("try_reports")
            def tip(nudge: uptake.NudgeFired) -> None:
                send_tooltip(nudge.user_id, nudge.payload["tooltip"])

        Raises:
            ConfigurationError: ``name`` is not one of the client's nudges.
        """
        if name is not None and name not in self._rules.nudges.by_name:
            raise ConfigurationError(
                f"no nudge named {name!r}; the client has {sorted(self._rules.nudges.by_name)}"
            )

        def register(hook: NudgeHook) -> NudgeHook:
            if not callable(hook):
                raise ConfigurationError(f"on_nudge needs a callable, not {hook!r}")
            self._nudge_hooks.setdefault(name, []).append(hook)
            return hook

        return register

    def pending_nudges(
        self,
        user_id: str | int | None = None,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        at: datetime | None = None,
    ) -> list[NudgeFired]:
        """The nudges fired for a user and not yet shown, highest priority first.

        What a middleware renders. Time-based triggers (``NotReached``, ``Inactive``,
        ``Declining``, and nudges whose cooldown ended) are evaluated first, at ``at``
        (default now): what fires now is recorded and its callbacks run. One store read,
        and a write only when something is due; with a RedisStore it waits at most the
        store's ``timeout``. Returns ``[]`` when nothing is pending or the store fails
        (logged at most every 10 s). ``account_id`` is the account you pass, echoed in
        the results (pass it to evaluate ``Reached`` on account milestones).

        Raises:
            InvalidEventError: no user id.
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        account = _ev.check_account(account_id) if account_id is not None else None
        if not self._rules.nudges:
            return []
        t = time.time() if at is None else self._event_time(at, "at")
        try:
            actions, pending = self._rules.look(uid, anon, account, t)
        except Exception as exc:  # a request must render without its nudges, not fail
            self._rules.failed("reading pending nudges (none shown)", exc)
            return []
        session = self._sessions.current(uid or anon or "")
        self._nudge_actions(actions, uid, anon, account, t, session)
        subject = uid or anon or ""
        return [_fired(n, subject, account, at_, n.trigger.describe()) for n, at_ in pending]

    def nudge_shown(
        self,
        user_id: str | int | None,
        name: str,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Record that the host showed a nudge: a "Nudge Shown" event; no longer pending."""
        self._nudge_outcome(user_id, anonymous_id, account_id, name, "shown", timestamp, None)

    def nudge_clicked(
        self,
        user_id: str | int | None,
        name: str,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Record that the user clicked a nudge: a "Nudge Clicked" event; no longer pending."""
        self._nudge_outcome(user_id, anonymous_id, account_id, name, "clicked", timestamp, None)

    def nudge_dismissed(
        self,
        user_id: str | int | None,
        name: str,
        *,
        snooze: timedelta | None = None,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Record that the user dismissed a nudge: it never fires for them again.

        With ``snooze=timedelta(...)`` it is a snooze instead ("Nudge Snoozed"): the nudge
        may fire again once the snooze is over (within its caps).

        Raises:
            InvalidEventError: no user id, an unknown nudge, a snooze that is not a
                positive timedelta.
        """
        if snooze is not None and (
            not isinstance(snooze, timedelta) or not timedelta(0) < snooze <= timedelta(days=3650)
        ):
            raise InvalidEventError(
                f"snooze must be a positive timedelta of at most 10 years, not {snooze!r}"
            )
        kind = "dismissed" if snooze is None else "snoozed"
        self._nudge_outcome(user_id, anonymous_id, account_id, name, kind, timestamp, snooze)

    def _nudge_outcome(
        self,
        user_id: str | int | None,
        anonymous_id: str | None,
        account_id: str | None,
        name: str,
        kind: str,
        timestamp: datetime | None,
        snooze: timedelta | None,
    ) -> None:
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        account = _ev.check_account(account_id) if account_id is not None else None
        if name not in self._rules.nudges.by_name:
            raise InvalidEventError(
                f"no nudge named {name!r}; the client has {sorted(self._rules.nudges.by_name)}"
            )
        t = self._event_time(timestamp)
        properties: dict[str, Any] = {"nudge": name}
        if snooze is not None:
            properties["snooze_s"] = snooze.total_seconds()
        session = self._sessions.current(uid or anon or "")
        message = self._message("track", uid, anon, t, account, None, session)
        message["event"] = f"Nudge {kind.capitalize()}"
        message["properties"] = properties
        self._emit(message)
        try:
            seconds = snooze.total_seconds() if snooze is not None else 0.0
            self._rules.outcome(uid, anon, name, kind, t, seconds)
        except Exception:
            logger.exception("could not record that nudge %r was %s", name, kind)

    def explain_nudges(
        self,
        user_id: str | int | None = None,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        at: datetime | None = None,
    ) -> list[NudgeExplanation]:
        """Why each nudge would or would not fire for a user now (or ``at``), in priority
        order: trigger not met, suppressed by a milestone, cooldown until a time, rate
        limited, held out... Changes nothing; one store read. Raises
        :class:`~uptake.StoreUnavailable` when the store cannot be reached.

        Example::

            for why in client.explain_nudges("user-42"):
                print(why.name, why.status, why.detail, why.until)
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        account = _ev.check_account(account_id) if account_id is not None else None
        t = time.time() if at is None else self._event_time(at, "at")
        return self._rules.explain(uid, anon, account, t)

    def simulate(
        self, events: Iterable[Mapping[str, Any]], nudges: Sequence[Nudge] | None = None
    ) -> Simulation:
        """Replay history against a candidate set of nudges, before shipping them.

        Runs ``events`` (wire-format dicts, as for :meth:`replay`, in time order) through
        this client's milestones, engagement and rate limit with ``nudges`` (default: the
        client's own) in a private in-memory store. Nothing is sent, stored or called back.

        Returns:
            A :class:`~uptake.Simulation`: per nudge, how many users would be nudged,
            fires, hold-outs and rate-limit suppressions, and when.
        """
        candidates = tuple(self.nudges if nudges is None else nudges)
        _check_nudges(candidates, self.milestones, None)
        return simulate(
            events,
            milestones=self.milestones,
            engagement=self._rules.engagement,
            nudges=candidates,
            rate_limit=self._rules.nudges.rate_limit,
            tz=self.timezone,
            inactive_events=self._rules.inactive_events,
            parse=_parse_history,
        )

    def _emit_session(self, name: str, span: SessionSpan, t: float) -> None:
        message = self._message(
            "track", span.user_id, span.anonymous_id, t, span.account_id, None, span.session_id
        )
        message["event"] = name
        message["properties"] = {"duration_s": span.duration_s} if name == "Session Ended" else {}
        self._emit(message)

    def _message(
        self,
        kind: str,
        uid: str | None,
        anon: str | None,
        t: float,
        account: str | None,
        context: Mapping[str, Any] | None,
        session_id: str | None,
    ) -> dict[str, Any]:
        if context is None:
            ctx: dict[str, Any] = {"library": _ev.LIBRARY}
        else:
            ctx = dict(_ev.check_mapping(context, "context") or {})
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

    def _emit(self, message: dict[str, Any]) -> None:
        """Encode, filter and queue one message. Never raises."""
        if _captures and self._capture(message):
            return
        before_send = self._before_send
        try:
            data = _ev.encode(message)
            if before_send is not None:
                filtered = before_send(_ev.decode(data))
                if filtered is None:
                    self._drop("before_send", log=False)
                    return
                if not isinstance(filtered, Mapping):
                    logger.error(
                        "before_send returned %s, not a dict or None; event dropped",
                        type(filtered).__name__,
                    )
                    self._drop("before_send_error")
                    return
                data = _ev.encode(filtered)
        except _ev.UnencodableEventError as exc:
            logger.warning("event dropped, it cannot be encoded as JSON: %s", exc)
            self._drop("unencodable")
            return
        except Exception:
            logger.exception("before_send raised; event dropped")
            self._drop("before_send_error")
            return
        self._enqueue(data)

    def _enqueue(self, data: bytes) -> None:
        """Size-check one encoded event and queue it (or count why not). Never raises."""
        if len(data) > _ev.MAX_EVENT_BYTES:
            self._drop("too_large")
            return
        if not self.send:
            self._drop("send_disabled", log=False)
            return
        if self._state is _State.CLOSED:
            self._drop("closed")
            return
        buffer = self._buffer
        if buffer.durable:  # may touch the disk and call back on_drop: not under the lock
            accepted_now = buffer.put(data)
            with self._lock:
                accepted = self._count_put(accepted_now)
        else:
            with self._lock:  # one step for the buffer and the counters: stats add up
                accepted = self._count_put(buffer.put(data))
        if not accepted:
            return
        if not accepted % self.flush_at:  # another flush_at events: a full batch may wait
            self._worker.wake()
        self._worker.ensure_started()

    def _count_put(self, ok: bool) -> int:
        """Count one event offered to the buffer (call with the lock held).

        Returns how many events were accepted so far, or 0 if this one was refused.
        """
        self._counters.tracked += 1
        if not ok:
            self._counters.dropped["queue_full"] += 1
            self._unreported["queue_full"] += 1
            return 0
        self._counters.enqueued += 1
        return self._counters.enqueued

    def _drop(self, reason: str, *, log: bool = True, count: int = 1) -> None:
        with self._lock:
            self._counters.tracked += count
            self._counters.dropped[reason] += count
            if log:
                self._unreported[reason] += count
        if log and self._state is _State.CLOSED:
            self._tick()  # no delivery thread any more to report it

    def _buffer_dropped(self, reason: str, count: int, oldest: int) -> None:
        """A buffer dropped events it had accepted (a full outbox discards its oldest)."""
        with self._lock:
            self._counters.dropped[reason] += count
            self._unreported[reason] += count
        self._worker.note_dropped(oldest)

    def _capture(self, message: dict[str, Any]) -> bool:
        for target, sink in _captures:
            if target is None or target is self:
                sink.append(_ev.decode(_ev.encode(message)))
                return True
        return False

    def _count_retry(self) -> None:
        with self._lock:
            self._counters.retried += 1

    def _report(self, error: DeliveryError, *, quiet: bool = False) -> None:
        """Log a delivery problem and hand it to ``on_error``. Never raises."""
        logger.log(logging.DEBUG if quiet else logging.WARNING, "%s", error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                logger.exception("on_error hook raised")

    def _tick(self) -> None:
        """Periodic chores, on the delivery thread: report drops, end idle sessions.

        After shutdown there is no delivery thread: tracking calls run it themselves, and
        their drops reach ``on_error`` every time but the log at most once a second.
        """
        now = time.monotonic()
        quiet = False
        with self._lock:
            unreported, self._unreported = self._unreported, Counter()
            if unreported and self._state is _State.CLOSED:
                quiet = now - self._last_warning < 1.0
                if not quiet:
                    self._last_warning = now
        for reason, count in unreported.items():
            error = DeliveryError(_DROP_REASONS.get(reason, reason), count=count)
            self._report(error, quiet=quiet)
        if now >= self._next_sweep and self._state is _State.OPEN:
            self._next_sweep = now + _SESSION_SWEEP_S
            for span in self._sessions.expire():
                self._emit_session("Session Ended", span, span.last)

    def _after_fork_in_child(self) -> None:
        """Start afresh in a forked child: own lock, worker and connections, empty queue.

        Events queued in the parent stay the parent's to send, so nothing is sent twice.
        The parent's transport is abandoned, not closed: its sockets belong to the parent.
        """
        self._buffer.after_fork_in_child()
        self._store.after_fork_in_child()
        if self._rules_on and isinstance(self._store, MemoryStore):
            _warn_memory_store_after_fork()
        self._sessions.reset_lock()
        self._sessions.clear()  # the parent's sessions are the parent's to end
        self._build_engine(in_child=True)


_DROP_REASONS = {
    "queue_full": "queue full (max_queue_size / max_queue_bytes reached); new events dropped",
    "outbox_full": "outbox full (SqliteBuffer max_events / max_bytes reached); oldest dropped",
    "too_large": f"event larger than {_ev.MAX_EVENT_BYTES} bytes once encoded; dropped",
    "closed": "event tracked after shutdown(); dropped",
    "unencodable": "event could not be encoded as JSON; dropped",
    "before_send_error": "before_send failed; event dropped",
}


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int, not {value!r}")


def _check_timeout(timeout: object) -> None:
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not timeout >= 0  # also refuses NaN
    ):
        raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")


def _check_positive_number(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and (value > 0 or (allow_zero and value == 0)):  # type: ignore[operator]
        return
    bound = "zero or more" if allow_zero else "positive"
    raise ConfigurationError(f"{name} must be a {bound} number of seconds, not {value!r}")


def _check_endpoint(endpoint: str, allow_http: bool) -> str:
    if not isinstance(endpoint, str):
        raise ConfigurationError(f"endpoint must be a URL string, not {type(endpoint).__name__}")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"endpoint must be an http(s) URL such as https://events.example, not {endpoint!r}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("endpoint must not carry a query, fragment or credentials")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to {parts.hostname}: events and the write key would "
            "travel unencrypted. Use https://, or pass allow_http=True if you mean it"
        )
    return endpoint.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class ReplayResult:
    """What ``Client.replay`` did: events read, applied, skipped; milestones reached."""

    read: int
    applied: int
    skipped: int
    reached: int


def _parse_history(
    raw: object,
) -> tuple[str | None, str | None, str | None, str, Mapping[str, Any] | None, float] | None:
    """Read a past track event in the wire format; None if it is not a usable one."""
    if not isinstance(raw, Mapping) or raw.get("type", "track") != "track":
        return None
    name = raw.get("event")
    uid, anon = raw.get("userId"), raw.get("anonymousId")
    context = raw.get("context")
    account = raw.get("groupId") or (
        context.get("groupId") if isinstance(context, Mapping) else None
    )
    props = raw.get("properties")
    stamp = raw.get("timestamp")
    if not isinstance(name, str) or not name or stamp is None:
        return None
    if not (isinstance(uid, str) and uid) and not (isinstance(anon, str) and anon):
        return None
    when = parse_time(stamp)
    if when is None:
        return None
    return (
        uid if isinstance(uid, str) and uid else None,
        anon if isinstance(anon, str) and anon else None,
        account if isinstance(account, str) and account else None,
        name,
        props if isinstance(props, Mapping) else None,
        when,
    )


def _fired(nudge: Nudge, user: str, account: str | None, t: float, reason: str) -> NudgeFired:
    return NudgeFired(
        name=nudge.name,
        user_id=user,
        account_id=account,
        payload=nudge.payload,
        timestamp=datetime.fromtimestamp(t, _timezone.utc),
        reason=reason,
        priority=nudge.priority,
    )


def _check_nudges(
    nudges: Sequence[Nudge], milestones: Sequence[Milestone], rate_limit: object
) -> None:
    """Refuse nudges that are not Nudge objects, repeat a name or name unknown milestones."""
    names = set()
    known = {m.name for m in milestones}
    for n in nudges:
        if not isinstance(n, Nudge):
            raise ConfigurationError(f"nudges must be uptake.Nudge, not {n!r}")
        if n.name in names:
            raise ConfigurationError(f"nudge names must be unique; repeated: {n.name!r}")
        names.add(n.name)
        unknown = sorted(n.milestones - known)
        if unknown:
            raise ConfigurationError(
                f"nudge {n.name!r} refers to milestones the client does not have: {unknown}"
            )
    if rate_limit is not None and (
        not isinstance(rate_limit, timedelta) or rate_limit <= timedelta(0)
    ):
        raise ConfigurationError(
            f"nudge_rate_limit must be a positive timedelta or None, not {rate_limit!r}"
        )


_fork_warned = False


def _warn_memory_store_after_fork() -> None:
    global _fork_warned
    if not _fork_warned:
        _fork_warned = True
        logger.warning(
            "uptake is running in a forked worker with milestones kept in a MemoryStore: each "
            "process sees only part of a user's events, so milestones fire late, never, or "
            "once per worker. Use SqliteStore to share the state between the workers."
        )


def _exit_hook() -> None:
    clients = list(_clients)
    if not clients:
        return
    # One deadline for all clients: exit takes at most the longest exit_timeout.
    deadline = time.monotonic() + max(client.exit_timeout for client in clients)
    for client in clients:
        remaining = max(0.0, min(client.exit_timeout, deadline - time.monotonic()))
        try:
            client.shutdown(remaining)
        except Exception:  # never disturb interpreter exit
            logger.exception("error while delivering events at exit")


def _after_fork() -> None:
    for client in list(_clients):
        try:
            client._after_fork_in_child()
        except Exception:  # one broken client must not leave the others unusable
            logger.exception("error while preparing a client in a forked child")


atexit.register(_exit_hook)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
