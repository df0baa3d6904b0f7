"""What the client does with the rules' decisions: events, host callbacks, replay.

The engine decides (milestones reached, nudges fired or held out); this facade records
each decision as an event through the client's pipeline and calls the host's
``on_milestone`` / ``on_nudge`` callbacks, on the thread whose call led to the decision.
It also reads past events for ``replay`` and ``simulate``. It never imports the client:
the pipeline it emits through is handed to it.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import attrs

from ..definitions import MILESTONE_EVENT, parse_track
from ..errors import ConfigurationError
from ..stats import Stats
from .backlog import Backlog, Pending
from .engagement_report import ChangeHooks
from .engine import NO_EFFECTS, Effects, RulesEngine
from .milestones import Milestone, MilestoneReached
from .nudges import Action, Nudge, NudgeFired
from .plumbing import outage
from .simulation import Simulation, apply_past, simulate

__all__ = ["MilestoneHook", "NudgeHook", "ReplayResult", "RulesFacade"]

logger = logging.getLogger("uptake")

MilestoneHook = Callable[[MilestoneReached], object]
NudgeHook = Callable[[NudgeFired], object]

#: Events stamped further ahead than this are kept out of the rules (a wrong clock).
_MAX_FUTURE_S = 24 * 3600.0
#: Waiting events a tracking call applies at most, once the store answers again, and
#: the time it may spend starting them (the rest follow at the next calls, or all at
#: ``flush()``): one store round trip each.
_CATCH_UP_PER_CALL = 64
_CATCH_UP_S = 0.01


@attrs.frozen
class ReplayResult:
    """What ``Client.replay`` did: events read, applied, skipped; milestones reached."""

    read: int
    applied: int
    skipped: int
    reached: int


class Emitter(Protocol):
    """The part of the pipeline the facade records decisions through."""

    def message(
        self,
        kind: str,
        uid: str | None,
        anon: str | None,
        t: float,
        account: str | None,
        context: Mapping[str, Any] | None,
        session_id: str | None,
    ) -> dict[str, Any]: ...

    def emit(self, message: dict[str, Any]) -> None: ...


class RulesFacade:
    """The rules of one client as the host sees them (internal)."""

    def __init__(
        self,
        engine: RulesEngine,
        emitter: Emitter,
        milestones: Sequence[Milestone],
        nudges: Sequence[Nudge],
    ) -> None:
        self.engine = engine
        self._update = engine.update
        self.emitter = emitter
        self.milestones = tuple(milestones)
        self.nudges = tuple(nudges)
        self.milestone_names = frozenset(m.name for m in milestones)
        self._hooks: dict[str | None, list[MilestoneHook]] = {}
        self._nudge_hooks: dict[str | None, list[NudgeHook]] = {}
        self.backlog = Backlog()
        self._waiting = self.backlog.waiting
        self.changes = ChangeHooks(emitter)
        #: Set by ``Client.atrack`` around its part on the event loop: the events to apply
        #: on a rules thread afterwards, instead of now (see uptake._async_api).
        self.held: contextvars.ContextVar[list[tuple[Any, ...]] | None] = contextvars.ContextVar(
            "uptake_held_rules", default=None
        )

    # ------------------------------------------------------------------ registration

    def on_milestone(self, name: str | None) -> Callable[[MilestoneHook], MilestoneHook]:
        """Return a decorator that registers a milestone callback."""
        if name is not None and name not in self.milestone_names:
            raise ConfigurationError(
                f"no milestone named {name!r}; the client has {sorted(self.milestone_names)}"
            )
        return _registrar(self._hooks, name, "on_milestone")

    def on_nudge(self, name: str | None) -> Callable[[NudgeHook], NudgeHook]:
        """Return a decorator that registers a nudge callback."""
        self.check_nudge(name, ConfigurationError)
        return _registrar(self._nudge_hooks, name, "on_nudge")

    def inherit(self, parent: RulesFacade) -> None:
        """Keep the host's callbacks of the facade this one replaces (in a forked child)."""
        self._hooks = parent._hooks
        self._nudge_hooks = parent._nudge_hooks
        self.changes = parent.changes
        self.changes.emitter = self.emitter

    def runs_host_code(self) -> bool:
        """True when deciding may call the host: callbacks, or a callable ``audience``."""
        return bool(self._hooks or self._nudge_hooks or self.changes) or any(
            callable(nudge.audience) for nudge in self.nudges
        )

    def check_nudge(self, name: str | None, error: type[Exception]) -> None:
        """Raise ``error`` when ``name`` is not one of the client's nudges."""
        known = self.engine.nudges.by_name
        if name is not None and name not in known:
            raise error(f"no nudge named {name!r}; the client has {sorted(known)}")

    # ------------------------------------------------------------------ decisions

    def after_track(
        self,
        uid: str | None,
        anon: str | None,
        account: str | None,
        event: str,
        properties: Mapping[str, Any] | None,
        t: float,
        session_id: str | None,
        stamped: bool,
    ) -> None:
        """Apply a tracked event to the rules; record and call back what they decided."""
        held = self.held.get()
        if held is not None:  # inside atrack: kept for its rules thread (a copy of props)
            props = dict(properties) if properties is not None else None
            held.append((uid, anon, account, event, props, t, session_id, stamped))
            return
        if stamped and t > time.time() + _MAX_FUTURE_S:
            # Sent, but kept out of the rules: one bad clock must not age a user's real days.
            return
        if self._waiting:  # the store failed earlier: some events wait (a slower path)
            self._track_while_waiting(uid, anon, account, event, properties, t, session_id)
            return
        effects = self._update(uid, anon, account, event, properties, t)
        if effects is not NO_EFFECTS and effects:  # (the common case: one comparison)
            if effects.deferred is not None:  # the store could not be reached: keep it
                entry = Pending("track", uid, anon, account, event, properties, t, session_id)
                entry.landed, entry.saved = effects.deferred
                self.backlog.keep(entry)
                return
            self.effects(effects, effects.uid or uid, anon, account, t, session_id)

    def _track_while_waiting(
        self,
        uid: str | None,
        anon: str | None,
        account: str | None,
        event: str,
        properties: Mapping[str, Any] | None,
        t: float,
        session_id: str | None,
    ) -> None:
        """Apply an event while others wait: behind its user's waiting events, else now
        (and then go on with the waiting ones, as the store answered)."""
        backlog = self.backlog
        entry = Pending("track", uid, anon, account, event, properties, t, session_id)
        if backlog.holds(entry.keys()):
            backlog.keep(entry)
            self.catch_up(_CATCH_UP_PER_CALL, until=time.monotonic() + _CATCH_UP_S)
            return
        engine = self.engine
        failures = engine.failures
        effects = engine.update(uid, anon, account, event, properties, t)
        if effects.deferred is not None:  # still out: no use trying the others now
            entry.landed, entry.saved = effects.deferred
            backlog.keep(entry)
            return
        if engine.failures == failures and engine.touches(event, account):
            backlog.answered()  # proof that the store is up, for the waiting ones
        if effects:
            self.effects(effects, effects.uid or uid, anon, account, t, session_id)
        self.catch_up(_CATCH_UP_PER_CALL, until=time.monotonic() + _CATCH_UP_S)

    def merge(self, uid: str, anon: str, t: float, session_id: str | None) -> None:
        """Merge a visitor's rule state into a user's; report what the union reached.

        Never raises: when the store cannot be reached the merge waits in the backlog
        with the visitor's and the user's events (in order), and other failures are
        logged. A merge counts as one event in ``Client.stats``' rule counts.
        """
        entry = Pending("merge", uid, anon, None, "", None, t, session_id)
        backlog = self.backlog
        if self._waiting and backlog.holds(entry.keys()):
            backlog.keep(entry)
        elif not self._merge(entry):
            backlog.keep(entry)
            return
        if self._waiting:
            self.catch_up(_CATCH_UP_PER_CALL, until=time.monotonic() + _CATCH_UP_S)

    def _merge(self, entry: Pending) -> bool:
        """Merge now; False when the store could not be reached (to be tried again)."""
        uid, anon = entry.uid, entry.anon
        assert uid is not None and anon is not None
        try:
            reached = self.engine.identity.merge(uid, anon, entry.t, entry)
        except Exception as exc:
            self.engine.failed("merging a visitor into a user", exc)
            if outage(exc):
                return False
            self.engine.skipped += 1
            return True
        for milestone, at, first in reached:
            self._milestone_reached(milestone, at, first, uid, anon, None, entry.session_id)
        return True

    def catch_up(self, most: int | None = None, *, until: float | None = None) -> None:
        """Apply waiting events, subject by subject, each subject's oldest first, until
        the store fails again (``most`` at most, and none started after the
        ``time.monotonic()`` deadline ``until``). One thread at a time; the others leave
        theirs to it. Never raises."""
        backlog = self.backlog
        if not backlog.start():
            return
        engine = self.engine
        done = 0
        try:
            while (most is None or done < most) and (until is None or time.monotonic() < until):
                entry = backlog.head()  # (stops the draining when nothing is left)
                if entry is None:
                    return
                skipped = engine.skipped
                if not self._apply_waiting(entry):  # its subject goes to the back of the line;
                    if backlog.failed(entry):  # go on if the store answers for others
                        continue
                    break
                if engine.skipped != skipped:  # left out after all: counted once, here
                    engine.skipped -= 1
                    backlog.done(entry, applied=False)
                else:
                    backlog.done(entry)
                done += 1
        except BaseException:
            backlog.stop()
            raise
        backlog.stop()

    def _apply_waiting(self, entry: Pending) -> bool:
        """Apply one waiting event and report what it decided; False if the store failed."""
        if entry.kind == "merge":
            return self._merge(entry)
        effects: Effects | None = None
        if entry.landed is not None:  # did the write that failed land after all?
            try:
                landed = entry.landed()
            except Exception as exc:
                if outage(exc):
                    return False
                self.engine.failed("checking a write the store did not confirm", exc)
                landed = False
            entry.landed = None
            if landed:
                effects = entry.saved
        uid, anon, account, t = entry.uid, entry.anon, entry.account, entry.t
        if effects is None:
            effects = self.engine.update(uid, anon, account, entry.event, entry.properties, t)
            if effects.deferred is not None:
                entry.landed, entry.saved = effects.deferred
                return False
        if effects:
            self.effects(effects, effects.uid or uid, anon, account, t, entry.session_id)
        return True

    def stats(self, stats: Stats) -> Stats:
        """``stats`` with the rules' counts: events skipped, replayed, left out."""
        backlog = self.backlog
        skipped = self.engine.skipped + backlog.deferred
        if not skipped:
            return stats
        return attrs.evolve(
            stats,
            rules_skipped=skipped,
            rules_replayed=backlog.replayed,
            rules_overflowed=backlog.overflowed,
        )

    def effects(
        self,
        effects: Effects,
        uid: str | None,
        anon: str | None,
        account: str | None,
        t: float,
        session_id: str | None,
    ) -> None:
        """Report what the rules decided for one event: milestones, engagement signals,
        then nudges."""
        for milestone, at, first in effects.reached:
            self._milestone_reached(milestone, at, first, uid, anon, account, session_id)
        if effects.changes:
            self.changes.report(effects.changes, uid, anon, account, session_id)
        self.nudge_actions(effects.nudges, uid, anon, account, t, session_id)

    def nudge_actions(
        self,
        actions: list[Action],
        uid: str | None,
        anon: str | None,
        account: str | None,
        t: float,
        session_id: str | None,
    ) -> None:
        """Record nudge decisions as events; call the callbacks of those fired."""
        for kind, nudge, reason in actions:
            properties: dict[str, Any] = {"nudge": nudge.name, "reason": reason}
            if kind == "suppressed":
                name = "Nudge Suppressed"
            else:
                name = "Nudge Fired" if kind == "fired" else "Nudge Held Out"
                properties["priority"] = nudge.priority
                properties["holdout"] = nudge.holdout
                if kind == "global_holdout":  # the programme's control group
                    properties["global_holdout"] = self.engine.nudges.global_holdout
                if nudge.goal is not None:
                    properties["goal"] = nudge.goal
                    properties["goal_within_s"] = nudge.goal_within.total_seconds()
            message = self.emitter.message("track", uid, anon, t, account, None, session_id)
            message["event"] = name
            message["properties"] = properties
            self.emitter.emit(message)
            if kind != "fired":
                continue
            fired = fired_nudge(nudge, uid or anon or "", account, t, reason)
            _call(self._nudge_hooks, nudge.name, fired, "on_nudge")

    def _milestone_reached(
        self,
        milestone: Milestone,
        at: float,
        first: float,
        uid: str | None,
        anon: str | None,
        account: str | None,
        session_id: str | None,
    ) -> None:
        message = self.emitter.message("track", uid, anon, at, account, None, session_id)
        message["event"] = MILESTONE_EVENT
        message["properties"] = {
            "milestone": milestone.name,
            "scope": milestone.scope,
            "time_to_reach_s": round(at - first, 3),
        }
        self.emitter.emit(message)
        reached = MilestoneReached(
            milestone=milestone.name,
            user_id=uid if uid is not None else anon,
            account_id=account,
            timestamp=datetime.fromtimestamp(at, timezone.utc),
            time_to_reach=timedelta(seconds=at - first),
        )
        _call(self._hooks, milestone.name, reached, "on_milestone")

    # ------------------------------------------------------------------ history

    def replay(self, events: Iterable[Mapping[str, Any]]) -> ReplayResult:
        """Apply past events to the rule state without deciding anything."""
        engine = self.engine
        read = applied = skipped = reached = 0
        for raw in events:
            read += 1
            parsed = parse_track(raw)
            if parsed is None:
                if engine.enabled and apply_past(engine, raw):
                    applied += 1  # an identify or group: traits for audiences, seats
                else:
                    skipped += 1
                continue
            uid, anon, account, name, props, t = parsed
            applied += 1
            if engine.enabled:
                effects = engine.update(uid, anon, account, name, props, t, decide=False)
                reached += len(effects.reached)
        return ReplayResult(read=read, applied=applied, skipped=skipped, reached=reached)

    def simulate(self, events: Iterable[Mapping[str, Any]], nudges: Sequence[Nudge]) -> Simulation:
        """Run history through these rules with other nudges, in a private store."""
        engine = self.engine
        fatigue = engine.nudges.fatigue
        return simulate(
            events,
            milestones=self.milestones,
            engagement=engine.engagement,
            nudges=nudges,
            rate_limit=engine.nudges.rate_limit,
            global_holdout=engine.nudges.global_holdout,
            budgets=fatigue.budgets if fatigue is not None else (),
            quiet_hours=fatigue.hours if fatigue is not None else (),
            tz=engine.calendar.tz,
            inactive_events=engine.inactive_events,
            parse=parse_track,
        )


def fired_nudge(nudge: Nudge, user: str, account: str | None, t: float, reason: str) -> NudgeFired:
    """The callback's view of a nudge fired (or pending) for a user."""
    return NudgeFired(
        name=nudge.name,
        user_id=user,
        account_id=account,
        payload=nudge.payload,
        timestamp=datetime.fromtimestamp(t, timezone.utc),
        reason=reason,
        priority=nudge.priority,
        channel=nudge.channel,
    )


def _registrar(
    hooks: dict[str | None, list[Any]], name: str | None, what: str
) -> Callable[[Any], Any]:
    def register(hook: Any) -> Any:
        if not callable(hook):
            raise ConfigurationError(f"{what} needs a callable, not {hook!r}")
        hooks.setdefault(name, []).append(hook)
        return hook

    return register


def _call(hooks: dict[str | None, list[Any]], name: str, value: object, what: str) -> None:
    for hook in (*hooks.get(name, ()), *hooks.get(None, ())):
        try:
            hook(value)
        except Exception:  # one broken callback must not stop the others
            logger.exception("%s callback %r raised", what, hook)
