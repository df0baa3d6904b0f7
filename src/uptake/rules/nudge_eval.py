"""The nudge evaluator: what an event or a look at a user asks the decision to consider.

Only what can have changed is looked at: a nudge triggered by an event when that event
arrives, one triggered by a milestone when it is reached, and all of them when time alone
may have changed a decision (a deadline passed, a cooldown, snooze, rate limit or quiet
hours ended, a spent budget freed up, a new week for ``Declining``, a user back after a gap
for ``Inactive``). ``SubjectState.due``
holds the earliest such moment, so the common event costs one comparison. The decision
itself is :class:`~uptake.rules.nudge_decide.Decider`'s, shared with the explanation.

Pure logic over a :class:`~uptake.rules.state.SubjectState`: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .calendar import Calendar
from .nudge_decide import (
    ACCOUNT,
    AT,
    CONFIG,
    COUNT,
    DISMISSED,
    FIRES,
    PENDING,
    RECENT,
    UNTIL,
    Context,
    Decider,
    Question,
)
from .nudge_explain import explain
from .nudge_fatigue import Fatigue
from .nudge_spec import (
    DEFAULT_CHANNEL,
    Action,
    EventCount,
    Inactive,
    Nudge,
    NudgeExplanation,
    Reached,
)
from .state import REACHED, SubjectState, reached_key

__all__ = ["Decision", "NudgeRules"]

#: What deciding returned: the actions, and a host audience callable to ask, if any.
Decision = tuple[list[Action], Question | None]
_NONE: Decision = ([], None)


class NudgeRules(Decider):
    """The nudges of a client, compiled for evaluation (internal)."""

    def __init__(
        self,
        nudges: Sequence[Nudge],
        *,
        rate_limit: float | None,
        declining: Callable[[SubjectState, float], bool] | None,
        next_week: Callable[[float], float] | None = None,
        global_holdout: float = 0.0,
        fatigue: Fatigue | None = None,
    ) -> None:
        self.nudges = tuple(sorted(nudges, key=lambda n: (-n.priority, n.name)))
        # Budgets and quiet hours (None when neither is set: the decision skips them).
        used = fatigue is not None and bool(fatigue.budgets or fatigue.hours)
        self.fatigue = fatigue if used else None
        self.global_holdout = global_holdout
        self.by_name = {n.name: n for n in self.nudges}
        self.rate_limit = rate_limit
        self._declining = declining
        self._next_week = next_week if next_week is not None else Calendar().next_week
        self.by_event: dict[str, list[Nudge]] = {}
        self.by_milestone: dict[str, list[Nudge]] = {}
        self._lifetime: dict[str, int] = {}  # events counted for ever: up to how many
        self._recent: dict[str, int] = {}  # events whose latest times are kept: how many
        inactive: list[float] = []
        for n in self.nudges:
            trigger = n.trigger
            if isinstance(trigger, EventCount):
                self.by_event.setdefault(trigger.event, []).append(n)
                if trigger.within is None:
                    self._lifetime[trigger.event] = max(
                        self._lifetime.get(trigger.event, 0), trigger.n
                    )
                else:
                    self._recent[trigger.event] = max(self._recent.get(trigger.event, 0), trigger.n)
            elif isinstance(trigger, Reached):
                self.by_milestone.setdefault(trigger.milestone, []).append(n)
            elif isinstance(trigger, Inactive):
                inactive.append(trigger.after.total_seconds())
        self._inactive_after = min(inactive, default=math.inf)
        lifetime_min = {
            e: min(
                n.trigger.n
                for n in self.by_event[e]
                if isinstance(n.trigger, EventCount) and n.trigger.within is None
            )
            for e in self._lifetime
        }
        # Per counted event, all an event needs in one lookup: (lifetime count kept up to,
        # its key, the least n a lifetime trigger asks for; latest times kept, their key).
        # 0 and "" where no trigger of that kind counts the event.
        self._counting: dict[str, tuple[int, str, int, int, str]] = {
            e: (
                self._lifetime.get(e, 0),
                sys.intern(COUNT + e) if e in self._lifetime else "",
                lifetime_min.get(e, 0),
                self._recent.get(e, 0),
                sys.intern(RECENT + e) if e in self._recent else "",
            )
            for e in {**self._lifetime, **self._recent}
        }
        self._account_milestones: frozenset[str] = frozenset()
        # Which nudge set a user's ``due`` was computed for: after a deploy that changes
        # the nudges, every user is looked at afresh once.
        # (Channels and fatigue only when used: a set of nudges without them keeps the
        # fingerprint it had before they existed.)
        fingerprint: list[object] = [
            (n.name, n.trigger, n.start, n.end, n.cooldown)
            + ((n.channel,) if n.channel != DEFAULT_CHANNEL else ())
            for n in self.nudges
        ]
        if self.fatigue is not None:
            fingerprint.append(self.fatigue)
        self.fingerprint = hashlib.blake2b(repr(fingerprint).encode(), digest_size=6).hexdigest()
        self._unless = {n.name: tuple(reached_key(m) for m in n.unless) for n in self.nudges}
        self.uses_traits = any(n.audience is not None for n in self.nudges)
        #: Traits kept for quiet hours (the user's time zone) when no audience needs all.
        self.zone_traits = self.fatigue.traits if self.fatigue is not None else frozenset()

    def __bool__(self) -> bool:
        return bool(self.nudges)

    @property
    def recent_kept(self) -> dict[str, int]:
        """Event -> how many of its latest times windowed counts keep (for merging)."""
        return self._recent

    def watch_account_milestones(self, names: Iterable[str]) -> None:
        """Declare which milestones are account-scoped (Reached triggers on them fire for
        every member who is seen after the account reached them)."""
        self._account_milestones = frozenset(names) & frozenset(self.by_milestone)

    # ------------------------------------------------------------------ events

    def on_event(
        self,
        state: SubjectState,
        event: str,
        t: float,
        previous: float | None,
        reached_now: Iterable[str],
        user: str,
        account: str | None,
        account_reached: frozenset[str],
        engagement: Callable[[SubjectState, float], Any] | None,
        first_before: float | None = None,
    ) -> Decision:
        """Record an event and decide what it fires.

        ``previous`` is the last active event before this one (for ``Inactive``),
        ``first_before`` the user's first event before this one (a late event moving it
        earlier brings ``NotReached`` deadlines forward). The common event, triggering
        nothing while nothing is due, returns after a few dictionary lookups.
        """
        # An event-count trigger can only start to hold when its count just changed.
        counting = self._counting.get(event)
        counted = counting is not None and self._count(state, counting, t)
        records = state.nudges
        everything = (
            t >= state.due
            or (records is None or records.get(CONFIG) != self.fingerprint)
            or (previous is not None and t - previous >= self._inactive_after)
            # (the event moved the first one earlier: ``apply`` only ever lowers it)
            or (first_before is not None and state.first != first_before)
        )
        if account_reached and self._account_milestones:
            # Account milestones reached by other members are news to this user too.
            fresh = self._account_news(state, account_reached)
            if fresh:
                reached_now = [*reached_now, *fresh]
        triggered = self.by_event.get(event) if counted else None
        if not everything and not triggered and not reached_now:
            return _NONE
        if everything:
            context = Context(user, account, account_reached, engagement)
            return self.decide(state, t, previous, context, self.nudges, True)
        candidates: list[Nudge] = []
        if triggered:  # (a loop, not a comprehension: no function to call)
            is_open = self._open
            for n in triggered:
                if is_open(n, state, t, account_reached):
                    candidates.append(n)
        for name in reached_now:
            candidates += self.by_milestone.get(name, ())
        if not candidates:
            return _NONE
        pool = sorted(set(candidates), key=lambda n: (-n.priority, n.name))
        context = Context(user, account, account_reached, engagement)
        return self.decide(state, t, previous, context, pool, False)

    def resume(self, state: SubjectState, question: Question) -> Decision:
        """Go on deciding once the host's audience callable answered ``question``."""
        q = question
        return self.decide(state, q.t, q.previous, q.context, q.rest, q.everything)

    def due_at(self, state: SubjectState, t: float, account_reached: frozenset[str]) -> bool:
        """Whether looking at a user at ``t`` without an event may decide anything."""
        if state.first is None:
            return False
        records = state.nudges or {}
        if t >= state.due or records.get(CONFIG) != self.fingerprint:
            return True
        if state.last is not None and t - state.last >= self._inactive_after:
            return True
        wanted = account_reached & self._account_milestones
        return bool(wanted.difference(records.get(ACCOUNT, ())))

    def look(
        self, state: SubjectState, t: float, context: Context, account_reached: frozenset[str]
    ) -> Decision:
        """Evaluate a user at ``t`` without an event (a ``pending_nudges`` call)."""
        fresh = self._account_news(state, account_reached) if account_reached else []
        if not self.due_at(state, t, account_reached) and not fresh:
            return _NONE
        if t >= state.due or (state.nudges or {}).get(CONFIG) != self.fingerprint:
            return self.decide(state, t, state.last, context, self.nudges, True)
        if state.last is not None and t - state.last >= self._inactive_after:
            return self.decide(state, t, state.last, context, self.nudges, True)
        candidates = {n for name in fresh for n in self.by_milestone.get(name, ())}
        if not candidates:
            return _NONE
        pool = sorted(candidates, key=lambda n: (-n.priority, n.name))
        return self.decide(state, t, state.last, context, pool, False)

    def _account_news(self, state: SubjectState, account_reached: frozenset[str]) -> list[str]:
        """Account milestones named by Reached triggers that this user had not seen yet."""
        wanted = account_reached & self._account_milestones
        if not wanted:
            return []
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        seen: list[str] = records.setdefault(ACCOUNT, [])
        fresh = sorted(wanted.difference(seen))
        seen.extend(fresh)
        return fresh

    def _open(
        self, nudge: Nudge, state: SubjectState, t: float, account_reached: frozenset[str]
    ) -> bool:
        """A quick look: False when the nudge cannot fire now whatever its trigger says
        (capped, dismissed, in cooldown or snoozed, suppressed by a milestone)."""
        records = state.nudges
        record = records.get(nudge.name) if records is not None else None
        if record is not None:
            if record[DISMISSED] or record[FIRES] >= nudge.max_shows:
                return False
            if record[AT] is not None and t < record[AT] + nudge.cooldown.total_seconds():
                return False  # (state.due brings it back when the cooldown ends)
            if record[UNTIL] is not None and t < record[UNTIL]:
                return False
            quiet = self.fatigue is not None and records is not None
            if quiet and Fatigue.still_quiet(records or {}, nudge.name, t):
                return False  # (deferred: state.due brings it back when they end)
        unless = self._unless[nudge.name]
        if not unless:
            return True
        events = state.events or {}
        return not any(key in events or key[len(REACHED) :] in account_reached for key in unless)

    def count(self, state: SubjectState, event: str, t: float) -> bool:
        """Count an event some ``EventCount`` trigger looks at; True if one of them may
        have started to hold (a count reached a trigger's ``n``, or a window changed)."""
        counting = self._counting.get(event)
        return counting is not None and self._count(state, counting, t)

    @staticmethod
    def _count(state: SubjectState, counting: tuple[int, str, int, int, str], t: float) -> bool:
        cap, count_key, least, keep, recent_key = counting
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        changed = False
        if cap:  # counted up to the largest n a trigger asks for: beyond, nothing changes
            count = records.get(count_key, 0)
            if count < cap:
                records[count_key] = count + 1
                changed = count + 1 >= least
        if keep:
            times: list[float] = records.setdefault(recent_key, [])
            if len(times) < keep or t > times[0]:
                if times and t < times[-1]:  # a late event
                    bisect.insort(times, t)
                else:
                    times.append(t)
                if len(times) > keep:
                    del times[0]
                changed = True
        return changed

    # ------------------------------------------------------------------ outcomes

    def pending(self, state: SubjectState, context: Context) -> list[tuple[Nudge, float]]:
        """The nudges fired and not yet shown, highest priority first, with fire times
        (those an ``unless`` milestone has made pointless are forgotten)."""
        self.drop_suppressed_pending(state, context)
        records = state.nudges or {}
        found = [
            (self.by_name[name], records[name][AT])
            for name in records.get(PENDING, ())
            if name in self.by_name and name in records
        ]
        return sorted(found, key=lambda item: (-item[0].priority, item[0].name))

    def outcome(self, state: SubjectState, name: str, kind: str, t: float, snooze: float) -> bool:
        """Record shown / clicked / dismissed / snoozed; True if the nudge was pending."""
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        pending: list[str] = records.get(PENDING, [])
        was_pending = name in pending
        if was_pending:
            pending.remove(name)
        if kind in ("dismissed", "snoozed"):
            nudge = self.by_name[name]
            record = self._record(state, nudge)
            if kind == "snoozed":
                record[UNTIL] = t + snooze
                state.due = min(state.due, record[UNTIL])
            else:
                record[DISMISSED] = True
        return was_pending

    def explain(self, state: SubjectState, t: float, context: Context) -> list[NudgeExplanation]:
        """Where every nudge stands for this user at ``t``: what the decision for an event
        at ``t`` does (``state`` is a copy: the decision runs on it)."""
        return explain(self, state, t, context)
