"""The open session of a user as a shared store keeps it (a SQLite row, a Redis hash).

Shared by the sessions (which decide) and the stores (which keep): the stores import this
module and never ``uptake.sessions``, as they import ``_rulestate`` and never the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

__all__ = ["SessionChange", "SessionRecord"]

T = TypeVar("T")


class SessionRecord(NamedTuple):
    """One open session: whose it is, its id, its first and last event time."""

    key: str
    session_id: str
    user_id: str | None
    anonymous_id: str | None
    account_id: str | None
    started: float
    last: float
    explicit: bool


#: ``change(record or None) -> (record to keep, result)``: the record given keeps it as
#: it is, ``None`` deletes it, another record replaces it.
SessionChange = Callable[[SessionRecord | None], tuple[SessionRecord | None, T]]
