"""Buffers hold encoded events between ``track()`` and the worker that sends them.

A buffer stores each event as the exact bytes that will be sent (compact UTF-8 JSON), so a
queued event costs its encoded size plus a small fixed overhead, and what is sent is what was
accepted even if the host later mutates the objects it passed in.

Two buffers ship with uptake: :class:`MemoryBuffer` (the default) and
:class:`~uptake.SqliteBuffer`, a durable outbox on disk. Both are thread-safe.

Events are numbered as they are accepted. A :class:`Batch` carries the numbers of its first
and last event, and ``mark()`` / ``drained(mark)`` let ``flush()`` wait for exactly the
events accepted before it.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

__all__ = ["Batch", "Buffer", "MemoryBuffer"]

#: Called by a buffer that drops events on its own: (reason, count, number of the oldest).
OnDrop = Callable[[str, int, int], None]


@attrs.frozen
class Batch:
    """Events taken from a buffer to be sent together.

    Attributes:
        messages: The encoded events, oldest first.
        low: Number of the first event (comparable with ``Buffer.mark()``).
        high: Number of the last event.
        ids: Buffer-specific handles of the events (row ids for the SQLite outbox).
    """

    messages: Sequence[bytes]
    low: int
    high: int
    ids: Sequence[int] = ()

    def __len__(self) -> int:
        return len(self.messages)


class Buffer(Protocol):
    """What the client and its worker need from a buffer. Implementations are thread-safe."""

    #: True when events survive the process (the worker then keeps, rather than fails,
    #: events the collector could not take for now).
    durable: bool

    def configure(self, *, max_events: int, max_bytes: int, on_drop: OnDrop, lease: float) -> None:
        """Receive the client's settings (called once, by the client).

        Args:
            max_events: Most events to hold in memory.
            max_bytes: Most encoded bytes to hold in memory.
            on_drop: Callback for events the buffer drops on its own.
            lease: Longest time, in seconds, one batch may take to settle.
        """
        ...

    def put(self, message: bytes) -> bool:
        """Accept one encoded event; False when the buffer is full (the event is refused)."""
        ...

    def take(self, max_bytes: int) -> Batch | None:
        """Remove (or lease) the oldest events, within ``max_bytes``; None when empty.

        At least one event is returned when any is queued, even one larger than
        ``max_bytes``.
        """
        ...

    def settle(self, batch: Batch, keep: Sequence[tuple[int, int]] = ()) -> None:
        """Finish with a batch: its events are gone for good, except the index ranges in
        ``keep`` (``[start, stop)`` into ``batch.messages``), which a durable buffer keeps
        for a later attempt."""
        ...

    def mark(self) -> int:
        """The number of the newest event accepted so far."""
        ...

    def drained(self, mark: int) -> bool:
        """True when every event numbered up to ``mark`` has been settled."""
        ...

    def __len__(self) -> int:
        """Number of queued events (including ones being sent)."""
        ...

    def close(self) -> int:
        """Release resources at shutdown; return how many queued events are lost."""
        ...

    def after_fork_in_child(self) -> None:
        """Prepare for use in a forked child process."""
        ...


class MemoryBuffer:
    """An in-memory FIFO of encoded events (the default buffer).

    Bounded by the client's ``max_queue_size`` and ``max_queue_bytes``: beyond them, new
    events are refused (and counted by the client). Events in it are lost if the process
    dies; use :class:`~uptake.SqliteBuffer` when that matters.
    """

    durable = False

    def __init__(self) -> None:
        self._items: deque[bytes] = deque()
        self._nbytes = 0
        self._lock = threading.Lock()
        self._max_events = 1 << 62
        self._max_bytes = 1 << 62
        self._accepted = 0  # events ever accepted: the number of the newest
        self._taken = 0  # events ever taken
        self._settled = 0  # events ever settled (taken and finished, or cleared)

    def __repr__(self) -> str:
        return f"MemoryBuffer(queued={len(self._items)}, nbytes={self._nbytes})"

    def configure(self, *, max_events: int, max_bytes: int, on_drop: OnDrop, lease: float) -> None:
        """Take the client's bounds (a memory buffer never drops events on its own)."""
        self._max_events = max_events
        self._max_bytes = max_bytes

    @property
    def nbytes(self) -> int:
        """Total encoded size of the queued events, in bytes."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items) + self._taken - self._settled

    def backlog(self) -> int:
        """Events waiting in memory to be taken (cheap: tracking calls ask it in bursts)."""
        return len(self._items)

    def put(self, message: bytes) -> bool:
        """Append one encoded event, unless that would pass the bounds."""
        size = len(message)
        with self._lock:
            if len(self._items) >= self._max_events or self._nbytes + size > self._max_bytes:
                return False
            self._items.append(message)
            self._nbytes += size
            self._accepted += 1
            return True

    def take(self, max_bytes: int) -> Batch | None:
        """Remove and return the oldest events, within ``max_bytes``.

        Each event is counted with one extra byte for the comma that joins it to the next.
        """
        with self._lock:
            items = self._items
            count = len(items)
            if not count:
                return None
            # Whole runs of events are moved in C, not one by one: this runs under the lock
            # that every tracking call takes, and a busy queue holds thousands of events.
            if self._nbytes + count <= max_bytes:  # all of it fits (the usual case)
                out = list(items)
                items.clear()
                size = self._nbytes + count
            else:  # as many as fit at the average size, then one by one to the limit
                fit = max(0, max_bytes * count // (self._nbytes + count))
                out = list(itertools.islice(items, fit))
                size = sum(map(len, out)) + len(out)
                while size > max_bytes and len(out) > 1:
                    size -= len(out.pop()) + 1
                taken = len(out)
                if taken >= count - taken:  # fewer left than taken: keep a copy of the rest
                    items = self._items = deque(itertools.islice(items, taken, None))
                else:  # a long backlog: drop the taken ones from its front
                    popleft = items.popleft
                    for _ in range(taken):
                        popleft()
            while items:
                cost = len(items[0]) + 1
                if out and size + cost > max_bytes:
                    break
                out.append(items.popleft())
                size += cost
            self._nbytes -= size - len(out)
            low = self._taken + 1
            self._taken += len(out)
            return Batch(out, low, self._taken)

    def settle(self, batch: Batch, keep: Sequence[tuple[int, int]] = ()) -> None:
        """Finish with a batch (a memory buffer keeps nothing for later)."""
        with self._lock:
            self._settled = max(self._settled, batch.high)

    def mark(self) -> int:
        """The number of the newest event accepted so far."""
        return self._accepted

    def drained(self, mark: int) -> bool:
        """True when every event numbered up to ``mark`` has been settled."""
        return self._settled >= mark

    def close(self) -> int:
        """Drop what is still queued; return how many events that was."""
        with self._lock:
            count = len(self._items)
            self._items.clear()
            self._nbytes = 0
            self._taken += count
            self._settled = self._taken
            return count

    def after_fork_in_child(self) -> None:
        """Start empty: the events inherited from the parent are the parent's to send."""
        self._lock = threading.Lock()
        self._items = deque()
        self._nbytes = 0
        self._accepted = self._taken = self._settled = 0
