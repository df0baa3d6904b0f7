"""What milestones cost on the caller's thread, and memory per user in MemoryStore.

    python bench/rules_cost.py [--calls 100000] [--users 1000]

Runs ``track()`` flat out with ``send=False`` (so only the caller's path is measured, not
delivery) with no milestones and with 20 typical ones, interleaved over 5 rounds; prints
the medians and their ratio. Then tracks a realistic mix for 20,000 users and reports the
MemoryStore's memory per user (tracemalloc) and users per GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import tracemalloc

import uptake

DAY = dt.timedelta(days=1)
EVENTS = [
    "Project Created",
    "Teammate Invited",
    "Report Created",
    "Dashboard Viewed",
    "Export CSV",
    "Export PDF",
    "Alert Created",
    "Comment Added",
    "Search",
    "Settings Changed",
]
FEATURES = ["reports", "alerts", "dashboards", "exports", "search", "billing"]


def twenty_milestones() -> list[uptake.Milestone]:
    ms = []
    for i in range(5):
        ms.append(uptake.Milestone(f"all{i}", all_of=[EVENTS[i], EVENTS[i + 1]], within=14 * DAY))
        ms.append(uptake.Milestone(f"count{i}", counts={EVENTS[i + 2]: 3 + i}))
        ms.append(uptake.Milestone(f"any{i}", any_of=[EVENTS[i + 4], EVENTS[i + 5]]))
    for i in range(3):
        ms.append(uptake.Milestone(f"depth{i}", features=2 + i))
    ms.append(uptake.Milestone("habit", active_days=3, within=7 * DAY))
    ms.append(uptake.Milestone("team", features=4, scope="account"))
    return ms


def loop(client: uptake.Client, calls: int, users: list[str]) -> float:
    props = {"plan": "pro", "amount": 1, "currency": "USD", "ok": True, "page": "/x"}
    t0 = time.perf_counter()
    for i in range(calls):
        user = users[i % len(users)]
        if i % 7 == 0:
            client.feature_used(user, FEATURES[i % 6], account_id=f"acct-{i % 50}")
        else:
            client.track(user, EVENTS[i % 10], props, account_id=f"acct-{i % 50}")
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000)
    a = p.parse_args()
    users = [f"user-{i}" for i in range(a.users)]
    plain, ruled = [], []
    for _ in range(5):
        plain.append(loop(uptake.Client(send=False), a.calls, users))
        with_milestones = uptake.Client(send=False, milestones=twenty_milestones())
        ruled.append(loop(with_milestones, a.calls, users))
    base, with_rules = statistics.median(plain), statistics.median(ruled)
    print(f"### track() caller cost, {a.calls:,} calls, send=False, median of 5 rounds")
    print("| milestones | us/call |")
    print("|---|---|")
    print(f"| none | {base:.2f} |")
    print(f"| 20 (MemoryStore) | {with_rules:.2f} |")
    print(f"ratio: {with_rules / base:.2f}x")

    for label, milestones in (("4 (DESIGN.md's example)", typical()), ("20", twenty_milestones())):
        memory_per_user(label, milestones)
    return 0


def typical() -> list[uptake.Milestone]:
    """The rule set of DESIGN.md's example."""
    return [
        uptake.Milestone("activated", all_of=[EVENTS[0], EVENTS[1]], within=14 * DAY),
        uptake.Milestone("habit", active_days=3, within=7 * DAY),
        uptake.Milestone("depth", features=5),
        uptake.Milestone("reporting", counts={EVENTS[2]: 3}),
    ]


def memory_per_user(label: str, milestones: list[uptake.Milestone]) -> None:
    store = uptake.MemoryStore(max_users=1_000_000)
    client = uptake.Client(send=False, milestones=milestones, store=store)
    n_users = 20_000
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for u in range(n_users):
        user = f"user-{u}"
        for k in range(12):  # a typical user: a dozen events over a few days and features
            when = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc) + k * dt.timedelta(hours=9)
            if k % 4 == 0:
                client.feature_used(user, FEATURES[(u + k) % 6], timestamp=when)
            else:
                client.track(user, EVENTS[(u + k) % 10], timestamp=when)
    client._sessions.clear()  # sessions are not rule state: measure the store alone
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_user = grown / len(store)
    print(f"\n### MemoryStore, {label} milestones, {len(store):,} users, 12 events each")
    print(f"bytes per user: {per_user:.0f}; users per GB: {2**30 / per_user:,.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
