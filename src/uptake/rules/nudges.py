"""Nudges: deciding, at the moment a user is seen, which in-product nudge to fire.

The parts live in their own modules, re-exported here:

- :mod:`~uptake.rules.nudge_spec`: what a host declares and gets back (:class:`Nudge`,
  the triggers, :class:`Audience`, :class:`NudgeFired`, :class:`NudgeExplanation`);
- :mod:`~uptake.rules.nudge_decide`: the one decision, shared by deciding and explaining
  (:mod:`~uptake.rules.nudge_context`: who it is about, the audience callables it asks);
- :mod:`~uptake.rules.nudge_eval`: :class:`NudgeRules`, what an event asks it to consider;
- :mod:`~uptake.rules.nudge_fatigue`: :class:`NudgeBudget` and :class:`QuietHours`;
- :mod:`~uptake.rules.nudge_explain`: ``explain_nudges``.
"""

from .nudge_decide import Context, Question
from .nudge_eval import Decision, NudgeRules
from .nudge_fatigue import NudgeBudget, QuietHours
from .nudge_spec import (
    Action,
    Audience,
    AudienceRule,
    Declining,
    EventCount,
    Inactive,
    NotReached,
    Nudge,
    NudgeExplanation,
    NudgeFired,
    NudgeStatus,
    Reached,
    Trigger,
)

__all__ = [
    "Action",
    "Audience",
    "AudienceRule",
    "Context",
    "Decision",
    "Declining",
    "EventCount",
    "Inactive",
    "NotReached",
    "Nudge",
    "NudgeBudget",
    "NudgeExplanation",
    "NudgeFired",
    "NudgeRules",
    "NudgeStatus",
    "Question",
    "QuietHours",
    "Reached",
    "Trigger",
]
