"""The one decision: which nudges fire for a user at one moment, and why the others don't.

Evaluation order for each nudge, in priority order: schedule, audience by traits, trigger
(or a deferral by quiet hours), ``unless``, caps (dismissal, max_shows, snooze, cooldown),
then the host's ``audience`` callable (asked last: it is host code and may be slow); the
nudges that pass all of them go one by one through the limits of their channel (the
user's budget, quiet hours where the user is, the rate limit), and each is either held out
(a stable hash of the user puts them in the client's global holdout, or one of nudge and
user in the nudge's control group: recorded, never shown) or fired. Both arms are recorded
at this same point, which is what makes the report's lift a comparison by assignment.

:meth:`Decider.decide` is used both to decide (on the live state, inside a store update)
and to explain (on a copy, with ``why`` given: only then are reason strings built), so an
explanation is what the decision does. A host ``audience`` callable never runs inside a
store update: there the decision stops before it and returns a :class:`Question` that the
engine asks outside the store, then resumes.

Pure logic over a :class:`~uptake.rules.state.SubjectState`: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from .nudge_context import Context, Question, ask_audience
from .nudge_fatigue import Fatigue, Why
from .nudge_spec import (
    DEFAULT_CHANNEL,
    Action,
    Declining,
    EventCount,
    Inactive,
    NotReached,
    Nudge,
    NudgeStatus,
    Reached,
    in_global_holdout,
    iso,
    span,
    timestamp_of,
)
from .state import REACHED, SubjectState, reached_key

__all__ = ["Context", "Decider", "Question", "Why"]

# Keys of SubjectState.nudges other than nudge names (which may not contain a NUL).
# When a nudge last fired for this user (the rate limit); + ":" + channel for a channel
# other than the default one.
LAST = "\x00last"
PENDING = "\x00pending"  # names fired and not yet shown, clicked or dismissed
COUNT = "\x00n:"  # + event: lifetime count
RECENT = "\x00w:"  # + event: the latest times (for windowed counts)
ACCOUNT = "\x00acct"  # account milestones (that Reached triggers name) this user has seen
CONFIG = "\x00cfg"  # the nudge set ``due`` was computed for
# A nudge's record: [fires (held-out ones too), last fire, dismissed, snoozed until,
# the last suppression recorded (rate limit, budget or quiet hours) at].
FIRES, AT, DISMISSED, UNTIL, SUPPRESSED = range(5)


_ASK = "ask"  # check(): the host's audience callable must be asked first


class Decider:
    """Decides and explains nudges (compiled by :class:`~uptake.rules.nudges.NudgeRules`)."""

    nudges: tuple[Nudge, ...]
    rate_limit: float | None
    global_holdout: float
    fingerprint: str
    fatigue: Fatigue | None
    _unless: dict[str, tuple[str, ...]]
    _declining: Callable[[SubjectState, float], bool] | None
    _next_week: Callable[[float], float]

    def decide(
        self,
        state: SubjectState,
        t: float,
        previous: float | None,
        context: Context,
        pool: Sequence[Nudge],
        everything: bool,
        why: Why | None = None,
    ) -> tuple[list[Action], Question | None]:
        """Decide, at event time ``t``, which nudges of ``pool`` (in priority order) fire;
        change the state accordingly. With ``why``, record each nudge's reasons in it.

        ``previous`` is the user's last active event before ``t`` (for ``Inactive``);
        ``everything``: ``pool`` is every nudge (so the next moment to look again is set).
        Returns the actions, and a :class:`Question` when a host audience callable must be
        asked before the rest of ``pool`` can be decided.
        """
        actions: list[Action] = []
        rate_limit = self.rate_limit
        fatigue = self.fatigue
        for i, nudge in enumerate(pool):
            status = self.check(nudge, state, t, previous, context, why)
            if status is not None:
                if status == _ASK:
                    view = context.view(state, t, copy=True)
                    if actions:  # should the rest never be decided, look again next time
                        state.due = min(state.due, t)
                    return actions, Question(pool[i:], view, context, t, previous, everything)
                continue
            if fatigue is not None:
                held = fatigue.holds_back(state, nudge, t, why)
                if held is not None:  # the budget is spent, or it is night for the user
                    self._suppress(state, nudge, t, held[0], held[1], actions)
                    continue
            channel = nudge.channel
            last_key = LAST if channel == DEFAULT_CHANNEL else f"{LAST}:{channel}"
            last = state.nudges.get(last_key) if state.nudges is not None else None
            if rate_limit is not None and last is not None and t < last + rate_limit:
                if why is not None:
                    why[nudge.name] = (
                        "rate_limited",
                        "the user was nudged too recently",
                        last + rate_limit,
                    )
                self._suppress(state, nudge, t, "rate_limited", last, actions)
                continue
            record = self._record(state, nudge)
            record[FIRES] += 1
            record[AT] = t
            assert state.nudges is not None
            # A held-out user uses up the rate limit (and the budget) too: the control
            # group must get what the others get, minus this nudge, or lift would compare
            # with another nudge.
            state.nudges[last_key] = t
            if fatigue is not None:
                fatigue.spend(state.nudges, channel, nudge.name, t)
            if self.global_holdout and in_global_holdout(context.user_id, self.global_holdout):
                # Assigned to the programme's control group: recorded like a held-out user
                # of this nudge (same moment, same caps), marked global by the facade.
                if why is not None:
                    detail = (
                        f"in the {self.global_holdout:.0%} global holdout: no nudge ever "
                        "fires for this user"
                    )
                    why[nudge.name] = ("global_holdout", detail, None)
                actions.append(("global_holdout", nudge, nudge.trigger.describe()))
                continue
            if nudge.held_out(context.user_id):
                if why is not None:
                    detail = f"in the {nudge.holdout:.0%} control group"
                    why[nudge.name] = ("held_out", detail, None)
                actions.append(("held_out", nudge, nudge.trigger.describe()))
                continue
            pending: list[str] = state.nudges.setdefault(PENDING, [])
            if nudge.name not in pending:
                pending.append(nudge.name)
            actions.append(("fired", nudge, nudge.trigger.describe()))
        self.drop_suppressed_pending(state, context)
        if everything or actions:
            state.due = self._next_due(state, t, context)
            if everything:
                if state.nudges is None:
                    state.nudges = {}
                state.nudges[CONFIG] = self.fingerprint
        return actions, None

    def _suppress(
        self,
        state: SubjectState,
        nudge: Nudge,
        t: float,
        reason: str,
        since: float,
        actions: list[Action],
    ) -> None:
        """Record that ``reason`` holds a nudge back: once since ``since`` (the fire that
        started the rate limit or spent the budget, the start of quiet hours)."""
        record = self._record(state, nudge)
        if record[SUPPRESSED] is None or record[SUPPRESSED] < since:
            record[SUPPRESSED] = t
            actions.append(("suppressed", nudge, reason))

    def check(
        self,
        nudge: Nudge,
        state: SubjectState,
        t: float,
        previous: float | None,
        context: Context,
        why: Why | None,
    ) -> str | None:
        """Where a nudge stands at ``t`` before the rate limit: None when it may fire, else
        what stops it (its reasons recorded in ``why`` when given)."""
        name = nudge.name
        if nudge.start is not None and t < timestamp_of(nudge.start):
            if why is not None:
                why[name] = ("not_scheduled", f"starts at {nudge.start}", timestamp_of(nudge.start))
            return "not_scheduled"
        if nudge.end is not None and t >= timestamp_of(nudge.end):
            if why is not None:
                why[name] = ("not_scheduled", f"ended at {nudge.end}", None)
            return "not_scheduled"
        audience = nudge.audience
        if isinstance(audience, Mapping) and not _matches(audience, state.traits or {}):
            if why is not None:
                why[name] = ("not_in_audience", "the user is not in the audience", None)
            return "not_in_audience"
        reasons: list[str] | None = [] if why is not None else None
        if not self.holds(nudge, state, t, previous, context, reasons):
            fatigue = self.fatigue
            if fatigue is None or not fatigue.deferred(state.nudges, name, t):
                if why is not None and reasons is not None:
                    why[name] = ("trigger_not_met", reasons[0], None)
                return "trigger_not_met"
            if reasons is not None:  # its trigger held during quiet hours
                reasons[0] = f"triggered during quiet hours, deferred ({reasons[0]} now)"
        for key in self._unless[name]:
            if context.has(state, key):
                if why is not None:
                    detail = f"suppressed: milestone {key[len(REACHED) :]} reached"
                    why[name] = ("suppressed", detail, None)
                return "suppressed"
        record = state.nudges.get(name) if state.nudges is not None else None
        if record is not None:
            status = _capped(nudge, record, t)
            if status is not None:
                if why is not None:
                    why[name] = _cap_reason(nudge, record, status)
                return status
        if audience is not None and not isinstance(audience, Mapping):
            if context.direct:
                answer = ask_audience(nudge, context.view(state, t, copy=False))
            elif context.answers is not None and name in context.answers:
                answer = context.answers[name]
            else:
                return _ASK
            if not answer:
                if why is not None:
                    why[name] = ("not_in_audience", "the user is not in the audience", None)
                return "not_in_audience"
        if why is not None and reasons is not None:
            why[name] = ("would_fire", reasons[0], None)
        return None

    def holds(
        self,
        nudge: Nudge,
        state: SubjectState,
        t: float,
        previous: float | None,
        context: Context,
        reasons: list[str] | None = None,
    ) -> bool:
        """Whether a nudge's trigger holds at ``t`` (with ``reasons``: append why)."""
        trigger = nudge.trigger
        records = state.nudges or {}
        held: bool
        if isinstance(trigger, EventCount):
            if trigger.within is None:
                count = records.get(COUNT + trigger.event, 0)
                held = count >= trigger.n
                if reasons is not None:
                    reasons.append(f"{trigger.event} happened {count} of {trigger.n} times")
                return held
            times = records.get(RECENT + trigger.event, ())
            start = t - trigger.within.total_seconds()
            recent = sum(1 for x in times if start <= x <= t)
            if reasons is not None:
                reasons.append(
                    f"{trigger.event} happened {recent} of {trigger.n} times in the last "
                    f"{span(trigger.within)}"
                )
            return recent >= trigger.n
        if isinstance(trigger, Reached):
            held = context.has(state, reached_key(trigger.milestone))
            if reasons is not None:
                done = "reached" if held else "not reached"
                reasons.append(f"milestone {trigger.milestone} {done}")
            return held
        if isinstance(trigger, NotReached):
            if context.has(state, reached_key(trigger.milestone)):
                if reasons is not None:
                    reasons.append(f"milestone {trigger.milestone} reached")
                return False
            if state.first is None:
                if reasons is not None:
                    reasons.append("the user was never active")
                return False
            due = state.first + trigger.after.total_seconds()
            held = t >= due
            if reasons is not None:
                reasons.append(
                    f"{trigger.milestone} not reached {span(trigger.after)} after first seen"
                    if held
                    else f"{trigger.milestone} not reached yet; due {iso(due)}"
                )
            return held
        if isinstance(trigger, Inactive):
            if previous is None:
                if reasons is not None:
                    reasons.append("no earlier activity")
                return False
            gap = t - previous
            if reasons is not None:
                reasons.append(f"last active {timedelta(seconds=round(gap))} before")
            return gap >= trigger.after.total_seconds()
        assert isinstance(trigger, Declining)
        if self._declining is None:
            if reasons is not None:
                reasons.append("engagement is off")
            return False
        held = self._declining(state, t)
        if reasons is not None:
            reasons.append("engagement declining" if held else "engagement not declining")
        return held

    def _record(self, state: SubjectState, nudge: Nudge) -> list[Any]:
        records = state.nudges
        if records is None:
            records = state.nudges = {}
        record: list[Any] | None = records.get(nudge.name)
        if record is None:
            record = records[nudge.name] = [0, None, False, None, None]
        return record

    def drop_suppressed_pending(self, state: SubjectState, context: Context) -> None:
        """Forget pending nudges an ``unless`` milestone has made pointless."""
        records = state.nudges
        if not records or not records.get(PENDING):
            return
        unless = self._unless
        records[PENDING] = [
            name
            for name in records[PENDING]
            if name in unless and not any(context.has(state, k) for k in unless[name])
        ]

    def _next_due(self, state: SubjectState, t: float, context: Context) -> float:
        """The earliest time from ``t`` on at which time alone may change a decision.

        Moments already past are left out (everything was just looked at, at ``t``), but a
        cooldown ending at ``t`` itself (a zero cooldown) is kept: the next event at ``t``
        may fire that nudge again.
        """
        moments: list[float] = []
        again: list[float] = []  # cooldown ends, which may be ``t`` itself
        records = state.nudges or {}
        fatigue = self.fatigue
        live: list[tuple[str, str]] = []  # nudges that may still fire: (name, channel)
        for nudge in self.nudges:
            record = records.get(nudge.name)
            if record is not None and (record[DISMISSED] or record[FIRES] >= nudge.max_shows):
                continue
            if nudge.end is not None and t >= timestamp_of(nudge.end):
                continue
            if nudge.start is not None:
                moments.append(timestamp_of(nudge.start))
            trigger = nudge.trigger
            if isinstance(trigger, NotReached) and not context.has(
                state, reached_key(trigger.milestone)
            ):
                if state.first is not None:
                    moments.append(state.first + trigger.after.total_seconds())
            elif isinstance(trigger, Declining):
                moments.append(self._next_week(t))
            if record is not None:
                if record[AT] is not None:
                    again.append(record[AT] + nudge.cooldown.total_seconds())
                if record[UNTIL] is not None:
                    moments.append(record[UNTIL])
                if record[SUPPRESSED] is not None and self.rate_limit is not None:
                    channel = nudge.channel
                    last = records.get(LAST if channel == DEFAULT_CHANNEL else f"{LAST}:{channel}")
                    if last is not None:
                        moments.append(last + self.rate_limit)
            if fatigue is not None:
                live.append((nudge.name, nudge.channel))
        if fatigue is not None and live:
            moments += fatigue.moments(records, live, t)
        soonest = min((m for m in moments if m > t), default=math.inf)
        return min(soonest, min((m for m in again if m >= t), default=math.inf))


