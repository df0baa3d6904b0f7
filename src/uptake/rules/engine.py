"""The rules engine: applies each event to the user's and the account's state in the store.

It wires the pure rule modules (milestones, engagement, nudges) to a store: one atomic
store update per subject and event, the account's first (so a user's nudges can see what
the account has reached). Decisions are taken inside the update, so with a shared store a
milestone is reached and a capped nudge fires once whichever process sees the event. It
never raises into the tracking call: a failure is counted and logged, and the event is
still sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import tzinfo
from math import floor as _floor
from typing import Any

from ..stores import Store
from ..stores.memory import MemoryStore
from .calendar import Calendar
from .engagement import (
    ACTIVITY_DAYS,
    MASK_DAYS,
    Engagement,
    EngagementRules,
)
from .engagement_signals import Change, Signals
from .engine_nudges import EngineNudges
from .engine_reads import EngineReads, subject_keys
from .identity import Identity, Merged, Merger, merged_into
from .milestones import FEATURE_EVENT, Milestone, MilestoneRules
from .nudge_fatigue import Fatigue, NudgeBudget, QuietHours
from .nudges import Action, Nudge, NudgeRules, Question
from .plumbing import (
    ACCOUNT_LAST_RESOLUTION_S,
    AccountMemo,
    Effects,
    Event,
    Keys,
    Reached,
    deferred,
    outage,
)
from .state import SubjectState

__all__ = ["NO_EFFECTS", "Effects", "Reached", "RulesEngine", "subject_keys"]

#: What an event that decides nothing returns (shared: never changed).
NO_EFFECTS = Effects()
# Shared and never changed (each step makes new lists when it has something to say).
_NO_REACHED: list[Reached] = []
_NO_ACTIONS: list[Action] = []
_NO_CHANGES: list[Change] = []
_NO_KNOWN: frozenset[str] = frozenset()
#: What the rules do with an event of a name (see ``RulesEngine._classify``).
Facts = tuple[bool, bool, bool, bool, bool]
#: What a user's step decided: milestones reached, nudge actions, a question for the
#: host, engagement signals.
Step = tuple[list[Reached], list[Action], Question | None, list[Change]]


class RulesEngine(EngineReads, EngineNudges):
    """Every rule of one client over one store (internal)."""

    def __init__(
        self,
        *,
        milestones: Sequence[Milestone],
        engagement: Engagement | None,
        nudges: Sequence[Nudge] = (),
        rate_limit: float | None = 3600.0,
        store: Store,
        tz: tzinfo | None,
        inactive_events: frozenset[str],
        global_holdout: float = 0.0,
        budgets: Sequence[NudgeBudget] = (),
        quiet_hours: Sequence[QuietHours] = (),
    ) -> None:
        self.store = store
        self.calendar = Calendar(tz)
        self.inactive_events = inactive_events
        self.engagement = engagement
        days, feature_days = (ACTIVITY_DAYS, MASK_DAYS) if engagement is not None else (0, 0)
        self.user, self.account = (
            MilestoneRules(
                [m for m in milestones if m.scope == scope],
                calendar=self.calendar,
                keep_days=days,
                feature_days=feature_days,
            )
            for scope in ("user", "account")
        )
        self.user_engagement: EngagementRules | None = None
        self.account_engagement: EngagementRules | None = None
        if engagement is not None:
            self.user_engagement = EngagementRules(engagement, self.calendar, account=False)
            self.account_engagement = EngagementRules(engagement, self.calendar, account=True)
        user_engagement = self.user_engagement
        self.nudges = NudgeRules(
            nudges,
            rate_limit=rate_limit,
            declining=user_engagement.declining_at if user_engagement is not None else None,
            next_week=self.calendar.next_week,
            global_holdout=global_holdout,
            fatigue=Fatigue(budgets, quiet_hours, tz),
        )
        account_names = {m.name for m in milestones if m.scope == "account"}
        # Whether a user's nudges look at what their account reached.
        self._account_nudges = any(n.milestones & account_names for n in nudges)
        self.nudges.watch_account_milestones(account_names)
        self.enabled = bool(milestones) or engagement is not None or bool(nudges)
        self._days = self.user.tracks_days or self.account.tracks_days
        self._utc = self.calendar.tz is None
        # Whether every active event of a scope is wanted (a quick test before wants()).
        self._user_active = bool(self.user) or bool(self.nudges)
        self._account_active = bool(self.account)
        self._touchpoints = frozenset(engagement.touchpoints) if engagement else frozenset()
        self._atomic_many = bool(getattr(store, "atomic_many", True))
        self._keys = Keys()
        self._users = self._keys.users
        # This process's own MemoryStore (not a subclass): it never fails between the
        # change and its write, so the user's step returns what it decided directly.
        self._direct = type(store) is MemoryStore and self._atomic_many
        self._memory: MemoryStore = store  # type: ignore[assignment]  # (when _direct)
        self._engagement = self._engagement_of
        self._nudging = bool(self.nudges)
        self._facts: dict[str, Facts] = {}
        # What this process last wrote to each account: events that change nothing there
        # but ``last`` (by under a minute) skip the account's update. Off when nudges read
        # what accounts reached (they must see it at once).
        self._accounts = None if self._account_nudges else AccountMemo()
        # (Its dict, read inline at every event with an account; empty while it is off.)
        self._account_seen = self._accounts.seen if self._accounts is not None else {}
        self.identity = Identity(
            store, Merger(self.user, self.nudges), atomic_many=self._atomic_many
        )
        # Engagement signals, per scope: None while off (one test on the tracking path).
        self.user_signals: Signals | None = None
        self.account_signals: Signals | None = None
        if engagement is not None and engagement.signals:
            self.enable_signals()
        self.failures = 0
        #: Events left out of the rules for good (an error that is not an outage).
        self.skipped = 0
        self._failure_logged = -1e9

    def enable_signals(self) -> None:
        """Evaluate engagement signals at each event (engagement must be on)."""
        assert self.user_engagement is not None and self.account_engagement is not None
        self.user_signals = Signals(self.user_engagement)
        self.account_signals = Signals(self.account_engagement)

    # ------------------------------------------------------------------ events

    def update(
        self,
        uid: str | None,
        anon: str | None,
        account: str | None,
        event: str,
        properties: Mapping[str, Any] | None,
        t: float,
        *,
        decide: bool = True,
    ) -> Effects:
        """Apply one event to the account's and the user's state; return what it decided.

        With ``decide=False`` (history being replayed) nudges only count the event: none
        fires. A host ``audience`` callable is asked between store updates, never inside.

        Never raises: a failure is logged at most every 10 seconds. When the store could
        not be reached (an outage: ``TimeoutError``, or ``StoreUnavailable`` unless it says
        otherwise) and ``decide`` is on, the returned effects are ``deferred`` (the caller
        keeps the event and applies it again later); any other failure (a key the store
        refuses, one other writers keep changing) leaves this event out of the rules
        (``skipped``).
        """
        effects = NO_EFFECTS
        ev: Event | None = None
        try:
            try:
                active, dated, wants_account, counted, wants_user = self._facts[event]
            except KeyError:  # (a name not seen yet)
                active, dated, wants_account, counted, wants_user = self._classify(event)
            feature = None
            if event == FEATURE_EVENT and properties:
                name = properties.get("feature")
                if isinstance(name, str) and name:
                    feature = name
                    wants_account = wants_account or self.account.wants(event, active, feature)
                    wants_user = wants_user or self.user.wants(event, active, feature)
            # Both scopes keep days when either does (engagement): one time zone lookup.
            day = None
            if dated:
                day = _floor(t / 86_400.0) if self._utc else self.calendar.day_of(t)
            account_key = None
            if account is not None and wants_account:
                seen = self._account_seen.get(account)
                if (
                    seen is None
                    or counted  # (touchpoints and inactive events are counted too)
                    or day != seen.day
                    or not seen.written <= t < seen.written + ACCOUNT_LAST_RESOLUTION_S
                    or (uid if uid is not None else anon) not in seen.members
                    or (feature is not None and feature not in seen.features)
                ):
                    account_key = self._keys.account(account)
            if account_key is None and self._direct and "update" not in self._memory.__dict__:
                # The common case, in this process's memory: the user alone, one key, and
                # the step's results returned (a MemoryStore never fails in between). Only
                # for the class's own ``update`` (one given to the instance is honoured).
                if not wants_user:
                    return effects
                key = self._users.get(uid)  # type: ignore[arg-type]  # (None: a visitor)
                if key is None:
                    key = self._keys.user(uid, anon)
                # What MemoryStore.update does, without packing the arguments (and with
                # acquire and release: cheaper than ``with`` on a lock).
                store = self._memory
                lock = store._lock
                lock.acquire()
                try:
                    state = store._touch(key)
                    if uid is None:  # a visitor merged into a user: before any change
                        target = merged_into(state)
                        if target is not None:
                            raise Merged(target)
                    reached, actions, question, changes = self._user_step(
                        state, event, t, active, feature, day, uid or anon or "", account, decide
                    )
                finally:
                    lock.release()
                if question is not None:
                    actions = self._answer(key, question, actions)
                if reached or actions or changes:
                    effects = Effects()
                    effects.reached = reached
                    effects.nudges = actions
                    effects.changes = changes
                return effects
            user_key = self._keys.user(uid, anon) if wants_user else None
            # One atomic store update for both subjects (one lock, or one transaction).
            if user_key is None:
                if account_key is None:
                    return effects
                keys: tuple[str, ...] = (account_key,)
            else:
                keys = (user_key,) if account_key is None else (account_key, user_key)
            ev = Event(event, t, active, feature, day, uid, anon, account, decide)
            ev.with_account = account_key is not None
            ev.user = user_key is not None
            if len(keys) == 2 and not self._atomic_many:
                # A store that cannot change two keys in one step (Redis Cluster, where
                # they sit in different slots): the account first, then the user.
                ev.user = False
                self.store.update_many(keys[:1], self._apply, ev)
                ev.with_account, ev.user = False, True
                try:
                    try:
                        self.store.update_many(keys[1:], self._apply, ev)
                    except Merged as merged:  # the visitor is a user now: apply it there
                        ev.uid = merged.uid
                        keys = (keys[0], self._keys.user(merged.uid, None))
                        self.store.update_many(keys[1:], self._apply, ev)
                except Exception as exc:  # the account's step stands: report what it reached
                    self.skipped += 1  # (applying it again would count the account twice)
                    self.failed("evaluating the user's rules", exc)
                    ev.reached, ev.actions, ev.question = ev.account_reached_now, [], None
                    ev.user_changes = []
            elif account_key is None:  # the common case: the user alone, one key
                self.store.update(
                    keys[0], self._apply_user if uid is not None else self._apply_visitor, ev
                )
            else:
                self.store.update_many(keys, self._apply, ev)
            memo = self._accounts
            if memo is not None and account is not None and account_key and day is not None:
                memo.written(account, day, t, ev)
            actions = ev.actions
            question = ev.question
            if question is not None:
                actions = self._answer(keys[-1], question, actions)
            changes = ev.user_changes
            if ev.account_changes:
                changes = ev.account_changes + changes
            if ev.reached or actions or changes:
                effects = Effects()
                effects.reached = ev.reached
                effects.nudges = actions
                effects.changes = changes
                effects.uid = ev.uid if ev.uid != uid else None
        except Merged as merged:  # a visitor merged into a user: the event is the user's
            effects = self.update(merged.uid, anon, account, event, properties, t, decide=decide)
            if effects:
                effects.uid = merged.uid
        except Exception as exc:  # never let the rules break the host's call
            if decide and outage(exc):
                self.failed("evaluating milestones and nudges", exc)
                return deferred(exc, ev)  # (ev: None on the direct path, which has none)
            self.skipped += 1
            self.failed("evaluating milestones and nudges", exc)
        return effects

    def touches(self, event: str, account: str | None) -> bool:
        """Whether applying an event of this name writes the store (a feature aside)."""
        facts = self._facts.get(event)
        if facts is None:
            facts = self._classify(event)
        return facts[4] or (account is not None and facts[2])

    def _classify(self, event: str) -> Facts:
        """What the rules do with an event of this name (a feature aside), kept per name:
        (active, its day is needed, the account wants it, the account cannot skip it, the
        user wants it)."""
        active = event not in self.inactive_events
        touchpoint = event in self._touchpoints  # counted even when marked inactive
        facts = (
            active,
            (active and self._days) or touchpoint,
            (active and self._account_active)
            or touchpoint
            or self.account.wants(event, active, None),
            touchpoint or not active or self.account.counts(event),
            (active and self._user_active)
            or self.user.wants(event, active, None)
            or event in self.nudges.by_event,
        )
        if len(self._facts) >= 4096:  # event names come from the host: keep it bounded
            self._facts.clear()
        self._facts[event] = facts
        return facts

    def _apply(self, states: Sequence[SubjectState], ev: Event) -> None:
        """Apply one event to the account's state (``ev.with_account``: the first of
        ``states``), then to the user's (``ev.user``: the last), recording in ``ev`` what
        it decided. Runs inside the store's update (so it may run again if the store
        retries): everything it reports is recomputed from the states it is given.
        """
        if ev.uid is None and ev.user:
            target = merged_into(states[-1])
            if target is not None:  # before any change: the store writes nothing
                raise Merged(target)
        if ev.with_account:
            state = states[0]
            event, day = ev.event, ev.day
            member = (ev.uid if ev.uid is not None else ev.anon) if ev.active else None
            signals = self.account_signals
            if signals is not None:  # (what the score reads: unchanged, not computed again)
                new, before = state.first is None, signals.inputs(state, ev.feature, member)
            reached = self.account.apply(state, event, ev.t, ev.active, ev.feature, day)
            rules = self.account_engagement
            if rules is not None and day is not None:
                rules.apply(state, event, day, member)
            if signals is not None:
                ev.account_changes = signals.evaluate(state, ev.t, new, before, ev.feature, member)
            if self._account_nudges and state.events:
                ev.known = frozenset(state.reached)
            ev.account_reached_now = ev.reached = reached
            if not ev.user:
                return
        self._apply_user(states[-1], ev)

    def _apply_visitor(self, state: SubjectState, ev: Event) -> None:
        """Apply one event to a visitor's state, unless it was merged into a user."""
        target = merged_into(state)
        if target is not None:
            raise Merged(target)
        self._apply_user(state, ev)

    def _apply_user(self, state: SubjectState, ev: Event) -> None:
        """Apply one event to the user's state, recording in ``ev`` what it decided."""
        ev.reached, ev.actions, ev.question, ev.user_changes = self._user_step(
            state,
            ev.event,
            ev.t,
            ev.active,
            ev.feature,
            ev.day,
            ev.uid or ev.anon or "",
            ev.account,
            ev.decide,
            ev.account_reached_now,
            ev.known,
        )

    def _user_step(
        self,
        state: SubjectState,
        event: str,
        t: float,
        active: bool,
        feature: str | None,
        day: int | None,
        user: str,
        account: str | None,
        decide: bool,
        account_reached: list[Reached] = _NO_REACHED,
        known: frozenset[str] = _NO_KNOWN,
    ) -> Step:
        """Apply one event to a user's state (the store's change when the event has no
        account to update: the common case); return the milestones reached (the
        account's first), the nudge actions, a question for the host, the engagement
        signals. One function, few calls: this runs on the tracking thread for every
        event."""
        previous = state.last if active else None
        first_before = state.first
        signals = self.user_signals
        changes = _NO_CHANGES
        if signals is None:
            mine = self.user.apply(state, event, t, active, feature, day)
        else:  # (what the score reads, before and after: unchanged, not computed again)
            before = signals.inputs(state, feature, None)
            mine = self.user.apply(state, event, t, active, feature, day)
            changes = signals.evaluate(state, t, first_before is None, before, feature)
        if account_reached:
            mine = account_reached + mine
        nudges = self.nudges
        if not self._nudging:
            return mine, _NO_ACTIONS, None, changes
        if not decide:
            nudges.count(state, event, t)
            return mine, _NO_ACTIONS, None, changes
        actions, question = nudges.on_event(
            state,
            event,
            t,
            previous,
            [m.name for m, _, _ in mine] if mine else (),
            user,
            account,
            known,
            self._engagement,
            first_before,
        )
        return mine, actions, question, changes
