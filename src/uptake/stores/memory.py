"""MemoryStore: rule state in this process's memory, bounded by the number of subjects."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._rulestate import SubjectState
from ..errors import ConfigurationError

__all__ = ["MemoryStore"]

T = TypeVar("T")


class MemoryStore:
    """Keeps each user's and account's rule state in memory (the default store).

    Per process: under gunicorn or uwsgi each worker sees only part of a user's events, so
    milestones fire late, never, or once per worker; use ``SqliteStore`` there. A user
    evicted for ``max_users`` starts afresh when seen again (and may reach a milestone a
    second time). Thread-safe; each update is atomic.

    Args:
        max_users: Most subjects (users plus accounts) kept; beyond it the least recently
            seen is forgotten, and counted in :attr:`evicted`.
    """

    #: Never waits on I/O (a lock held for microseconds at most): async web integrations
    #: record on the event loop with it, instead of in a worker thread.
    in_process = True

    def __init__(self, max_users: int = 100_000) -> None:
        if not isinstance(max_users, int) or isinstance(max_users, bool) or max_users < 1:
            raise ConfigurationError(f"max_users must be a positive int, not {max_users!r}")
        self.max_users = max_users
        self.evicted = 0
        # A plain dict in least-recently-seen order (a touched key is moved to the end):
        # lighter per entry than an OrderedDict.
        self._states: dict[str, SubjectState] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore(subjects={len(self._states)}, max_users={self.max_users})"

    def __len__(self) -> int:
        return len(self._states)

    # (The rules engine applies most events to a MemoryStore (this class, not a subclass)
    # as ``update`` does, under ``_lock`` with ``_touch``, without packing arguments.)

    def update(self, key: str, change: Callable[..., T], *args: Any) -> T:
        """Call ``change(state, *args)`` on the state of ``key`` (created if new), atomically."""
        with self._lock:
            return change(self._touch(key), *args)

    def update_many(self, keys: Sequence[str], change: Callable[..., T], *args: Any) -> T:
        """Call ``change([state of each key], *args)`` atomically for all the keys."""
        with self._lock:
            return change([self._touch(key) for key in keys], *args)

    def _touch(self, key: str) -> SubjectState:
        """The state of ``key``, made the most recently seen (call with the lock held)."""
        states = self._states
        state = states.pop(key, None)
        if state is None:
            state = SubjectState()
            if len(states) >= self.max_users:
                del states[next(iter(states))]
                self.evicted += 1
        states[key] = state
        return state

    def get(self, key: str) -> SubjectState | None:
        """A copy of the state of ``key``, or None."""
        with self._lock:
            state = self._states.get(key)
            return None if state is None else SubjectState.from_json(state.to_json())

    def delete(self, key: str) -> bool:
        """Forget ``key``; True if it was known."""
        with self._lock:
            return self._states.pop(key, None) is not None

    def after_fork_in_child(self) -> None:
        """Replace the lock (the parent may have held it at fork time)."""
        self._lock = threading.Lock()
