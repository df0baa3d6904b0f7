"""Identity: merging a visitor's rule state into the user they turn out to be.

A visitor (``anon:<id>``) and a user (``user:<id>``) become one subject when
``Client.alias(previous_id, user_id)`` links them, or an ``identify`` carries both ids.
The visitor's state is merged into the user's and the visitor's key is left holding
only a pointer to the user (:data:`ALIAS`), so that a later event of the visitor (a
request still in flight, another process that has not heard) is applied to the user.

Merge rules, field by field (documented in docs/identity.md):

- first seen: the earliest; last seen: the latest;
- milestones reached: the union, each at its earliest time (so one reached as the
  visitor never fires again for the user); milestones the union completes are reached
  by the merge itself;
- event times the milestones count: both lists, the earliest kept (as many as the
  largest count needs);
- active days: the union (as many days as the rules keep);
- features: the earliest first use, the union of the days of use;
- nudges: fires added up (so ``max_shows`` counts both), the latest fire (cooldown),
  the latest snooze and rate-limit suppression, dismissed if either dismissed; pending
  nudges united; the latest fire of any nudge per channel (the rate limit); the fire
  times budgets count united; deferrals by quiet hours united (the later end); counted
  events added up, windowed event times united (the latest kept);
- traits: the visitor's, overwritten by the user's;
- every nudge is looked at afresh at the user's next event.

Both keys change in one atomic store step (one lock, one SQLite transaction, one Redis
script). A store that cannot change two keys together (Redis Cluster: they sit in
different hash slots) does it in two steps, each atomic: the visitor's key first (it
becomes the pointer, and hands back its state), then the user's.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..errors import StoreUnavailable
from .calendar import days_in, mark_day
from .milestones import MilestoneRules
from .nudge_decide import (
    ACCOUNT,
    AT,
    CONFIG,
    COUNT,
    DISMISSED,
    FIRES,
    LAST,
    PENDING,
    RECENT,
    SUPPRESSED,
    UNTIL,
)
from .nudge_eval import NudgeRules
from .nudge_fatigue import DEFERRED, SPENT
from .plumbing import Reached
from .state import (
    REACHED,
    SIGNAL_STALE,
    TRAITS,
    SubjectState,
    feature_days,
    feature_first_use,
    pack_feature,
)

__all__ = ["ALIAS", "MergeStep", "Merged", "Merger", "merged_into"]

T = TypeVar("T")

#: The key, in a merged visitor's ``nudges`` dict, of the user id it was merged into.
ALIAS = "\x00alias"


class MergeStep(Protocol):
    """Where a two-step merge waiting to be tried again stands (a backlog entry)."""

    #: The step that failed last: "take" (the visitor's) or "give" (the user's); "".
    stage: str
    #: The visitor's state the first step took (to give to the user).
    held: dict[str, Any] | None
    #: Asks the store whether the failed step landed after all (its reply was lost).
    landed: Callable[[], bool] | None
    #: What the second step reached (reported if it landed).
    saved: Any


class Merged(Exception):
    """Raised inside a store update: the visitor's state now points to a user."""

    def __init__(self, uid: str) -> None:
        super().__init__(uid)
        self.uid = uid


def merged_into(state: SubjectState) -> str | None:
    """The user id a visitor's state was merged into, or None."""
    nudges = state.nudges
    if nudges is None:
        return None
    target = nudges.get(ALIAS)
    return target if isinstance(target, str) else None


def _empty(state: SubjectState) -> bool:
    return state.first is None and not state.events and not state.nudges and not state.features


