"""Explaining nudges: the decision for the user's next event, run on a copy of their state.

``explain_nudges`` must say what the decision did or will do, so it runs the decision
itself (:meth:`~uptake.rules.nudge_decide.Decider.decide`) over every nudge at that
moment, on a copy of the state, asking it to record its reasons; nothing is stored.
"""

from __future__ import annotations

from .nudge_decide import FIRES, PENDING, Context, Decider, Why
from .nudge_spec import NudgeExplanation, in_global_holdout, utc
from .state import SubjectState

__all__ = ["explain"]

_FIRING = ("would_fire", "held_out", "global_holdout")


def explain(
    rules: Decider, state: SubjectState, t: float, context: Context
) -> list[NudgeExplanation]:
    """Where every nudge stands for a user at ``t``, in priority order.

    ``state`` is a copy of the user's state: the decision runs on it (and changes it) as
    it would for an active event at ``t`` that no trigger counts. The host's audience
    callables are asked here, on the caller's thread.
    """
    records = state.nudges or {}
    fires = {n.name: records[n.name][FIRES] for n in rules.nudges if n.name in records}
    pending_before = set(records.get(PENDING, ()))
    why: Why = {}
    context.direct = True
    rules.decide(state, t, state.last, context, rules.nudges, True, why)
    # (A nudge an ``unless`` milestone made pointless was just dropped from pending.)
    pending = pending_before.intersection((state.nudges or {}).get(PENDING, ()))
    out: list[NudgeExplanation] = []
    fraction = rules.global_holdout
    everywhere = in_global_holdout(context.user_id, fraction)
    for nudge in rules.nudges:
        status, detail, until = why[nudge.name]
        if everywhere and status != "global_holdout":  # whatever else stops it now
            detail += f"; the user is in the {fraction:.0%} global holdout: no nudge ever fires"
        waiting = nudge.name in pending
        if waiting:  # fired and waiting: what the host should know first
            if status in _FIRING:
                detail += "; fired before and still waiting to be shown"
            else:
                status, detail = "pending", "fired; waiting to be shown"
        out.append(
            NudgeExplanation(
                name=nudge.name,
                status=status,
                detail=detail,
                until=utc(until),
                fires=fires.get(nudge.name, 0),
                pending=waiting,
            )
        )
    return out
