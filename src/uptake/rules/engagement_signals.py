"""Engagement signals: a tier that rises or drops, a decline that starts or ends.

The tier and the declining flag last signalled for a subject live in its state (one small
int, ``SubjectState.signalled``), and :meth:`Signals.evaluate` runs inside the store's
atomic update of that subject: it computes the engagement at event time, compares it
with what was signalled, records the new value and returns the changes. With a shared
store, two processes never signal the same change: the second one finds it recorded.

A subject with nothing signalled yet starts from the snapshot of a subject never seen
(tier ``"low"``, not declining) when this event is its first; otherwise (state written
before signals were turned on) the first evaluation records a baseline silently, so that
turning signals on does not announce every known subject's tier at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import attrs

from .engagement import EngagementRules
from .state import SIGNAL_STALE, SubjectState

__all__ = ["TIERS", "Change", "EngagementChange", "Inputs", "Signals"]

#: Tiers from lowest to highest (their index is what a signal stores).
TIERS: tuple[Literal["low", "medium", "high"], ...] = ("low", "medium", "high")
_INDEX: dict[str, int] = {name: i for i, name in enumerate(TIERS)}

#: What a signal is about, and the way it changed.
KINDS = ("tier", "declining")
CHANGES = ("rose", "dropped", "started", "ended")

#: One change decided inside the store: (scope, kind, change, previous tier, tier, score,
#: declining, event time it was evaluated at).
Change = tuple[str, str, str, str, str, int, bool, float]
#: What one event may change of a subject's score inputs: (number, first and last of the
#: active days), the packed value of the event's feature, the day mask of the member
#: (accounts), the touchpoint days, and the latest active time (last).
Inputs = tuple[tuple[int, int, int] | None, int | None, int | None, int, float | None]


def encode(tier: str, declining: bool) -> int:
    """The stored form of a signalled tier and declining flag (never 0)."""
    return 1 + _INDEX[tier] + 3 * declining


def decode(code: int) -> tuple[str, bool]:
    """The tier and declining flag of a stored signal (``encode``'s inverse)."""
    value = (code & ~SIGNAL_STALE) - 1
    return TIERS[value % 3], value >= 3


@attrs.frozen
class EngagementChange:
    """A change of a user's or an account's engagement (``on_engagement_change``).

    Attributes:
        scope: ``"user"`` or ``"account"``: whose engagement changed.
        kind: ``"tier"`` (the tier rose or dropped) or ``"declining"`` (a decline
            started or ended).
        change: ``"rose"`` or ``"dropped"`` for a tier, ``"started"`` or ``"ended"`` for
            a decline.
        user_id: The user whose event (or check) found the change; for an account
            change, the member whose event did (None from a check of the account alone).
        account_id: The account (the subject of an account change, else the account the
            event carried, or None).
        tier: The tier now.
        previous_tier: The tier last signalled before (equal to ``tier`` for a decline,
            unless the tier changed at the same moment).
        score: The score now, 0-100.
        declining: Whether the subject is declining now.
        timestamp: The event time the engagement was computed at (UTC).
    """

    scope: Literal["user", "account"]
    kind: Literal["tier", "declining"]
    change: Literal["rose", "dropped", "started", "ended"]
    user_id: str | None
    account_id: str | None
    tier: Literal["high", "medium", "low"]
    previous_tier: Literal["high", "medium", "low"]
    score: int
    declining: bool
    timestamp: datetime


class Signals:
    """Decides the engagement signals of one scope inside a store update (internal)."""

    __slots__ = ("rules", "scope")

    def __init__(self, rules: EngagementRules) -> None:
        self.rules = rules
        self.scope = "account" if rules.account else "user"

    @staticmethod
    def inputs(state: SubjectState, feature: str | None, member: str | None) -> Inputs:
        """What the score is computed from that one event may change (taken before it is
        applied): active days, the event's feature, the member's days and touchpoints
        (accounts), and the latest active time."""
        days = state.days
        features = state.features
        members = state.members
        return (
            (len(days), days[0], days[-1]) if days else None,
            features.get(feature) if features is not None and feature is not None else None,
            members.get(member) if members is not None and member is not None else None,
            state.touch,
            state.last,
        )

    def evaluate(
        self,
        state: SubjectState,
        t: float,
        new: bool,
        before: Inputs | None = None,
        feature: str | None = None,
        member: str | None = None,
    ) -> list[Change]:
        """Compare the engagement at ``t`` with what was signalled; record and return
        the changes.

        The clock never goes back: an event older than the subject's latest is evaluated
        at that latest time (a late event may still change what the latest time shows).
        ``new``: the event is the subject's first (nothing before it), so it starts from
        a never-seen subject's "low", not declining. ``before``: the :meth:`inputs`
        before the event (of its ``feature`` and ``member``); when the event changed none
        of them and falls on the day of the latest event before it (evaluated then), the
        result is known to be the same and is not computed again (the common case: a
        subject's second and later events of a day). A group call or a merge marks the
        state stale (``SIGNAL_STALE``), and the next event computes it.
        """
        last = state.last
        if last is not None and last > t:
            t = last
        signalled = state.signalled
        if before is not None and signalled and not signalled & SIGNAL_STALE:
            previous = before[-1]
            if (
                previous is not None
                and self.inputs(state, feature, member)[:-1] == before[:-1]
                and self.rules.calendar.day_of(t) == self.rules.calendar.day_of(previous)
            ):
                return []
        score, declining = self.rules.score_at(state, t)
        tier = self.rules.config.tier(score)
        code = encode(tier, declining)
        if signalled == code:
            return []
        state.signalled = code
        if not signalled:
            if not new:
                return []  # a baseline for state kept before signals were on
            signalled = encode("low", False)
        was_tier, was_declining = decode(signalled)
        changes: list[Change] = []
        scope = self.scope
        if was_tier != tier:
            rose = _INDEX[tier] > _INDEX[was_tier]
            change = "rose" if rose else "dropped"
            changes.append((scope, "tier", change, was_tier, tier, score, declining, t))
        if was_declining != declining:
            change = "started" if declining else "ended"
            changes.append((scope, "declining", change, was_tier, tier, score, declining, t))
        return changes
