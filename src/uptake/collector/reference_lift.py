"""The nudges' lift by assignment in plain Python: the yardstick of ``model.nudge_arms``
and ``model.programme_arms`` (used by :mod:`.reference`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .figures import Arms, assignment_lift, nudge_stat, programme_stat
from .lift import ArmSums
from .metrics import NudgeStat, ProgrammeStat

__all__ = ["Assignments", "nudge_lift", "programme"]

#: Days after the first assignment in which a user counts as retained (the programme).
RETAINED_FROM, RETAINED_TO = 28, 35
#: A user's first assignment: (time, day, arm).
Assignment = tuple[float, int, str]
#: Per nudge ("" for any nudge): each user's first assignment.
Assignments = Mapping[str, Mapping[str, Assignment]]


def _sums(
    first: Mapping[str, Assignment],
    user_days: Mapping[str, set[int]],
    outcome: Callable[[str, float, int], bool],
    done: Callable[[float, int], bool],
    arm_of: Callable[[str], str | None],
) -> tuple[Arms, float | None]:
    pairs: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    last = None
    for user, (t0, d0, kind) in first.items():
        arm = arm_of(kind)
        if arm is None:
            continue
        last = t0 if last is None else max(last, t0)
        x = sum(1 for d in user_days.get(user, ()) if d0 - 28 <= d < d0)
        y = 1.0 if outcome(user, t0, d0) else 0.0
        pairs.setdefault((arm, done(t0, d0)), []).append((y, float(x)))
    return {key: ArmSums.of(values) for key, values in pairs.items()}, last


def nudge_lift(
    name: str,
    users: Mapping[str, int],
    suppressed: int,
    goal: tuple[str, float] | None,
    converted: Mapping[str, int],
    first: Mapping[str, Assignment],
    user_days: Mapping[str, set[int]],
    reached_at: Mapping[tuple[str, str], list[float]],
    end: float,
) -> NudgeStat:
    """Return a nudge's figures, with its lift by assignment among users held out by it (not
    by the global holdout) or fired."""
    if goal is None:
        return nudge_stat(name, users, suppressed, goal, converted)
    target, within = goal

    def reached(user: str, t0: float, d0: int) -> bool:
        return any(t0 <= g <= t0 + within for g in reached_at.get((target, user), ()))

    arms, last = _sums(
        first,
        user_days,
        reached,
        lambda t0, d0: t0 + within <= end,
        lambda kind: None if kind == "global holdout" else kind,
    )
    itt = assignment_lift(arms, last, end)
    return nudge_stat(name, users, suppressed, goal, converted, itt)


def programme(
    first: Mapping[str, Assignment],
    user_days: Mapping[str, set[int]],
    end: float,
    last_day: int,
) -> tuple[ProgrammeStat, ...]:
    """Return the programme against the global holdout, by each user's first assignment."""

    def retained(user: str, t0: float, d0: int) -> bool:
        days = user_days.get(user, ())
        return any(d0 + RETAINED_FROM <= d <= d0 + RETAINED_TO for d in days)

    arms, last = _sums(
        first,
        user_days,
        retained,
        lambda t0, d0: d0 + RETAINED_TO <= last_day,
        lambda kind: "global holdout" if kind == "global holdout" else "fired",
    )
    stat = programme_stat(arms, last, end)
    return () if stat is None else (stat,)
