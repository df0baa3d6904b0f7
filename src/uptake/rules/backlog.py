"""Events the rules could not apply while their store was unreachable, kept to apply later.

When the store fails with ``StoreUnavailable`` or ``TimeoutError`` (Redis down or frozen,
a SQLite file locked for longer than its timeout), the event is still sent, and it is
kept here, in order, with what is needed to apply it again. Once an event is waiting,
later events wait behind it (a user's events are applied in the order they were
tracked); each tracking call and ``flush()`` try the oldest first, so the backlog empties
as soon as the store answers again. Each event is applied exactly once: when the failed
write may have landed after all (a Redis reply lost to the timeout), the store is asked
whether it did, and if so what that write decided is reported instead of applying the
event a second time.

The backlog is bounded (``limit`` events, per client and process); past it an event is
left out of the rules for good, counted and logged. It lives in memory: a process that
exits while events wait loses them (their events were sent all the same).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Backlog", "Pending"]

logger = logging.getLogger("uptake")

#: Events waiting, per client and process, before new ones are left out for good.
BACKLOG_LIMIT = 10_000


class Pending:
    """One event (a track, or a merge of a visitor into a user) waiting for the store."""

    __slots__ = (
        "account",
        "anon",
        "event",
        "kind",
        "landed",
        "properties",
        "saved",
        "session_id",
        "t",
        "uid",
    )

    def __init__(
        self,
        kind: str,
        uid: str | None,
        anon: str | None,
        account: str | None,
        event: str,
        properties: Mapping[str, Any] | None,
        t: float,
        session_id: str | None,
    ) -> None:
        self.kind = kind
        self.uid = uid
        self.anon = anon
        self.account = account
        self.event = event
        # A copy: the host may change its dict after the call returned.
        self.properties = dict(properties) if properties is not None else None
        self.t = t
        self.session_id = session_id
        #: Asks the store whether the failed write landed after all (None: it did not).
        self.landed: Callable[[], bool] | None = None
        #: What the failed write decided (reported if it landed).
        self.saved: Any = None


class Backlog:
    """The waiting events of one client, and the counts ``Client.stats`` shows."""

    def __init__(self, limit: int = BACKLOG_LIMIT) -> None:
        self.limit = limit
        #: The events, oldest first (the facade tests this deque on every event).
        self.entries: deque[Pending] = deque()
        self.lock = threading.Lock()
        self.draining = False
        #: Events the rules could not apply when they were tracked (kept or not).
        self.deferred = 0
        #: Of those, events applied later, once the store answered again.
        self.replayed = 0
        #: Of those, events left out for good because ``limit`` were already waiting.
        self.overflowed = 0
        self._logged = -1e9

    def keep(self, entry: Pending) -> None:
        """Add an event at the end (or count it as left out when the backlog is full)."""
        with self.lock:
            self.deferred += 1
            if len(self.entries) < self.limit:
                self.entries.append(entry)
                return
            self.overflowed += 1
            overflowed = self.overflowed
            now = time.monotonic()
            if now - self._logged < 10.0:
                return
            self._logged = now
        logger.warning(
            "the rule store has been unreachable for %d events: %d left out of the rules for "
            "good so far (they were still sent)",
            self.limit,
            overflowed,
        )

    def head(self) -> Pending | None:
        """The oldest event, or None (and the backlog stops draining) when there is none."""
        with self.lock:
            if self.entries:
                return self.entries[0]
            self.draining = False
            return None

    def start(self) -> bool:
        """Become the one thread that drains; False if another one is, or nothing waits."""
        with self.lock:
            if self.draining or not self.entries:
                return False
            self.draining = True
            return True

    def done(self, entry: Pending) -> None:
        """Remove the oldest event, applied (or reported) now."""
        with self.lock:
            if self.entries and self.entries[0] is entry:
                self.entries.popleft()
                self.replayed += 1

    def stop(self) -> None:
        """Stop draining (the store failed again, or this call did its share)."""
        with self.lock:
            self.draining = False