def _matches(audience: Mapping[str, Any], traits: Mapping[str, Any]) -> bool:
    """Whether traits match an audience given as a mapping (a collection: any of it)."""
    for key, wanted in audience.items():
        value = traits.get(key)
        if isinstance(wanted, (list, tuple, set, frozenset)):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def _capped(nudge: Nudge, record: list[Any], t: float) -> str | None:
    """What a nudge's record stops at ``t``: dismissed, max_shows, snoozed, cooldown."""
    if record[DISMISSED]:
        return "dismissed"
    if record[FIRES] >= nudge.max_shows:
        return "max_shows"
    if record[UNTIL] is not None and t < record[UNTIL]:
        return "snoozed"
    if record[AT] is not None and t < record[AT] + nudge.cooldown.total_seconds():
        return "cooldown"
    return None


def _cap_reason(
    nudge: Nudge, record: list[Any], status: str
) -> tuple[NudgeStatus, str, float | None]:
    if status == "dismissed":
        return "dismissed", "the user dismissed it", None
    if status == "max_shows":
        return "max_shows", f"fired {record[FIRES]} of {nudge.max_shows} times", None
    if status == "snoozed":
        return "snoozed", "snoozed by the user", record[UNTIL]
    until = record[AT] + nudge.cooldown.total_seconds()
    return "cooldown", f"cooldown of {span(nudge.cooldown)}", until
