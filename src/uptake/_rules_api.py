"""The rules part of the public Client API: callbacks, pending nudges, explain, replay.

:class:`RulesApi` is a base of :class:`~uptake.Client`; it checks the arguments of each
method and hands the work to the client's :class:`~uptake.rules.facade.RulesFacade` and
its engine. Kept apart from ``client.py`` so that the client module holds tracking and
delivery only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from . import events as _ev
from ._config import check_nudges
from .errors import ConfigurationError, InvalidEventError
from .pipeline import Pipeline
from .rules.engagement import EngagementSnapshot
from .rules.engine import subject_keys
from .rules.facade import MilestoneHook, NudgeHook, ReplayResult, RulesFacade, fired_nudge
from .rules.nudges import Nudge, NudgeExplanation, NudgeFired
from .rules.simulation import Simulation
from .sessions import Sessionizer

logger = logging.getLogger("uptake")

__all__ = ["RulesApi"]


def _when(value: datetime | None, what: str) -> float:
    """Event time of an optional datetime argument: now when None."""
    if value is None:
        return time.time()
    t = _ev.check_timestamp(value, what)
    return time.time() if t is None else t


class RulesApi:
    """Milestone and nudge methods of the client (a base class of :class:`~uptake.Client`)."""

    _rules: RulesFacade
    _pipeline: Pipeline
    _sessions: Sessionizer

    def on_milestone(self, name: str | None = None) -> Callable[[MilestoneHook], MilestoneHook]:
        """Register a callback for a milestone (or, with no name, for every milestone).

        The callback receives one :class:`~uptake.MilestoneReached` and runs on the thread
        whose event reached the milestone, right after it was tracked. Exceptions it raises
        are logged; other callbacks still run and the tracking call still returns.

        Example::

            @client.on_milestone("activated")
            def celebrate(reached: uptake.MilestoneReached) -> None:
                print(reached.user_id, "activated in", reached.time_to_reach)

        Raises:
            ConfigurationError: ``name`` is not one of the client's milestones.
        """
        return self._rules.on_milestone(name)

    def on_nudge(self, name: str | None = None) -> Callable[[NudgeHook], NudgeHook]:
        """Register a callback for a nudge (or, with no name, for every nudge).

        The callback receives one :class:`~uptake.NudgeFired` each time the nudge fires,
        on the thread whose event (or ``pending_nudges`` call) fired it. Exceptions it
        raises are logged; other callbacks still run and the tracking call still returns.
        Held-out users get no callback (they are recorded as "Nudge Held Out").

        Example::

            @client.on_nudge("try_reports")
            def tip(nudge: uptake.NudgeFired) -> None:
                send_tooltip(nudge.user_id, nudge.payload["tooltip"])

        Raises:
            ConfigurationError: ``name`` is not one of the client's nudges.
        """
        return self._rules.on_nudge(name)

    def pending_nudges(
        self,
        user_id: str | int | None = None,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        at: datetime | None = None,
        channel: str | None = None,
    ) -> list[NudgeFired]:
        """The nudges fired for a user and not yet shown, highest priority first.

        What a middleware renders. Time-based triggers (``NotReached``, ``Inactive``,
        ``Declining``, and nudges whose cooldown ended) are evaluated first, at ``at``
        (default now): what fires now is recorded and its callbacks run. One store read,
        and a write only when something is due; with a RedisStore it waits at most the
        store's ``timeout``. Returns ``[]`` when nothing is pending or the store fails
        (logged at most every 10 s). ``account_id`` is the account you pass, echoed in
        the results (pass it to evaluate ``Reached`` on account milestones). With
        ``channel`` (e.g. ``"in_app"``), only that channel's nudges are listed (every
        channel's are evaluated).

        Raises:
            InvalidEventError: no user id, a channel that is not a string.
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        if channel is not None and not isinstance(channel, str):
            raise InvalidEventError(f"channel must be a channel name or None, not {channel!r}")
        account = _ev.check_account(account_id) if account_id is not None else None
        engine = self._rules.engine
        if not engine.nudges:
            return []
        t = _when(at, "at")
        try:
            actions, pending = engine.look(uid, anon, account, t)
        except Exception as exc:  # a request must render without its nudges, not fail
            engine.failed("reading pending nudges (none shown)", exc)
            return []
        session = self._sessions.current(uid or anon or "")
        self._rules.nudge_actions(actions, uid, anon, account, t, session)
        subject = uid or anon or ""
        return [
            fired_nudge(n, subject, account, at_, n.trigger.describe())
            for n, at_ in pending
            if channel is None or n.channel == channel
        ]

    def nudge_shown(
        self,
        user_id: str | int | None,
        name: str,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Record that the host showed a nudge: a "Nudge Shown" event; no longer pending."""
        self._nudge_outcome(user_id, anonymous_id, account_id, name, "shown", timestamp, None)

    def nudge_clicked(
        self,
        user_id: str | int | None,
        name: str,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Record that the user clicked a nudge: a "Nudge Clicked" event; no longer pending."""
        self._nudge_outcome(user_id, anonymous_id, account_id, name, "clicked", timestamp, None)

    def nudge_dismissed(
        self,
        user_id: str | int | None,
        name: str,
        *,
        snooze: timedelta | None = None,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Record that the user dismissed a nudge: it never fires for them again.

        With ``snooze=timedelta(...)`` it is a snooze instead ("Nudge Snoozed"): the nudge
        may fire again once the snooze is over (within its caps).

        Raises:
            InvalidEventError: no user id, an unknown nudge, a snooze that is not a
                positive timedelta.
        """
        if snooze is not None and (
            not isinstance(snooze, timedelta) or not timedelta(0) < snooze <= timedelta(days=3650)
        ):
            raise InvalidEventError(
                f"snooze must be a positive timedelta of at most 10 years, not {snooze!r}"
            )
        kind = "dismissed" if snooze is None else "snoozed"
        self._nudge_outcome(user_id, anonymous_id, account_id, name, kind, timestamp, snooze)

    def explain_nudges(
        self,
        user_id: str | int | None = None,
        *,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        at: datetime | None = None,
    ) -> list[NudgeExplanation]:
        """Why each nudge would or would not fire for a user now (or ``at``), in priority
        order: trigger not met, suppressed by a milestone, cooldown until a time, rate
        limited, held out... Changes nothing; one store read. Raises
        :class:`~uptake.StoreUnavailable` when the store cannot be reached.

        Example::

            for why in client.explain_nudges("user-42"):
                print(why.name, why.status, why.detail, why.until)
        """
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        account = _ev.check_account(account_id) if account_id is not None else None
        return self._rules.engine.explain(uid, anon, account, _when(at, "at"))

    def replay(self, events: Iterable[Mapping[str, Any]]) -> ReplayResult:
        """Rebuild milestone state from past events, without sending or calling back anything.

        Feed it your history (event dicts in the wire format this client sends, e.g. the
        lines of a JSONL export) so that users who activated long ago are known as such from
        day one. Events are applied on their own timestamps, in any order; track events
        count, identify and group events give their traits (nudge audiences, an account's
        seats), other types are skipped. Malformed events are counted, never raised.
        Milestones reached here are recorded in the store but produce no "Milestone
        Reached" event and no callback (they are history); nudges count the events their
        triggers look at, and none fires. Thread-safe.

        Returns:
            Counts of events read, applied, skipped and milestones reached.
        """
        return self._rules.replay(events)

    def simulate(
        self, events: Iterable[Mapping[str, Any]], nudges: Sequence[Nudge] | None = None
    ) -> Simulation:
        """Replay history against a candidate set of nudges, before shipping them.

        Runs ``events`` (wire-format dicts, as for :meth:`replay`, in time order) through
        this client's milestones, engagement and rate limit with ``nudges`` (default: the
        client's own) in a private in-memory store. Nothing is sent, stored or called back.

        Returns:
            A :class:`~uptake.Simulation`: per nudge, how many users would be nudged,
            fires, hold-outs and rate-limit suppressions, and when.
        """
        candidates = tuple(self._rules.nudges if nudges is None else nudges)
        check_nudges(candidates, self._rules.milestones, None)
        return self._rules.simulate(events, candidates)

    def state(
        self, user_id: str | int | None = None, *, account_id: str | None = None
    ) -> dict[str, Any] | None:
        """What uptake stores about a user (or an account): its rule state, or None.

        The user's id is looked up as a user id, then as an anonymous id. Thread-safe.
        Example: ``client.state("user-42")["reached"]``. Raises
        :class:`~uptake.StoreUnavailable` when the store cannot be reached.
        """
        now = time.time()
        engine = self._rules.engine
        found = engine.state(user_id, account_id, now)
        if found is None:
            return None
        key, state = found
        data = state.to_json()
        data["missed"] = engine.missed(key, state, now)
        return data

    def engagement(
        self,
        user_id: str | int | None = None,
        *,
        account_id: str | None = None,
        at: datetime | None = None,
    ) -> EngagementSnapshot:
        """How engaged a user (or an account) is: score 0-100, tier and its components.

        Computed from the rule state at ``at`` (default: now), so a backfilled or replayed
        history gives the snapshot it had at any moment. A user's id is looked up as a user
        id, then as an anonymous id. A subject never seen gets an all-zero snapshot with
        ``first_seen`` None. Thread-safe; one store read.

        Example: ``client.engagement("user-42").tier`` or
        ``client.engagement(account_id="acme").declining``.

        Raises:
            StoreUnavailable: the store (e.g. Redis) could not be reached.
            ConfigurationError: engagement is off (``Client(engagement=False)``, or neither
                milestones nor ``engagement=`` given).
            InvalidEventError: neither or both of ``user_id`` and ``account_id``.
        """
        engine = self._rules.engine
        if engine.engagement is None:
            raise ConfigurationError(
                "engagement is off: pass Client(engagement=True) or "
                "Client(engagement=uptake.Engagement(...)) to keep what it needs"
            )
        return engine.snapshot(user_id, account_id, _when(at, "at"))

    def forget(self, user_id: str | int | None = None, *, account_id: str | None = None) -> bool:
        """Erase what uptake stores about a user (or an account), e.g. for a GDPR request.

        Removes the rule state from the store (for every process sharing it), under the id
        as a user id and as an anonymous id, and the user's open session in this process.
        Events already sent are the collector's to erase. Raises
        :class:`~uptake.StoreUnavailable` when the store cannot be reached (retry then).
        Returns True if anything was
        stored.
        """
        known = self._rules.engine.forget(user_id, account_id)
        if account_id is None:
            subject = subject_keys(user_id, None)[0].split(":", 1)[1]
            known = self._sessions.end(subject) is not None or known
        return known

    def _nudge_outcome(
        self,
        user_id: str | int | None,
        anonymous_id: str | None,
        account_id: str | None,
        name: str,
        kind: str,
        timestamp: datetime | None,
        snooze: timedelta | None,
    ) -> None:
        uid, anon = _ev.check_identity(user_id, anonymous_id)
        account = _ev.check_account(account_id) if account_id is not None else None
        self._rules.check_nudge(name, InvalidEventError)
        t = _when(timestamp, "timestamp")
        properties: dict[str, Any] = {"nudge": name}
        if snooze is not None:
            properties["snooze_s"] = snooze.total_seconds()
        session = self._sessions.current(uid or anon or "")
        message = self._pipeline.message("track", uid, anon, t, account, None, session)
        message["event"] = f"Nudge {kind.capitalize()}"
        message["properties"] = properties
        self._pipeline.emit(message)
        try:
            seconds = snooze.total_seconds() if snooze is not None else 0.0
            self._rules.engine.outcome(uid, anon, name, kind, t, seconds)
        except Exception:
            logger.exception("could not record that nudge %r was %s", name, kind)

    def _never_waits(self) -> bool:
        """True when recording an event cannot wait on I/O or run host code: an in-process
        store, a buffer in memory (a durable outbox may commit, or make a burst wait for
        its writer), no ``before_send``, no callbacks, no callable audience. Async web
        integrations then record on the event loop rather than hop to a worker thread."""
        pipeline = self._pipeline
        return (
            getattr(self._rules.engine.store, "in_process", False) is True
            and not pipeline.buffer.durable
            and pipeline.before_send is None
            and not self._rules.runs_host_code()
        )
