"""The session part of the public Client API: explicit sessions.

:class:`SessionsApi` is a base of :class:`~uptake.Client`. Automatic sessions need no
call: the pipeline places every activity event in the user's session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

from . import events as _ev
from ._rules_api import _when
from .pipeline import Pipeline
from .sessions import Sessionizer

__all__ = ["SessionsApi"]


class SessionsApi:
    """Explicit session methods of the client (a base class of :class:`~uptake.Client`)."""

    _pipeline: Pipeline
    _sessions: Sessionizer

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
        t = _when(timestamp, "timestamp")
        started, ended = self._sessions.start(
            uid or anon or "", t, user_id=uid, anonymous_id=anon, account_id=account
        )
        if ended is not None:
            self._pipeline.emit_session("Session Ended", ended, ended.last)
        self._pipeline.emit_session("Session Started", started, t)
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
        t = _when(timestamp, "timestamp")
        ended = self._sessions.end(uid or anon or "", t)
        if ended is not None:
            self._pipeline.emit_session("Session Ended", ended, ended.last)

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
