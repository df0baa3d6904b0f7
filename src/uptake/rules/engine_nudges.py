"""The rules engine's calls other than events: nudges looked at, outcomes, traits.

:class:`EngineNudges` is a base of :class:`~uptake.rules.engine.RulesEngine` (which keeps
the tracking path): what a request asks without an event (``pending_nudges``,
``explain_nudges``), nudge outcomes, the traits audiences read, host audience callables
asked outside the store, and the engine's failure count and log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..errors import StoreUnavailable
from ..stores import Store
from .engagement import EngagementRules
from .identity import Identity, merged_into
from .milestones import MilestoneRules
from .nudges import Action, Context, Decision, Nudge, NudgeExplanation, NudgeRules, Question
from .plumbing import Keys
from .state import SubjectState

__all__ = ["EngineNudges"]

logger = logging.getLogger("uptake")

#: Traits kept per user for nudge audiences: scalar values, this many at most.
_MAX_TRAITS = 64


class EngineNudges:
    """Nudges outside events, outcomes, traits, failures (a base class of the engine)."""

    store: Store
    identity: Identity
    nudges: NudgeRules
    user: MilestoneRules
    user_engagement: EngagementRules | None
    account_engagement: EngagementRules | None
    failures: int
    _keys: Keys
    _account_nudges: bool
    _failure_logged: float

    def _answer(self, key: str, question: Question, actions: list[Action]) -> list[Action]:
        """Ask the host's audience callables the decision needs, outside the store, and
        go on deciding after each answer (one store update per answer)."""
        actions = list(actions)
        for _ in range(len(self.nudges.nudges)):  # each round answers one more nudge
            question.ask()
            try:
                more, next_question = self.store.update(key, self.nudges.resume, question)
            except (StoreUnavailable, TimeoutError) as exc:  # the event itself is stored
                self.failed("deciding nudges after their audience", exc)
                break
            actions += more
            if next_question is None:
                break
            question = next_question
        return actions

    def _engagement_of(self, state: SubjectState, t: float) -> Any:
        rules = self.user_engagement
        if rules is None:
            return None
        missed = self.user.missed_by(state, t)
        return rules.snapshot(state, t, subject="", reached=state.reached, missed=missed)

    def _account_reached(self, account: str | None) -> frozenset[str]:
        if account is None or not self._account_nudges:
            return frozenset()
        state = self.store.get(f"account:{account}")
        return frozenset(state.reached) if state is not None else frozenset()

    def look(
        self, uid: str | None, anon: str | None, account: str | None, t: float
    ) -> tuple[list[Action], list[tuple[Nudge, float]]]:
        """Evaluate a user's nudges at ``t`` without an event (time-based triggers); return
        what fired and the pending nudges. One store update (two with account milestones
        in the nudges)."""
        key = self._keys.user(uid, anon)
        account_reached = self._account_reached(account)
        context = Context(uid or anon or "", account, account_reached, self._engagement_of)
        # A read first: most requests find nothing due, and a visitor never seen must not
        # get a state (nor push a real user out of a bounded MemoryStore).
        seen = self.store.get(key)
        if uid is None and seen is not None and merged_into(seen) is not None:
            return self.look(merged_into(seen), None, account, t)
        if seen is None or not self.nudges.due_at(seen, t, account_reached):
            return [], [] if seen is None else self.nudges.pending(seen, context)
        decision: Decision
        pending: list[tuple[Nudge, float]]
        decision, pending = self.store.update(key, self._look, t, context, account_reached)
        actions, question = decision
        if question is not None:  # a host audience callable, asked outside the store
            actions = self._answer(key, question, actions)
            pending = self.store.update(key, self.nudges.pending, context)
        return actions, pending

    def _look(
        self, state: SubjectState, t: float, context: Context, account_reached: frozenset[str]
    ) -> tuple[Decision, list[tuple[Nudge, float]]]:
        decision: Decision = ([], None)
        if state.first is not None:
            decision = self.nudges.look(state, t, context, account_reached)
        return decision, self.nudges.pending(state, context)

    def outcome(
        self, uid: str | None, anon: str | None, name: str, kind: str, t: float, snooze: float
    ) -> bool:
        """Record a nudge outcome for a user; True if it was pending."""
        key = self._keys.user(uid, anon)
        if uid is None:  # a merged visitor's outcomes are their user's
            key = self.identity.resolve(key, self.store.get(key))[0]
        result: bool = self.store.update(key, self.nudges.outcome, name, kind, t, snooze)
        return result

    def explain(
        self, uid: str | None, anon: str | None, account: str | None, t: float
    ) -> list[NudgeExplanation]:
        """Where each nudge stands for a user at ``t``: what the decision for an event at
        ``t`` does, run on a copy of their state (the store is not changed)."""
        key = self._keys.user(uid, anon)
        state = self.identity.resolve(key, self.store.get(key))[1]
        context = Context(
            uid or anon or "", account, self._account_reached(account), self._engagement_of
        )
        return self.nudges.explain(state or SubjectState(), t, context)

    def identify(self, uid: str | None, anon: str | None, traits: Mapping[str, Any]) -> None:
        """Keep the traits nudge audiences match, and the time zones of quiet hours
        (scalars only, a bounded number)."""
        every, zones = self.nudges.uses_traits, self.nudges.zone_traits
        if not (every or zones) or not traits:
            return
        kept = {
            k: v
            for k, v in traits.items()
            if isinstance(k, str)
            and (every or k in zones)
            and (v is None or isinstance(v, (str, int, float, bool)))
        }
        if not kept:
            return
        key = f"user:{uid}" if uid is not None else f"anon:{anon}"
        try:
            self.store.update(key, _set_traits, kept)
        except Exception as exc:
            self.failed("recording traits", exc)

    def group(self, account: str, traits: Mapping[str, Any]) -> None:
        """Record the account traits the rules read (the seats engagement compares with)."""
        rules = self.account_engagement
        if rules is None or rules.config.seats_trait not in traits:
            return
        try:
            self.store.update(f"account:{account}", rules.group, traits)
        except Exception as exc:
            self.failed("recording account traits", exc)

    def failed(self, doing: str, exc: Exception) -> None:
        """Count a rule failure and log it (one message per 10 s at most)."""
        self.failures += 1
        now = time.monotonic()
        if now - self._failure_logged >= 10.0:  # one message per 10 s at most
            self._failure_logged = now
            if isinstance(exc, (StoreUnavailable, TimeoutError)):  # operational, not a bug
                logger.warning(
                    "rule store unavailable while %s (%d failures so far; the events are "
                    "still sent, and applied to the rules once it answers again): %s",
                    doing,
                    self.failures,
                    exc,
                )
            else:
                logger.exception(
                    "error while %s (%d failures so far); events are still sent",
                    doing,
                    self.failures,
                )


def _set_traits(state: SubjectState, traits: dict[str, Any]) -> None:
    merged = dict(state.traits or {})
    merged.update(traits)
    if len(merged) > _MAX_TRAITS:  # keep the latest ones
        merged = dict(list(merged.items())[-_MAX_TRAITS:])
    if merged != state.traits:
        state.traits = merged
        state.due = 0.0  # an audience may now let a nudge through: look again when next seen
