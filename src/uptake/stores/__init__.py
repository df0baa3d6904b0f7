"""Stores keep the rules' per-user and per-account state.

A store maps a subject key (``"user:<id>"``, ``"anon:<id>"``, ``"account:<id>"``) to its
:class:`~uptake._rulestate.SubjectState` (stores import that shared module, never the
rules). ``update`` must be atomic: the change it applies runs while no other update of
that key (in any process sharing the store) can interleave, which is what makes a
milestone fire exactly once. The change may be called more than once (an optimistic store
retrying after a conflict), and it never runs host code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from .._rulestate import SubjectState

T = TypeVar("T")


class Store(Protocol):
    """What the client needs from a store."""

    def update(self, key: str, change: Callable[..., T], *args: Any) -> T:
        """Call ``change(state, *args)`` on the state of ``key`` (created if new), atomically."""
        ...

    def update_many(self, keys: Sequence[str], change: Callable[..., T], *args: Any) -> T:
        """Call ``change([state of each key], *args)`` atomically for all the keys.

        One lock or transaction instead of one per key (an event changes its user's and its
        account's state). A store that cannot make several keys atomic together may apply
        this as one atomic update per key, in order.
        """
        ...

    def get(self, key: str) -> SubjectState | None:
        """A copy of the state of ``key``, or None."""
        ...

    def delete(self, key: str) -> bool:
        """Forget ``key``; True if it was known."""
        ...

    def after_fork_in_child(self) -> None:
        """Prepare for use in a forked child process."""
        ...
