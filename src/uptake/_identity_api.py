"""The identity part of the public Client API: ``identify`` and ``alias``.

:class:`IdentityApi` is a base of :class:`~uptake.Client`. Both calls send a Segment
message; when they tie a visitor (an anonymous id) to a user, the visitor's rule state is
merged into the user's (see :mod:`uptake.rules.identity` and docs/identity.md), so that
a milestone reached as a visitor does not fire again for the user and nudge caps count
both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import events as _ev
from ._rules_api import _when
from .errors import InvalidEventError
from .pipeline import Pipeline
from .rules.facade import RulesFacade
from .sessions import Sessionizer

__all__ = ["IdentityApi"]


class IdentityApi:
    """Identity methods of the client (a base class of :class:`~uptake.Client`)."""

    _pipeline: Pipeline
    _rules: RulesFacade
    _rules_on: bool
    _sessions: Sessionizer

    def identify(
        self,
        user_id: str | int | None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Record who a user is (``plan``, ``email``, ...). Thread-safe; never blocks.

        Identify does not count as activity: it starts no session. With both ``user_id``
        and ``anonymous_id`` (what the web middleware sends at sign-in) the visitor's rule
        state is merged into the user's, as :meth:`alias` does.

        Raises:
            InvalidEventError: no user id, or traits that are not a mapping.
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        traits = _ev.check_mapping(traits, "traits")
        context = _ev.check_mapping(context, "context")
        t = _when(timestamp, "timestamp")
        session = self._sessions.current(uid or anon or "")
        message = self._pipeline.message("identify", uid, anon, t, None, context, session)
        message["traits"] = traits if traits is not None else {}
        self._pipeline.emit(message, host_context=context is not None)
        if not self._rules_on:
            return
        if uid is not None and anon is not None:
            self._rules.merge(uid, anon, t, session)
        if traits:
            self._rules.engine.identify(uid, anon, traits)

    def alias(
        self,
        previous_id: str | int,
        user_id: str | int,
        *,
        timestamp: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Tie a previous id (a visitor's anonymous id) to a user: they are one person.

        Sends a Segment ``alias`` message (``previousId``, ``userId``) and merges the
        rule state kept under ``previous_id`` as an anonymous id into the user's: the
        milestones the visitor reached count for the user and never fire again, nudge
        fires, caps and cooldowns carry over, active days are united (see
        docs/identity.md). Merging is atomic on every store, and idempotent: a second
        alias of the same visitor, or of a visitor never seen, changes nothing. When the
        store cannot be reached, the merge waits with the events and is applied, in
        order, once it answers again. Thread-safe; never blocks on the network beyond
        the store's ``timeout``.

        Example::

            client.alias(request.cookies["uptake_anonymous_id"], user.id)

        Raises:
            InvalidEventError: a missing or empty id, or both ids the same.
        """
        previous = _ev.check_identity(None, previous_id)[1]
        uid = _ev.check_identity(user_id, None)[0]
        assert previous is not None and uid is not None
        if previous == uid:
            raise InvalidEventError(f"alias() needs two different ids, not {uid!r} twice")
        context = _ev.check_mapping(context, "context")
        t = _when(timestamp, "timestamp")
        session = self._sessions.current(uid)
        message = self._pipeline.message("alias", uid, None, t, None, context, session)
        message["previousId"] = previous
        self._pipeline.emit(message, host_context=context is not None)
        if self._rules_on:
            self._rules.merge(uid, previous, t, session)