class Merger:
    """Merges states according to one client's rules (how much of each list they keep)."""

    def __init__(self, milestones: MilestoneRules, nudges: NudgeRules) -> None:
        self.milestones = milestones
        self.nudges = nudges

    # ------------------------------------------------------------------ store changes

    def pair(self, states: list[SubjectState], uid: str, t: float) -> list[Reached] | None:
        """Merge ``states[0]`` (the visitor) into ``states[1]`` (the user), atomically.

        Returns None when there was nothing to merge (an unknown visitor, or one merged
        already), else the milestones the union reached (reported by the merge).
        """
        visitor, user = states
        if merged_into(visitor) is not None or _empty(visitor):
            return None
        self.merge(user, visitor)
        _point(visitor, uid)
        return self.milestones.reevaluate(user, t)

    def take(
        self, visitor: SubjectState, uid: str, step: MergeStep | None = None
    ) -> dict[str, Any] | None:
        """Make the visitor's state a pointer to ``uid``; return what it held (the first
        of the two steps on a store that cannot change two keys at once). The state is
        also kept in ``step.held``, so that it survives a write whose reply was lost."""
        held = None
        if merged_into(visitor) is None and not _empty(visitor):
            held = visitor.to_json()
            _point(visitor, uid)
        if step is not None:  # (the store may run this again: the last run is written)
            step.held = held
        return held

    def give(
        self,
        user: SubjectState,
        held: dict[str, Any],
        t: float,
        step: MergeStep | None = None,
    ) -> list[Reached]:
        """Merge a visitor's state handed back by :meth:`take` into the user's."""
        self.merge(user, SubjectState.from_json(held))
        reached = self.milestones.reevaluate(user, t)
        if step is not None:
            step.saved = reached
        return reached

    # ------------------------------------------------------------------ the rules

    def merge(self, into: SubjectState, other: SubjectState) -> None:
        """Merge ``other``'s state into ``into`` (see the module for the rules)."""
        if other.first is not None and (into.first is None or other.first < into.first):
            into.first = other.first
        if other.last is not None and (into.last is None or other.last > into.last):
            into.last = other.last
        if other.events:
            into.events = self._events(into.events or {}, other.events)
        if other.days:
            kept = sorted(set(into.days or ()) | set(other.days))
            limit = self.milestones.days_kept
            if limit:
                kept = kept[bisect.bisect_left(kept, kept[-1] - limit + 1) :]
            into.days = array("i", kept)
        if other.features:
            into.features = self._features(into.features or {}, other.features)
        if other.nudges:
            into.nudges = self._nudges(into.nudges or {}, other.nudges)
        into.due = 0.0  # look at every nudge again at the next event
        if not into.signalled:  # compare the union with what was signalled for either
            into.signalled = other.signalled
        if into.signalled:  # the union's score: computed at the next event
            into.signalled |= SIGNAL_STALE

    def _events(
        self, into: dict[str, float | list[float]], other: dict[str, float | list[float]]
    ) -> dict[str, float | list[float]]:
        keep = self.milestones.keep
        for name, theirs in other.items():
            mine = into.get(name)
            if mine is None:
                into[name] = list(theirs) if isinstance(theirs, list) else theirs
            elif name.startswith(REACHED) or not (
                isinstance(mine, list) or isinstance(theirs, list)
            ):
                into[name] = min(mine, theirs)
            else:
                times = sorted(_times(mine) + _times(theirs))
                into[name] = times[: keep.get(name, len(times))]
        return into

    def _features(self, into: dict[str, int], other: dict[str, int]) -> dict[str, int]:
        width = self.milestones.feature_width
        for name, theirs in other.items():
            mine = into.get(name)
            if mine is None:
                into[name] = theirs
                continue
            days = feature_days(mine)
            if width:
                for day in days_in(feature_days(theirs), width):
                    days = mark_day(days, day, width)
            first = min(feature_first_use(mine), feature_first_use(theirs))
            into[name] = pack_feature(first, days)
        return into

    def _nudges(self, into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
        recent = self.nudges.recent_kept
        for key, theirs in other.items():
            mine = into.get(key)
            if key in (CONFIG, ALIAS):
                continue
            if mine is None:
                into[key] = _copy(theirs)
            elif key == TRAITS:
                into[key] = {**theirs, **mine}  # the user's own traits win
            elif key.startswith(LAST):  # (one per channel)
                into[key] = max(mine, theirs)
            elif key.startswith(SPENT):  # a channel's budget: the fires of both
                fatigue = self.nudges.fatigue
                into[key] = fatigue.merge_spent(key, mine, theirs) if fatigue else mine
            elif key == DEFERRED:  # the later deferral of each nudge
                into[key] = {n: max(d, mine.get(n, d)) for n, d in {**mine, **theirs}.items()}
            elif key in (PENDING, ACCOUNT):
                into[key] = mine + [name for name in theirs if name not in mine]
            elif key.startswith(COUNT):
                into[key] = mine + theirs
            elif key.startswith(RECENT):
                times = sorted(mine + theirs)
                into[key] = times[-recent.get(key[len(RECENT) :], len(times)) :]
            elif not key.startswith("\x00"):  # a nudge's record
                into[key] = _record(mine, theirs)
        into.pop(CONFIG, None)
        return into


def _point(visitor: SubjectState, uid: str) -> None:
    """Leave only the pointer to the user in a merged visitor's state."""
    visitor.__init__()  # type: ignore[misc]
    visitor.nudges = {ALIAS: uid}


def _times(value: float | list[float]) -> list[float]:
    return list(value) if isinstance(value, list) else [value]


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _record(mine: list[Any], theirs: list[Any]) -> list[Any]:
    """One nudge's record over both: fires added, the latest times, dismissed by either."""
    merged = list(mine)
    merged[FIRES] = mine[FIRES] + theirs[FIRES]
    merged[AT] = _latest(mine[AT], theirs[AT])
    merged[DISMISSED] = bool(mine[DISMISSED] or theirs[DISMISSED])
    merged[UNTIL] = _latest(mine[UNTIL], theirs[UNTIL])
    merged[SUPPRESSED] = _latest(mine[SUPPRESSED], theirs[SUPPRESSED])
    return merged


class Identity:
    """Merges visitors into users over one store (the engine's ``identity``)."""

    def __init__(self, store: Any, merger: Merger, *, atomic_many: bool) -> None:
        self.store = store
        self.merger = merger
        self.atomic_many = atomic_many

    def merge(self, uid: str, anon: str, t: float, step: MergeStep | None = None) -> list[Reached]:
        """Merge the visitor ``anon`` into the user ``uid``; return what the union reached.

        A visitor never seen, or merged already (into this user or another: the first
        link wins), is left alone and nothing is written. One read, then one atomic
        update of both keys (two steps on a store that cannot change two keys at once).

        On such a store ``step`` (a merge waiting to be tried again) keeps what the first
        step took from the visitor when the second one fails, and the second step alone
        is tried again; a step whose reply was lost is asked about first (see
        ``StoreUnavailable.landed``), so neither is applied twice nor lost.

        Raises:
            StoreUnavailable, TimeoutError: the store could not be reached in time.
        """
        visitor_key, user_key = f"anon:{anon}", f"user:{uid}"
        merger = self.merger
        if step is not None and step.stage:
            done = self._resume(user_key, t, step)
            if done is not None:
                return done
        seen = self.store.get(visitor_key)
        if seen is None or merged_into(seen) is not None:
            return []
        if self.atomic_many:
            reached = self.store.update_many((visitor_key, user_key), merger.pair, uid, t)
            return reached or []
        held = self._step(step, "take", self.store.update, visitor_key, merger.take, uid, step)
        if held is None:
            return []
        return self._step(step, "give", self.store.update, user_key, merger.give, held, t, step)

    def _resume(self, user_key: str, t: float, step: MergeStep) -> list[Reached] | None:
        """Go on with a two-step merge where it failed; None to start it afresh."""
        if step.landed is not None:  # the failed step's reply was lost: did it land?
            if step.landed():  # (raises StoreUnavailable while the store is still out)
                if step.stage == "give":  # the merge is done: report what it reached
                    reached: list[Reached] = step.saved or []
                    return reached
                step.stage = "give"  # the visitor is a pointer now: its state is held
            step.landed = None
        if step.stage == "give" and step.held is not None:
            held, give = step.held, self.merger.give
            given: list[Reached] = self._step(
                step, "give", self.store.update, user_key, give, held, t, step
            )
            return given
        step.stage, step.held = "", None  # the first step did not land: start again
        return None

    @staticmethod
    def _step(step: MergeStep | None, stage: str, call: Callable[..., T], *args: Any) -> T:
        """Run one step of a two-step merge, noting in ``step`` which one failed."""
        try:
            return call(*args)
        except (StoreUnavailable, TimeoutError) as exc:
            if step is not None:
                step.stage = stage
                step.landed = getattr(exc, "landed", None)
                if stage == "take" and step.landed is None:
                    step.held = None  # nothing was written: nothing was taken
            raise

    def resolve(self, key: str, state: SubjectState | None) -> tuple[str, SubjectState | None]:
        """Follow a merged visitor's key to its user's (one more read); else as given."""
        target = None if state is None else merged_into(state)
        if target is None:
            return key, state
        key = f"user:{target}"
        return key, self.store.get(key)
