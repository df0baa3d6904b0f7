"""What ``await client.atrack()`` costs the caller, and how long it holds the event loop.

    python bench/async_hop.py [--calls 5000]

With a SqliteStore (sessions and rules in the store) and 20 milestones and 20 nudges, one
task calls ``track()`` on the loop, then ``await atrack()``, ``calls`` times each (every
user seen once first, untimed). Reports, per call: the wall time the caller waits, and
the time the event loop is held (a ticker task notes the gaps between its wake-ups while
the caller runs: a loop blocked by the call shows as a gap as long as the call).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import rules_cost

import uptake


async def measure(client: uptake.Client, calls: int, users: list[str], use_async: bool) -> str:
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def one(user: str, i: int) -> None:
        if use_async:
            await client.atrack(user, rules_cost.EVENTS[i % 10], {"i": i}, account_id="a")
        else:
            client.track(user, rules_cost.EVENTS[i % 10], {"i": i}, account_id="a")

    for i, user in enumerate(users):  # every user seen once, untimed
        await one(user, i)
    tick = asyncio.create_task(ticker())
    waits = []
    for i in range(calls):
        t0 = time.perf_counter()
        await one(users[i % len(users)], i)
        waits.append(time.perf_counter() - t0)
        await asyncio.sleep(0)  # let the ticker see the loop between calls
    done.set()
    await tick
    gaps.sort()
    name = "await atrack()" if use_async else "track() on the loop"
    return (
        f"| {name} | {statistics.median(waits) * 1e6:.0f} | "
        f"{statistics.median(gaps) * 1e6:.0f} | {gaps[len(gaps) * 9 // 10] * 1e6:.0f} |"
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=5_000)
    a = p.parse_args()
    users = [f"user-{i}" for i in range(500)]
    print("| call | caller waits, median (us) | loop held: median gap (us) | p90 gap (us) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for use_async in (False, True):
            client = uptake.Client(
                send=False,
                store=uptake.SqliteStore(Path(tmp) / f"rules-{use_async}.db"),
                milestones=rules_cost.twenty_milestones(),
                nudges=rules_cost.twenty_nudges(),
            )
            print(asyncio.run(measure(client, a.calls, users, use_async)))
            client.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
