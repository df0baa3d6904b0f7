"""Events the rules could not apply during a store outage, kept to apply later.

When the store is out (``StoreUnavailable`` or ``TimeoutError`` meant as an outage:
Redis down or frozen, a SQLite file locked for longer than its timeout), the event is
still sent, and it is kept here with what is needed to apply it again. Events wait per
subject (a user, with the visitor a pending merge links to it): once one of a subject's
events waits, that subject's later events wait behind it, so each subject's events are
applied in the order they were tracked, while other subjects go on as usual. Each
tracking call and ``flush()`` try the waiting subjects in turn, so the backlog empties as
soon as the store answers again.

A subject whose oldest waiting event keeps failing while the store answers for others
(a key the store refuses for good) is given up after :data:`STRIKES` such failures, at
least :data:`STRIKE_GAP_S` apart: its
waiting events are left out of the rules, counted as skipped and logged, and it blocks
nobody meanwhile.

The backlog is bounded (``limit`` events, per client and process); past it an event is
left out of the rules for good, counted and logged. It lives in memory: a process that
exits while events wait loses them (their events were sent all the same).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Backlog", "Pending"]

logger = logging.getLogger("uptake")

#: Events waiting, per client and process, before new ones are left out for good.
BACKLOG_LIMIT = 10_000
#: Failures of a subject's oldest event, each after the store answered for another
#: subject, before that subject's waiting events are given up.
STRIKES = 3
#: Seconds between two such failures that count (so that a Redis Cluster node down for a
#: few seconds, while the others answer, does not cost its users their events).
STRIKE_GAP_S = 5.0


class Pending:
    """One event (a track, or a merge of a visitor into a user) waiting for the store."""

    __slots__ = (
        "account",
        "anon",
        "event",
        "held",
        "kind",
        "landed",
        "mark",
        "properties",
        "saved",
        "session_id",
        "stage",
        "strikes",
        "struck",
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
        #: A merge on a store that takes it in two steps: the visitor's state, once the
        #: first step took it (only the second step is left to do).
        self.held: dict[str, Any] | None = None
        #: Which step of such a merge failed last: "take" or "give" ("": none yet).
        self.stage = ""
        #: Failures after the store answered for another subject, and the count of
        #: answers seen at the last failure.
        self.strikes = 0
        self.mark = 0
        self.struck = -1e9

    def keys(self) -> tuple[str, ...]:
        """The subjects whose order this entry keeps (a merge links two)."""
        if self.kind == "merge":
            return (f"anon:{self.anon}", f"user:{self.uid}")
        return (subject_key(self.uid, self.anon),)


def subject_key(uid: str | None, anon: str | None) -> str:
    """The key a user's events wait under (their user id, else their anonymous id)."""
    return f"user:{uid}" if uid is not None else f"anon:{anon}"


class _Queue:
    """The waiting entries of one subject (or of the subjects a pending merge links)."""

    __slots__ = ("entries", "keys")

    def __init__(self) -> None:
        self.entries: deque[Pending] = deque()
        self.keys: set[str] = set()


