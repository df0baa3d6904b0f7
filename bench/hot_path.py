"""What one ``track()`` costs on the caller's thread, as ratios against a floor, in one run.

    python bench/hot_path.py [--calls 100000] [--users 1000] [--rounds 5]

Measures, interleaved over several rounds (medians of per-call CPU time), with
``send=False`` so only the caller's path counts:

- **floor**: what any tracker must do: build the event dict, read ``time.time()``, append
  to a deque;
- **no rules**: ``track()`` with no milestones, nudges or engagement;
- **all rules**: 20 milestones + 20 nudges + engagement in a MemoryStore;
- **before_send**: no rules and an identity ``before_send`` hook.

Targets (issue "Reshape the SDK core"): no rules <= 3x the floor; all rules <= 2x no
rules; before_send <= 1.3x no rules. Each client first sees every user once, untimed.
Writes the figures as JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rules_cost import twenty_milestones, twenty_nudges

import uptake

EVENTS = ["Report Created", "Dashboard Viewed", "Search", "Export CSV", "Comment Added"]


def floor(calls: int, users: list[str]) -> float:
    queue: deque[dict[str, Any]] = deque()
    n = len(users)
    started = time.process_time()
    for i in range(calls):
        queue.append(
            {
                "type": "track",
                "userId": users[i % n],
                "event": EVENTS[i % 5],
                "properties": {"n": i},
                "timestamp": time.time(),
            }
        )
        if len(queue) > 10_000:
            queue.clear()
    return (time.process_time() - started) / calls


def tracking(make: Callable[[], uptake.Client]) -> Callable[[int, list[str]], float]:
    def run(calls: int, users: list[str]) -> float:
        client = make()
        for user in users:  # steady state: every user seen once
            client.track(user, "Signed Up")
        n = len(users)
        track = client.track
        started = time.process_time()
        for i in range(calls):
            track(users[i % n], EVENTS[i % 5], {"n": i})
        elapsed = time.process_time() - started
        client.shutdown(timeout=1)
        return elapsed / calls

    return run


def identity(event: dict[str, Any]) -> dict[str, Any]:
    return event


CASES: dict[str, Callable[[int, list[str]], float]] = {
    "floor": floor,
    "no rules": tracking(lambda: uptake.Client(send=False)),
    "all rules": tracking(
        lambda: uptake.Client(
            send=False, milestones=twenty_milestones(), nudges=twenty_nudges(), engagement=True
        )
    ),
    "before_send": tracking(lambda: uptake.Client(send=False, before_send=identity)),
}

TARGETS = [
    ("no rules", "floor", 3.0),
    ("all rules", "no rules", 2.0),
    ("before_send", "no rules", 1.3),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    users = [f"user-{i}" for i in range(args.users)]
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, case in CASES.items():
            samples[name].append(case(args.calls, users))
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{args.calls:,} calls x {args.rounds} rounds, {args.users:,} users (median CPU/call)")
    for name, value in median.items():
        print(f"  {name:<12} {value * 1e6:6.2f} us")
    results: dict[str, Any] = {"us_per_call": {k: v * 1e6 for k, v in median.items()}}
    ratios = {}
    for name, base, target in TARGETS:
        ratio = median[name] / median[base]
        ratios[f"{name} / {base}"] = ratio
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"  {name} / {base}: {ratio:.2f}x (target <= {target}x) {verdict}")
    results["ratios"] = ratios
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
