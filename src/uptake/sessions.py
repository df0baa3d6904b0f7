"""Automatic sessionization: which session each user's event belongs to.

A session ends after ``idle_timeout`` seconds without events or when it has lasted
``max_duration`` seconds; the next event starts a new one. Explicit sessions (started with
``Client.session_start``) do not end when idle, only when ended or at the duration cap.
Times are event times (epoch seconds), so backfills and replays sessionize like live
traffic. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import attrs

from .events import new_session_id


@attrs.frozen
class SessionSpan:
    """A session as it stands: its id, first and last event time, who it belongs to."""

    session_id: str
    user_id: str | None
    anonymous_id: str | None
    account_id: str | None
    started: float
    last: float
    explicit: bool = False

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last event of the session."""
        return round(self.last - self.started, 3)


#: (session id for the event, the session it started, the session it ended)
Touch = tuple[str | None, SessionSpan | None, SessionSpan | None]
_NO_SESSION: Touch = (None, None, None)


class _Open:
    """The mutable record of an open session (internal; reported as a frozen SessionSpan)."""

    __slots__ = (
        "account_id",
        "anonymous_id",
        "explicit",
        "last",
        "session_id",
        "started",
        "user_id",
    )

    def __init__(
        self,
        user_id: str | None,
        anonymous_id: str | None,
        account_id: str | None,
        t: float,
        explicit: bool,
    ) -> None:
        self.session_id = new_session_id()
        self.user_id = user_id
        self.anonymous_id = anonymous_id
        self.account_id = account_id
        self.started = t
        self.last = t
        self.explicit = explicit

    def span(self) -> SessionSpan:
        return SessionSpan(
            session_id=self.session_id,
            user_id=self.user_id,
            anonymous_id=self.anonymous_id,
            account_id=self.account_id,
            started=self.started,
            last=self.last,
            explicit=self.explicit,
        )


class Sessionizer:
    """Tracks the open session of each user, bounded to ``max_users`` (least recent evicted)."""

    def __init__(
        self, *, idle_timeout: float, max_duration: float, max_users: int, emit: bool = True
    ) -> None:
        self.idle_timeout = idle_timeout
        #: False: sessions still give every event its ``context.sessionId``, but no
        #: "Session Started" / "Session Ended" events are sent (``session_events=False``).
        self.emit = emit
        self.max_duration = max_duration
        self.max_users = max_users
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._lock = threading.Lock()
        self.latest = 0.0  # the latest event time seen

    def reset_lock(self) -> None:
        """Replace the lock (after fork, where the parent may have held it)."""
        self._lock = threading.Lock()

    def touch(
        self,
        key: str,
        t: float,
        user_id: str | None,
        anonymous_id: str | None,
        account_id: str | None,
    ) -> Touch:
        """Place an active event at time ``t`` in the user's session, opening one if needed.

        Returns ``(session id for the event, session it started, session it ended)``; the
        last two are usually ``None``. (A plain tuple: this runs inside every ``track()``.)
        An event older than the open session by more than the idle timeout is a backfill:
        it gets no session id rather than a wrong one.
        """
        with self._lock:
            if t > self.latest:
                self.latest = t
            current = self._open.get(key)
            ended = None
            if current is not None:
                expired = t - current.started > self.max_duration or (
                    not current.explicit and t - current.last > self.idle_timeout
                )
                if not expired:
                    if t < current.started - self.idle_timeout:
                        return _NO_SESSION
                    if t > current.last:
                        current.last = t
                    elif t < current.started:
                        current.started = t
                    self._open.move_to_end(key)
                    return current.session_id, None, None
                ended = current.span()
            opened = _Open(user_id, anonymous_id, account_id, t, explicit=False)
            self._open[key] = opened
            self._open.move_to_end(key)
            evicted = self._evict()
        # Replacing a user's session never grows the map, so at most one of the two is set.
        return opened.session_id, opened.span(), ended or evicted

    def current(self, key: str) -> str | None:
        """Return the open session id of a user, if any, without touching it."""
        current = self._open.get(key)
        return current.session_id if current is not None else None

    def start(
        self,
        key: str,
        t: float,
        *,
        user_id: str | None,
        anonymous_id: str | None,
        account_id: str | None,
    ) -> tuple[SessionSpan, SessionSpan | None]:
        """Open an explicit session for a user, ending the open one; return (new, ended)."""
        opened = _Open(user_id, anonymous_id, account_id, t, explicit=True)
        with self._lock:
            previous = self._open.pop(key, None)
            self._open[key] = opened
            evicted = self._evict()
        ended = previous.span() if previous is not None else evicted
        return opened.span(), ended

    def end(self, key: str, t: float | None = None) -> SessionSpan | None:
        """Close a user's open session and return it (``None`` if none was open)."""
        with self._lock:
            current = self._open.pop(key, None)
        if current is None:
            return None
        if t is not None and t > current.last:
            current.last = t
        return current.span()

    def expire(self, now: float | None = None) -> list[SessionSpan]:
        """Close and return the sessions idle for longer than the timeout at ``now``.

        By default ``now`` is the wall clock while events are live (the latest event time
        is within ``max_duration`` of it), and the latest event time otherwise, so replays
        and backfills of old events expire on their own clock. Scans from the least
        recently active user and stops at the first live session, so the cost is the
        number of sessions ended.
        """
        if now is None:
            wall = time.time()
            now = wall if wall - self.latest <= self.max_duration else self.latest
        expired: list[_Open] = []
        with self._lock:
            for key, current in list(self._open.items()):
                if current.explicit:
                    if now - current.started > self.max_duration:
                        del self._open[key]
                        expired.append(current)
                    continue
                if now - current.last <= self.idle_timeout:
                    break  # the rest were active more recently
                del self._open[key]
                expired.append(current)
        return [current.span() for current in expired]

    def clear(self) -> None:
        """Forget every open session without ending it."""
        with self._lock:
            self._open.clear()

    def __len__(self) -> int:
        return len(self._open)

    def _evict(self) -> SessionSpan | None:
        if len(self._open) > self.max_users:
            _, current = self._open.popitem(last=False)
            return current.span()
        return None
