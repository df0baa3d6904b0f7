"""Buffers hold encoded events between ``track()`` and the worker that sends them.

A buffer stores each event as the exact bytes that will be sent (compact UTF-8 JSON), so a
queued event costs its encoded size plus a small fixed overhead, and what is sent is what was
accepted even if the host later mutates the objects it passed in.

Buffers are not thread-safe on their own: the client serialises every call with its lock.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

__all__ = ["Buffer", "MemoryBuffer"]


class Buffer(Protocol):
    """What the client and its worker need from a buffer."""

    @property
    def nbytes(self) -> int:
        """Total encoded size of the queued events, in bytes."""
        ...

    def __len__(self) -> int:
        """Number of queued events."""
        ...

    def put(self, message: bytes) -> None:
        """Append one encoded event."""
        ...

    def take(self, max_events: int, max_bytes: int) -> list[bytes]:
        """Remove and return the oldest events, at most ``max_events`` and ``max_bytes``.

        Returns at least one event when the buffer is not empty, even if that event alone is
        larger than ``max_bytes``.
        """
        ...

    def clear(self) -> int:
        """Remove every queued event; return how many there were."""
        ...

    def after_fork_in_child(self) -> None:
        """Prepare for use in a forked child process."""
        ...


class MemoryBuffer:
    """An in-memory FIFO of encoded events (the default buffer).

    Bounded by the client's ``max_queue_size`` and ``max_queue_bytes``. Events in it are lost
    if the process dies; use a durable buffer when that matters.
    """

    def __init__(self) -> None:
        self._items: deque[bytes] = deque()
        self._nbytes = 0

    def __repr__(self) -> str:
        return f"MemoryBuffer(queued={len(self._items)}, nbytes={self._nbytes})"

    @property
    def nbytes(self) -> int:
        """Total encoded size of the queued events, in bytes."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: bytes) -> None:
        """Append one encoded event."""
        self._items.append(message)
        self._nbytes += len(message)

    def take(self, max_events: int, max_bytes: int) -> list[bytes]:
        """Remove and return the oldest events, within ``max_events`` and ``max_bytes``.

        Each event is counted with one extra byte for the comma that joins it to the next.
        """
        items = self._items
        out: list[bytes] = []
        size = 0
        while items and len(out) < max_events:
            head = items[0]
            cost = len(head) + 1
            if out and size + cost > max_bytes:
                break
            out.append(items.popleft())
            size += cost
        self._nbytes -= size - len(out)
        return out

    def clear(self) -> int:
        """Remove every queued event; return how many there were."""
        count = len(self._items)
        self._items.clear()
        self._nbytes = 0
        return count

    def after_fork_in_child(self) -> None:
        """Empty the copy inherited from the parent: those events are the parent's to send."""
        self.clear()
