"""The engagement-signal part of the public Client API: a callback and an explicit check.

:class:`EngagementApi` is a base of :class:`~uptake.Client`; it checks the arguments and
hands the work to the rules engine (which decides signals inside its store updates) and
to :class:`~uptake.rules.engagement_report.ChangeHooks` (which records and calls them back).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from ._rules_api import _when
from .errors import ConfigurationError
from .rules.engagement_report import ChangeHook, check
from .rules.engagement_signals import EngagementChange
from .rules.engine import RulesEngine
from .rules.facade import RulesFacade
from .sessions import Sessionizer

__all__ = ["EngagementApi"]


class EngagementApi:
    """Engagement-signal methods of the client (a base class of :class:`~uptake.Client`)."""

    _rules: RulesFacade
    _sessions: Sessionizer

    def on_engagement_change(
        self,
        scope: Literal["user", "account"] | None = None,
        *,
        kind: Literal["tier", "declining"] | None = None,
        change: Literal["rose", "dropped", "started", "ended"] | None = None,
    ) -> Callable[[ChangeHook], ChangeHook]:
        """Register a callback for engagement changes (all of them, or those matching).

        The callback receives one :class:`~uptake.EngagementChange` when a user's or an
        account's tier rises or drops, or a decline starts or ends. Changes are found at
        the subject's events, on event time, and by :meth:`check_engagement`; each one is
        signalled once, also across processes sharing a SqliteStore or RedisStore. The
        callback runs on the thread whose call found the change, right after the event
        was tracked (as ``on_milestone`` callbacks do). Exceptions it raises are logged;
        other callbacks still run and the tracking call still returns. Registering one
        turns signals on in this client (see ``Engagement(signals=True)``).

        Example::

            @client.on_engagement_change("account", change="dropped")
            def alert_csm(change: uptake.EngagementChange) -> None:
                notify(change.account_id, change.previous_tier, change.tier)

        Raises:
            ConfigurationError: engagement is off, or a filter is not one of its values.
        """
        engine = self._engagement_on()
        register = self._rules.changes.register(scope, kind, change)
        if engine.user_signals is None:
            engine.enable_signals()
        return register

    def check_engagement(
        self,
        user_id: str | int | None = None,
        *,
        account_id: str | None = None,
        at: datetime | None = None,
    ) -> list[EngagementChange]:
        """Evaluate a user's (or an account's) engagement signals now, without an event.

        Engagement also changes with time alone: a user who stops coming drops a tier
        28 days later without sending anything. Events find such changes when the
        subject is next seen; call this (e.g. from a daily job over your accounts) to
        find them on time. Computed at ``at`` (default now) in one store update; each
        change found is recorded and called back like those found at events (on this
        thread), and returned. A subject never seen gets no state and no change.

        Raises:
            ConfigurationError: engagement signals are off (neither
                ``Engagement(signals=True)`` nor an ``on_engagement_change`` callback).
            InvalidEventError: neither or both of ``user_id`` and ``account_id``.
            StoreUnavailable: the store could not be reached.
        """
        engine = self._engagement_on()
        if engine.user_signals is None:
            raise ConfigurationError(
                "engagement signals are off: pass Engagement(signals=True) or register "
                "an on_engagement_change callback"
            )
        t = _when(at, "at")
        key, changes = check(engine, user_id, account_id, t)
        if not changes:
            return []
        kind, subject = key.split(":", 1)
        if kind == "account":
            return self._rules.changes.report(changes, None, None, subject, None)
        uid, anon = (subject, None) if kind == "user" else (None, subject)
        session = self._sessions.current(subject)
        return self._rules.changes.report(changes, uid, anon, None, session)

    def _engagement_on(self) -> RulesEngine:
        engine = self._rules.engine
        if engine.engagement is None:
            raise ConfigurationError(
                "engagement is off: pass Client(engagement=True) or "
                "Client(engagement=uptake.Engagement(...)) to keep what it needs"
            )
        return engine
