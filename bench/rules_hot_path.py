"""The rules' cost on the tracking thread, and where it goes (a focused microbenchmark).

    python bench/rules_hot_path.py [--calls 30000] [--users 1000] [--rounds 5] [--fatigue]

Interleaved over rounds, CPU time per call, in steady state (60 events per user first, so
milestones and nudges have stopped firing):

- ``track()`` with ``send=False`` and no rules, and with the rules of
  ``bench/rules_cost.py`` (20 milestones + 20 nudges + engagement), and their ratio;
- ``RulesEngine.update`` alone (the rules' plumbing: keys, store, state updates, nudges);
- both again with engagement signals on (``Engagement(signals=True)``: the score of the
  user and of the account computed at each event);
- ``MilestoneRules.apply`` alone on one user's state (the milestone rules themselves).

``--fatigue`` gives the ruled client a nudge budget and quiet hours too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from rules_cost import EVENTS, FEATURES, twenty_milestones, twenty_nudges

import uptake
from uptake.rules.state import SubjectState

PROPS = {"plan": "pro", "amount": 1, "currency": "USD", "ok": True, "page": "/x"}


def per_call(run: Callable[[int], None], calls: int) -> float:
    t0 = time.process_time()
    run(calls)
    return (time.process_time() - t0) / calls * 1e6


def tracking(client: uptake.Client, users: list[str]) -> Callable[[int], None]:
    n = len(users)

    def run(calls: int) -> None:
        for i in range(calls):
            user = users[i % n]
            if i % 7 == 0:
                client.feature_used(user, FEATURES[i % 6], account_id=f"acct-{i % 50}")
            else:
                client.track(user, EVENTS[i % 10], PROPS, account_id=f"acct-{i % 50}")

    return run


def engine_updates(client: uptake.Client, users: list[str]) -> Callable[[int], None]:
    engine = client._rules.engine  # the rules engine alone, as track() calls it
    update = engine.update
    n = len(users)
    t0 = time.time()

    def run(calls: int) -> None:
        for i in range(calls):
            t = t0 + i * 0.001
            if i % 7 == 0:
                props = {"feature": FEATURES[i % 6]}
                update(users[i % n], None, f"acct-{i % 50}", "Feature Used", props, t)
            else:
                update(users[i % n], None, f"acct-{i % 50}", EVENTS[i % 10], PROPS, t)

    return run


def milestone_applies(client: uptake.Client) -> Callable[[int], None]:
    rules = client._rules.engine.user
    state = SubjectState()
    t0 = time.time()

    def run(calls: int) -> None:
        apply = rules.apply
        for i in range(calls):
            feature = FEATURES[i % 6] if i % 7 == 0 else None
            event = "Feature Used" if feature else EVENTS[i % 10]
            apply(state, event, t0 + i * 0.001, True, feature)

    return run


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=30_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--fatigue",
        action="store_true",
        help="also give the ruled client a nudge budget and quiet hours",
    )
    a = p.parse_args()
    fatigue: dict[str, object] = {}
    if a.fatigue:
        fatigue = {
            "nudge_budget": uptake.NudgeBudget(3, dt.timedelta(days=7)),
            "quiet_hours": (dt.time(21), dt.time(8)),
        }
    users = [f"user-{i}" for i in range(a.users)]
    rows: dict[str, list[float]] = {
        "none": [],
        "rules": [],
        "update": [],
        "signals": [],
        "signals_update": [],
        "apply": [],
    }
    for _ in range(a.rounds):
        plain = uptake.Client(send=False)
        ruled = uptake.Client(
            send=False,
            milestones=twenty_milestones(),
            nudges=twenty_nudges(),
            engagement=True,
            **fatigue,  # type: ignore[arg-type]
        )
        signalled = uptake.Client(
            send=False,
            milestones=twenty_milestones(),
            nudges=twenty_nudges(),
            engagement=uptake.Engagement(signals=True),
        )
        for client in (plain, ruled, signalled):
            tracking(client, users)(60 * len(users))  # warm: steady state (no more firing)
        rows["none"].append(per_call(tracking(plain, users), a.calls))
        rows["rules"].append(per_call(tracking(ruled, users), a.calls))
        rows["update"].append(per_call(engine_updates(ruled, users), a.calls))
        rows["signals"].append(per_call(tracking(signalled, users), a.calls))
        rows["signals_update"].append(per_call(engine_updates(signalled, users), a.calls))
        rows["apply"].append(per_call(milestone_applies(ruled), a.calls))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"### rules on the tracking thread: {a.calls:,} calls x {a.rounds} rounds, CPU us/call")
    print("| what | median | best |")
    print("|---|---|---|")
    labels = {
        "none": "track(), no rules",
        "rules": "track(), 20 milestones + 20 nudges + engagement",
        "update": "RulesEngine.update alone",
        "signals": "track(), the same + engagement signals",
        "signals_update": "RulesEngine.update alone, with engagement signals",
        "apply": "MilestoneRules.apply alone (20 milestones)",
    }
    for key, label in labels.items():
        print(f"| {label} | {med[key]:.2f} | {min(rows[key]):.2f} |")
    ratios = [r / n for r, n in zip(rows["rules"], rows["none"], strict=True)]
    print(f"\nall rules / no rules: {med['rules'] / med['none']:.2f}x (medians), ", end="")
    print(f"{statistics.median(ratios):.2f}x (median of the rounds' ratios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