class Backlog:
    """The waiting events of one client, and the counts ``Client.stats`` shows."""

    def __init__(self, limit: int = BACKLOG_LIMIT) -> None:
        self.limit = limit
        self.strike_gap = STRIKE_GAP_S
        #: Each waiting subject's queue, by key (the facade tests this dict on every event).
        self.waiting: dict[str, _Queue] = {}
        #: The queues in the order they are tried (a failing one goes to the back).
        self._order: deque[_Queue] = deque()
        self._size = 0
        self.lock = threading.Lock()
        self.draining = False
        #: Events the rules could not apply when they were tracked (kept or not).
        self.deferred = 0
        #: Of those, events applied later, once the store answered again.
        self.replayed = 0
        #: Of those, events left out for good because ``limit`` were already waiting.
        self.overflowed = 0
        #: Of those, events given up because their subject kept failing alone.
        self.abandoned = 0
        #: Times the store answered while events waited (proof that it is up).
        self.answers = 0
        self._logged = -1e9
        self._abandon_logged = -1e9

    def __len__(self) -> int:
        return self._size

    @property
    def entries(self) -> list[Pending]:
        """Every waiting entry, subject by subject in the order they are tried."""
        with self.lock:
            return [entry for queue in self._order for entry in queue.entries]

    def holds(self, keys: tuple[str, ...]) -> bool:
        """Whether events of any of these subjects wait (a new one must wait behind)."""
        waiting = self.waiting
        return any(key in waiting for key in keys)

    def keep(self, entry: Pending) -> None:
        """Add an event behind its subject's (or count it as left out when full)."""
        with self.lock:
            self.deferred += 1
            if self._size < self.limit:
                entry.mark = self.answers
                self._add(entry)
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

    def _add(self, entry: Pending) -> None:
        keys = entry.keys()
        found: list[_Queue] = []
        for key in keys:
            queue = self.waiting.get(key)
            if queue is not None and queue not in found:
                found.append(queue)
        if not found:
            queue = _Queue()
            self._order.append(queue)
        else:
            queue = found[0]
            for other in found[1:]:  # a merge links two waiting subjects: one queue now
                queue.entries.extend(other.entries)
                queue.keys |= other.keys
                self._order.remove(other)
                for key in other.keys:
                    self.waiting[key] = queue
        queue.entries.append(entry)
        for key in keys:
            queue.keys.add(key)
            self.waiting[key] = queue
        self._size += 1

    def answered(self) -> None:
        """Note that the store answered (for a subject that was not waiting)."""
        with self.lock:
            self.answers += 1

    def head(self) -> Pending | None:
        """The oldest event of the first waiting subject, or None (and the backlog stops
        draining) when there is none."""
        with self.lock:
            if self._order:
                return self._order[0].entries[0]
            self.draining = False
            return None

    def start(self) -> bool:
        """Become the one thread that drains; False if another one is, or nothing waits."""
        with self.lock:
            if self.draining or not self._order:
                return False
            self.draining = True
            return True

    def done(self, entry: Pending, *, applied: bool = True) -> None:
        """Remove the event :meth:`head` gave: applied (or reported) now, or (``applied``
        False) left out for good after an error that is not an outage."""
        with self.lock:
            if self._order and self._order[0].entries[0] is entry:
                self._pop_head()
                self.answers += 1
                if applied:
                    self.replayed += 1
                else:
                    self.abandoned += 1

    def failed(self, entry: Pending) -> bool:
        """The event :meth:`head` gave failed again: try other subjects first next time,
        and give its subject up once it has failed :data:`STRIKES` times (``strike_gap``
        seconds apart at least) while the store answered for others. True when the store
        did answer for others since this event last failed (go on with them)."""
        with self.lock:
            if not self._order or self._order[0].entries[0] is not entry:
                return False
            answered = self.answers > entry.mark
            now = time.monotonic()
            if answered and now - entry.struck >= self.strike_gap:
                entry.strikes += 1
                entry.struck = now
            entry.mark = self.answers
            queue = self._order.popleft()
            if entry.strikes < STRIKES:
                self._order.append(queue)
                return answered
            given_up = len(queue.entries)
            self._size -= given_up
            self.abandoned += given_up
            for key in queue.keys:
                del self.waiting[key]
            if now - self._abandon_logged < 10.0:
                return answered
            self._abandon_logged = now
            abandoned = self.abandoned
        logger.warning(
            "the rule store kept failing for %s while it answered for others: %d waiting "
            "events left out of the rules (%d so far; they were still sent)",
            " and ".join(sorted(queue.keys)),
            given_up,
            abandoned,
        )
        return answered

    def _pop_head(self) -> None:
        queue = self._order[0]
        queue.entries.popleft()
        self._size -= 1
        if not queue.entries:
            self._order.popleft()
            for key in queue.keys:
                del self.waiting[key]

    def stop(self) -> None:
        """Stop draining (the store failed again, or this call did its share)."""
        with self.lock:
            self.draining = False

    def __iter__(self) -> Iterator[Pending]:
        return iter(self.entries)
