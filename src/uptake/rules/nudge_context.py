"""Who a nudge decision is about, and the host's audience callables it may need to ask.

:class:`Context` gives the decision (:mod:`uptake.rules.nudge_decide`) lazy access to what
lives outside the user's state (their account's milestones, their engagement); a
:class:`Question` carries an audience callable that must be asked outside the store's
update, and where to resume the decision afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

from .nudge_spec import Audience, Nudge
from .state import REACHED, SubjectState

__all__ = ["Context", "Question", "ask_audience"]

logger = logging.getLogger("uptake")


class Context:
    """Who is being evaluated, and lazy access to what lives outside their state.

    ``answers`` holds what the host's audience callables said (asked outside the store);
    with ``direct`` set (explaining, on a copy of the state) they are called right away.
    """

    __slots__ = (
        "_account_reached",
        "_engagement",
        "_reached",
        "account_id",
        "answers",
        "direct",
        "user_id",
    )

    def __init__(
        self,
        user_id: str,
        account_id: str | None,
        account_reached: frozenset[str] = frozenset(),
        engagement: Callable[[SubjectState, float], Any] | None = None,
    ) -> None:
        self.user_id = user_id
        self.account_id = account_id
        self._account_reached = account_reached
        self._engagement = engagement
        self._reached: frozenset[str] | None = None
        self.answers: dict[str, bool] | None = None
        self.direct = False

    def has(self, state: SubjectState, key: str) -> bool:
        """Whether the user or their account reached the milestone of ``reached_key`` key."""
        events = state.events
        if events is not None and key in events:
            return True
        return bool(self._account_reached) and key[len(REACHED) :] in self._account_reached

    def reached(self, state: SubjectState) -> frozenset[str]:
        """Milestones reached by the user or by their account (nudges never change it)."""
        if self._reached is None:
            own = state.reached
            both = frozenset(own) | self._account_reached if own else self._account_reached
            self._reached = both
        return self._reached

    def view(self, state: SubjectState, t: float, copy: bool) -> Audience:
        """What an audience callable is given; ``copy``: from a copy of the state, for use
        after the store update has ended."""
        compute = self._engagement
        engagement = None
        if compute is not None:
            seen = SubjectState.from_json(state.to_json()) if copy else state
            engagement = lambda: compute(seen, t)  # noqa: E731
        return Audience(
            self.user_id,
            self.account_id,
            MappingProxyType(dict(state.traits or {})),
            self.reached(state),
            engagement,
        )


def ask_audience(nudge: Nudge, view: Audience) -> bool:
    """Ask a nudge's audience callable; a broken one keeps the nudge away (logged)."""
    audience = nudge.audience
    assert callable(audience)
    try:
        return bool(audience(view))
    except Exception:  # a broken predicate keeps the nudge away, never breaks tracking
        logger.exception("audience of nudge %r raised; the user is left out", nudge.name)
        return False


class Question:
    """An audience callable the decision needs answered, outside the store's update.

    Everything before ``rest[0]`` in priority order is decided and recorded; the decision
    resumes at ``rest[0]`` once :meth:`ask` has answered (in ``context.answers``).
    """

    __slots__ = ("context", "everything", "previous", "rest", "t", "view")

    def __init__(
        self,
        rest: Sequence[Nudge],
        view: Audience,
        context: Context,
        t: float,
        previous: float | None,
        everything: bool,
    ) -> None:
        self.rest = rest
        self.view = view
        self.context = context
        self.t = t
        self.previous = previous
        self.everything = everything

    def ask(self) -> None:
        """Call the host's audience callable (never inside a store update)."""
        nudge = self.rest[0]
        if self.context.answers is None:
            self.context.answers = {}
        self.context.answers[nudge.name] = ask_audience(nudge, self.view)
