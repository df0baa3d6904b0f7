"""Replaying history against candidate nudges: who would be nudged, when, how often."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone, tzinfo
from types import MappingProxyType
from typing import Any

import attrs

from ..definitions import parse_time
from ..stores.memory import MemoryStore
from .engagement import Engagement
from .engine import RulesEngine
from .milestones import Milestone
from .nudge_fatigue import NudgeBudget, QuietHours
from .nudges import Nudge

__all__ = ["NudgeSimulation", "Simulation", "apply_past", "simulate"]

Parsed = tuple[str | None, str | None, str | None, str, Mapping[str, Any] | None, float]


@attrs.frozen
class NudgeSimulation:
    """What one nudge would have done over the replayed history.

    Attributes:
        name: The nudge.
        users: Distinct users it would have been shown to (fired, not held out).
        fires: Times it would have fired.
        held_out: Times a user in its control group would have been nudged.
        rate_limited: Times the per-user rate limit would have held it back (recorded once
            per user and rate-limit period, as "Nudge Suppressed" is live).
        first: The first fire (event time), or None.
        last: The last fire, or None.
        by_day: Fires per UTC day (``"YYYY-MM-DD"``), in date order.
        over_budget: Times the user's ``nudge_budget`` would have held it back (once per
            spent budget, as "Nudge Suppressed" is live).
        quiet_hours: Times quiet hours would have deferred it (once per night).
    """

    name: str
    users: int
    fires: int
    held_out: int
    rate_limited: int
    first: datetime | None
    last: datetime | None
    by_day: Mapping[str, int]
    over_budget: int = 0
    quiet_hours: int = 0


@attrs.frozen
class Simulation:
    """What ``Client.simulate`` found: events replayed, users seen, and per nudge."""

    events: int
    skipped: int
    users: int
    nudges: Mapping[str, NudgeSimulation]

    def __str__(self) -> str:
        lines = [
            f"{self.events:,} events from {self.users:,} users ({self.skipped:,} skipped)",
            f"{'nudge':<24} {'users':>8} {'fires':>8} {'held out':>9} {'rate ltd':>9}  first",
        ]
        for n in self.nudges.values():
            first = n.first.date().isoformat() if n.first else "-"
            lines.append(
                f"{n.name:<24} {n.users:>8,} {n.fires:>8,} {n.held_out:>9,} "
                f"{n.rate_limited:>9,}  {first}"
            )
        return "\n".join(lines)


_OUTCOMES = {
    "Nudge Shown": "shown",
    "Nudge Clicked": "clicked",
    "Nudge Dismissed": "dismissed",
    "Nudge Snoozed": "snoozed",
}


def simulate(
    events: Iterable[Mapping[str, Any]],
    *,
    milestones: Sequence[Milestone],
    engagement: Engagement | None,
    nudges: Sequence[Nudge],
    rate_limit: float | None,
    tz: tzinfo | None,
    inactive_events: frozenset[str],
    parse: Callable[[object], Parsed | None],
    global_holdout: float = 0.0,
    budgets: Sequence[NudgeBudget] = (),
    quiet_hours: Sequence[QuietHours] = (),
) -> Simulation:
    """Run history through a private engine and count every nudge decision."""
    engine = RulesEngine(
        milestones=milestones,
        engagement=engagement,
        nudges=nudges,
        rate_limit=rate_limit,
        store=MemoryStore(max_users=10_000_000),
        tz=tz,
        inactive_events=inactive_events,
        global_holdout=global_holdout,
        budgets=budgets,
        quiet_hours=quiet_hours,
    )
    applied = skipped = 0
    users: set[str] = set()
    fired_users: dict[str, set[str]] = {n.name: set() for n in nudges}
    counts: dict[str, Counter[str]] = {n.name: Counter() for n in nudges}
    times: dict[str, list[float]] = {n.name: [] for n in nudges}
    days: dict[str, Counter[str]] = {n.name: Counter() for n in nudges}
    names = {n.name for n in nudges}
    for raw in events:
        parsed = parse(raw)
        if parsed is None:
            if apply_past(engine, raw):  # identify and group traits, for audiences
                applied += 1
            else:
                skipped += 1
            continue
        uid, anon, account, name, props, t = parsed
        applied += 1
        subject = uid or anon or ""
        users.add(subject)
        outcome = _OUTCOMES.get(name)
        if outcome is not None and props and props.get("nudge") in names:
            # What users did with the nudges (dismissed ones never come back).
            snooze = props.get("snooze_s")
            seconds = float(snooze) if isinstance(snooze, (int, float)) else 0.0
            engine.outcome(uid, anon, str(props["nudge"]), outcome, t, seconds)
        for kind, nudge, reason in engine.update(uid, anon, account, name, props, t).nudges:
            counts[nudge.name][reason if kind == "suppressed" else kind] += 1
            if kind == "fired":
                fired_users[nudge.name].add(subject)
                times[nudge.name].append(t)
                day = datetime.fromtimestamp(t, timezone.utc).date().isoformat()
                days[nudge.name][day] += 1
    report = {}
    for n in nudges:
        when = times[n.name]
        report[n.name] = NudgeSimulation(
            name=n.name,
            users=len(fired_users[n.name]),
            fires=counts[n.name]["fired"],
            held_out=counts[n.name]["held_out"] + counts[n.name]["global_holdout"],
            rate_limited=counts[n.name]["rate_limited"],
            over_budget=counts[n.name]["over_budget"],
            quiet_hours=counts[n.name]["quiet_hours"],
            first=datetime.fromtimestamp(min(when), timezone.utc) if when else None,
            last=datetime.fromtimestamp(max(when), timezone.utc) if when else None,
            by_day=MappingProxyType(dict(sorted(days[n.name].items()))),
        )
    return Simulation(
        events=applied, skipped=skipped, users=len(users), nudges=MappingProxyType(report)
    )


def apply_past(engine: RulesEngine, raw: object) -> bool:
    """Apply a past identify, group or alias event (wire format); False if it is none."""
    if not isinstance(raw, Mapping) or raw.get("type") not in ("identify", "group", "alias"):
        return False
    traits = raw.get("traits")
    uid, anon = raw.get("userId"), raw.get("anonymousId")
    uid = uid if isinstance(uid, str) and uid else None
    anon = anon if isinstance(anon, str) and anon else None
    if raw["type"] == "alias":
        anon = raw.get("previousId")
        anon = anon if isinstance(anon, str) and anon else None
    if uid is not None and anon is not None and raw["type"] != "group":
        try:  # history: what the union reaches is recorded, not reported
            engine.identity.merge(uid, anon, parse_time(raw.get("timestamp")) or time.time())
        except Exception as exc:
            engine.failed("merging a visitor into a user", exc)
        if raw["type"] == "alias" or not traits:
            return True
    elif raw["type"] == "alias":
        return False
    if not isinstance(traits, Mapping) or not traits or (uid is None and anon is None):
        return False
    if raw["type"] == "identify":
        engine.identify(uid, anon, traits)
        return True
    account = raw.get("groupId")
    if not isinstance(account, str) or not account:
        return False
    engine.group(account, traits)
    return True
