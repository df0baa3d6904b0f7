"""Sessions kept in a shared store, so every process gives a visit the same session id.

Under gunicorn or uwsgi, a user's requests land on several worker processes. The
in-process :class:`~uptake.sessions.Sessionizer` would open a session in each (two
"Session Started", ids alternating within one visit). With a store that every process
shares (``SqliteStore``; a store with ``session_update``, ``session_get`` and
``session_take``), the user's open session lives in that store instead: each event reads
and changes it in one atomic step, so the first process to see a visit opens the session
and the others join it. Ending is decided the same way: the process whose atomic step
replaces an expired session (the next event) or takes an idle one (a sweep) is the only
one that reports "Session Ended".

Same rules as the in-process sessionizer (idle timeout, maximum length, backfills get
no session id); a store failure gives that event no session id (counted in
:attr:`SharedSessions.failed`, logged at most once every 10 s), never an exception.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, TypeVar

from ._sessionstate import SessionChange, SessionRecord
from .events import new_session_id
from .sessions import _NO_SESSION, Sessionizer, SessionSpan, Touch

__all__ = ["SessionTable", "SharedSessions", "sessionizer_for"]

logger = logging.getLogger("uptake")

T = TypeVar("T")

#: Most idle sessions one sweep ends (a sweep runs on a tracking thread).
SWEEP_LIMIT = 1000
#: Seconds a session's latest event time may lag behind in the store: an event less than
#: this after the recorded one is only read, not written (a burst of a request's events
#: costs one write). Idle ends and durations are exact to this much.
LAST_EVERY_S = 1.0
_LOG_EVERY_S = 10.0


class SessionTable(Protocol):
    """What a store offers to keep sessions for every process (SqliteStore does)."""

    def session_update(self, key: str, change: SessionChange[T]) -> T: ...

    def session_get(self, key: str) -> SessionRecord | None: ...

    def session_take(
        self, idle_before: float, started_before: float, limit: int
    ) -> list[SessionRecord]: ...


def sessionizer_for(
    store: object, *, idle_timeout: float, max_duration: float, max_users: int, emit: bool
) -> Sessionizer:
    """Sessions in ``store`` when every process shares it, else in this process."""
    shared = getattr(store, "in_process", False) is not True and all(
        callable(getattr(store, name, None))
        for name in ("session_update", "session_get", "session_take")
    )
    if shared:
        return SharedSessions(
            store,  # type: ignore[arg-type]
            idle_timeout=idle_timeout,
            max_duration=max_duration,
            emit=emit,
        )
    return Sessionizer(
        idle_timeout=idle_timeout, max_duration=max_duration, max_users=max_users, emit=emit
    )


def _span(record: SessionRecord, last: float | None = None) -> SessionSpan:
    return SessionSpan(
        session_id=record.session_id,
        user_id=record.user_id,
        anonymous_id=record.anonymous_id,
        account_id=record.account_id,
        started=record.started,
        last=record.last if last is None else last,
        explicit=record.explicit,
    )


class SharedSessions(Sessionizer):
    """The open sessions of every process sharing ``table``, kept in it. Thread-safe."""

    in_process = False

    def __init__(
        self, table: SessionTable, *, idle_timeout: float, max_duration: float, emit: bool
    ) -> None:
        super().__init__(
            idle_timeout=idle_timeout, max_duration=max_duration, max_users=1, emit=emit
        )
        self.table = table
        #: Calls the store could not answer (their event got no session id).
        self.failed = 0
        self._logged = -_LOG_EVERY_S

    def touch(
        self,
        key: str,
        t: float,
        user_id: str | None,
        anonymous_id: str | None,
        account_id: str | None,
    ) -> Touch:
        """Place an active event in the user's shared session, opening one if needed."""
        if t > self.latest:
            self.latest = t
        idle, longest = self.idle_timeout, self.max_duration

        def change(current: SessionRecord | None) -> tuple[SessionRecord | None, Touch]:
            ended = None
            if current is not None:
                started, last = current.started, current.last
                expired = t - started > longest or (not current.explicit and t - last > idle)
                if not expired:
                    if t < started - idle:
                        return current, _NO_SESSION
                    kept = current
                    if t >= last + LAST_EVERY_S:
                        kept = current._replace(last=t)
                    elif t < started:
                        kept = current._replace(started=t)
                    return kept, (current.session_id, None, None)
                ended = _span(current)
            opened = SessionRecord(
                key, new_session_id(), user_id, anonymous_id, account_id, t, t, False
            )
            return opened, (opened.session_id, _span(opened), ended)

        touched: Touch = self._call(change, key, _NO_SESSION)
        return touched

    def current(self, key: str) -> str | None:
        """Return the user's open session id, if any (a read of the store)."""
        try:
            record = self.table.session_get(key)
        except Exception as exc:
            self._failed(exc)
            return None
        return None if record is None else record.session_id

    def start(
        self,
        key: str,
        t: float,
        *,
        user_id: str | None,
        anonymous_id: str | None,
        account_id: str | None,
    ) -> tuple[SessionSpan, SessionSpan | None]:
        """Open an explicit session for a user, ending the open one; return (new, ended).

        When the store cannot be reached, the new session is reported all the same (its
        id is given to the caller) but is not kept.
        """
        opened = SessionRecord(key, new_session_id(), user_id, anonymous_id, account_id, t, t, True)

        def change(
            current: SessionRecord | None,
        ) -> tuple[SessionRecord | None, SessionSpan | None]:
            return opened, None if current is None else _span(current)

        ended: SessionSpan | None = self._call(change, key, None)
        return _span(opened), ended

    def end(self, key: str, t: float | None = None) -> SessionSpan | None:
        """Close a user's open session and return it (``None`` if none was open)."""

        def change(
            current: SessionRecord | None,
        ) -> tuple[SessionRecord | None, SessionSpan | None]:
            if current is None:
                return None, None
            last = t if t is not None and t > current.last else current.last
            return None, _span(current, last)

        ended: SessionSpan | None = self._call(change, key, None)
        return ended

    def expire(self, now: float | None = None) -> list[SessionSpan]:
        """End the sessions idle past the timeout at ``now``, whichever process saw them.

        Each is ended once: the store hands it to one caller (at most ``SWEEP_LIMIT`` per
        call; the next sweep takes the rest).
        """
        if now is None:
            wall = time.time()
            now = wall if wall - self.latest <= self.max_duration else self.latest
        try:
            taken = self.table.session_take(
                now - self.idle_timeout, now - self.max_duration, SWEEP_LIMIT
            )
        except Exception as exc:
            self._failed(exc)
            return []
        return [_span(record) for record in taken]

    def clear(self) -> None:
        """Keep the shared sessions: other processes go on with them (shutdown, fork)."""

    def reset_lock(self) -> None:
        """Nothing to reset: the store prepares itself for a forked child."""

    def __len__(self) -> int:
        return 0  # kept in the store, not in this process

    def _call(self, change: SessionChange[Any], key: str, default: Any) -> Any:
        try:
            return self.table.session_update(key, change)
        except Exception as exc:
            self._failed(exc)
            return default

    def _failed(self, exc: Exception) -> None:
        self.failed += 1
        now = time.monotonic()
        if now - self._logged >= _LOG_EVERY_S:
            self._logged = now
            logger.warning(
                "sessions: the store could not be reached (%s); events go without a "
                "session id meanwhile (logged at most once every %.0f s)",
                exc,
                _LOG_EVERY_S,
            )
