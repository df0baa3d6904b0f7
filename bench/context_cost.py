"""What ``track()`` costs inside ``client.context()`` against outside, in one run.

    python bench/context_cost.py [--calls 100000] [--users 1000] [--rounds 5]

Measures, interleaved over several rounds (medians of per-call CPU time), with
``send=False`` and no rules so only the caller's path counts (as ``hot_path.py``):

- **outside**: ``track(user, event, {"n": i})`` with no context: one ContextVar read more
  than before contexts existed, nothing else;
- **outside, with account**: the same with ``account_id="acme"``, as every case below has;
- **inside, ids given**: the same call inside ``client.context(user_id=..., account_id=...)``;
- **inside, ids left out**: ``track(event, properties={"n": i})``, ids from the context;
- **inside, with properties**: as above, the context also adds ``{"plan": "pro"}``.

Each context is entered once per user and round, outside the timed loop's inner calls
(a request enters one and tracks a few events). Writes JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uptake

EVENTS = ["Report Created", "Dashboard Viewed", "Search", "Export CSV", "Comment Added"]
PER_BLOCK = 10  # events tracked in one context block, like a request that tracks a few


def outside(client: uptake.Client, calls: int, users: list[str]) -> float:
    track, n = client.track, len(users)
    started = time.process_time()
    for i in range(calls):
        track(users[i % n], EVENTS[i % 5], {"n": i})
    return time.process_time() - started


def outside_account(client: uptake.Client, calls: int, users: list[str]) -> float:
    track, n = client.track, len(users)
    started = time.process_time()
    for i in range(calls):
        track(users[i % n], EVENTS[i % 5], {"n": i}, account_id="acme")
    return time.process_time() - started


def inside(ids: bool, properties: dict[str, Any] | None) -> Callable[..., float]:
    def run(client: uptake.Client, calls: int, users: list[str]) -> float:
        track, n = client.track, len(users)
        started = time.process_time()
        for block in range(calls // PER_BLOCK):
            user = users[block % n]
            with client.context(user_id=user, account_id="acme", properties=properties):
                for j in range(PER_BLOCK):
                    i = block * PER_BLOCK + j
                    if ids:
                        track(user, EVENTS[i % 5], {"n": i}, account_id="acme")
                    else:
                        track(EVENTS[i % 5], properties={"n": i})
        return time.process_time() - started

    return run


CASES: dict[str, Callable[..., float]] = {
    "outside": outside,
    "outside, with account": outside_account,
    "inside, ids given": inside(True, None),
    "inside, ids left out": inside(False, None),
    "inside, with properties": inside(False, {"plan": "pro"}),
}


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
            client = uptake.Client(send=False)
            for user in users:  # steady state: every user seen once
                client.track(user, "Signed Up")
            samples[name].append(case(client, args.calls, users) / args.calls)
            client.shutdown(timeout=1)
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{args.calls:,} calls x {args.rounds} rounds, {args.users:,} users (median CPU/call)")
    for name, value in median.items():
        ratio = value / median["outside"]
        print(f"  {name:<24} {value * 1e6:6.2f} us  ({ratio:.2f}x outside)")
    if args.json:
        results = {"us_per_call": {k: v * 1e6 for k, v in median.items()}}
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
