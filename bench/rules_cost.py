"""What milestones and engagement cost on the caller's thread, and memory per user.

    python bench/rules_cost.py [--calls 100000] [--users 1000]

Runs ``track()`` flat out with ``send=False`` (so only the caller's path is measured, not
delivery), in steady state (each client first sees every user once, untimed): with no
rules, and with 20 typical milestones (engagement off, then on) in a MemoryStore,
interleaved over 5 rounds; then the same 20 milestones with engagement in a SqliteStore
(fewer calls, wall time: it writes a transaction per event). Prints the median and best
CPU time per call and their ratios against no rules. Then tracks a realistic mix for
20,000 users and reports the MemoryStore's memory per user (tracemalloc) and users per GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

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


def twenty_nudges() -> list[uptake.Nudge]:
    """A realistic mix: event counts (some windowed), milestone and time-based triggers."""
    nudges = []
    for i in range(8):
        within = 10 * dt.timedelta(minutes=1) if i % 2 else None
        trigger = uptake.EventCount(EVENTS[i], 3 + i % 3, within=within)
        nudges.append(
            uptake.Nudge(f"count{i}", trigger=trigger, unless=[f"count{i % 5}"], priority=i)
        )
    for i in range(5):
        nudges.append(uptake.Nudge(f"reached{i}", trigger=uptake.Reached(f"all{i}")))
        nudges.append(uptake.Nudge(f"late{i}", trigger=uptake.NotReached(f"all{i}", after=2 * DAY)))
    nudges.append(uptake.Nudge("back", trigger=uptake.Inactive(after=7 * DAY)))
    nudges.append(uptake.Nudge("declining", trigger=uptake.Declining(), holdout=0.1))
    return nudges


def loop(
    client: uptake.Client,
    calls: int,
    users: list[str],
    *,
    warm: bool = True,
    clock: Callable[[], float] = time.process_time,
) -> float:
    """CPU microseconds per call in steady state (every user already seen once, untimed).

    By default CPU time of this process, not wall time: on a shared 2-core machine another
    process taking the CPU would otherwise land in whichever variant ran at that moment.
    (Pass ``clock=time.perf_counter`` where waiting matters, as with a store on disk.)
    """
    props = {"plan": "pro", "amount": 1, "currency": "USD", "ok": True, "page": "/x"}
    if warm:
        loop(client, len(users) * 2, users, warm=False)
    t0 = clock()
    for i in range(calls):
        user = users[i % len(users)]
        if i % 7 == 0:
            client.feature_used(user, FEATURES[i % 6], account_id=f"acct-{i % 50}")
        else:
            client.track(user, EVENTS[i % 10], props, account_id=f"acct-{i % 50}")
    return (clock() - t0) / calls * 1e6


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_000)
    a = p.parse_args()
    users = [f"user-{i}" for i in range(a.users)]
    rows: dict[str, list[float]] = {"none": [], "milestones": [], "engagement": [], "nudges": []}
    for _ in range(5):
        rows["none"].append(loop(uptake.Client(send=False), a.calls, users))
        ms = twenty_milestones()
        with_milestones = uptake.Client(send=False, milestones=ms, engagement=False)
        rows["milestones"].append(loop(with_milestones, a.calls, users))
        with_engagement = uptake.Client(send=False, milestones=ms, engagement=True)
        rows["engagement"].append(loop(with_engagement, a.calls, users))
        with_nudges = uptake.Client(send=False, milestones=ms, nudges=twenty_nudges())
        rows["nudges"].append(loop(with_nudges, a.calls, users))
    sqlite_calls = max(a.calls // 10, 1_000)
    with tempfile.TemporaryDirectory() as tmp:
        store = uptake.SqliteStore(Path(tmp) / "rules.db")
        client = uptake.Client(
            send=False, milestones=twenty_milestones(), nudges=twenty_nudges(), store=store
        )
        wall = time.perf_counter
        sqlite = statistics.median(loop(client, sqlite_calls, users, clock=wall) for _ in range(3))
        base_small = statistics.median(
            loop(uptake.Client(send=False), sqlite_calls, users, clock=wall) for _ in range(3)
        )
    base, best = statistics.median(rows["none"]), min(rows["none"])
    print(f"### track() caller cost, {a.calls:,} calls, send=False, CPU us/call over 5 rounds")
    print("| rules | store | median | vs none | best | vs none |")
    print("|---|---|---|---|---|---|")
    print(f"| none | - | {base:.2f} | 1.00x | {best:.2f} | 1.00x |")
    for key, label in (
        ("milestones", "20 milestones"),
        ("engagement", "20 + engagement"),
        ("nudges", "20 + engagement + 20 nudges"),
    ):
        cost, low = statistics.median(rows[key]), min(rows[key])
        print(
            f"| {label} | MemoryStore | {cost:.2f} | {cost / base:.2f}x | {low:.2f} | "
            f"{low / best:.2f}x |"
        )
    print(
        f"| 20 + engagement + 20 nudges | SqliteStore | {sqlite:.2f} (wall) | "
        f"{sqlite / base_small:.2f}x | {sqlite_calls:,} calls, median of 3 | |"
    )

    for label, milestones in (
        ("4 (activated, habit, depth, reporting)", typical()),
        ("20", twenty_milestones()),
    ):
        for engagement in (False, True):
            memory_per_user(label, milestones, engagement)
    memory_per_user("4", typical(), True, design_nudges())
    return 0


def design_nudges() -> list[uptake.Nudge]:
    """The two nudges of the docs' example (try_reports, finish_setup)."""
    return [
        uptake.Nudge(
            "try_reports",
            trigger=uptake.EventCount(EVENTS[3], 3),
            unless=["reporting"],
            max_shows=3,
            priority=10,
            holdout=0.1,
        ),
        uptake.Nudge("finish_setup", trigger=uptake.NotReached("activated", after=2 * DAY)),
    ]


def typical() -> list[uptake.Milestone]:
    """The four user milestones of the docs' example: activated, habit, depth, reporting."""
    return [
        uptake.Milestone("activated", all_of=[EVENTS[0], EVENTS[1]], within=14 * DAY),
        uptake.Milestone("habit", active_days=3, within=7 * DAY),
        uptake.Milestone("depth", features=5),
        uptake.Milestone("reporting", counts={EVENTS[2]: 3}),
    ]


def memory_per_user(
    label: str,
    milestones: list[uptake.Milestone],
    engagement: bool,
    nudges: list[uptake.Nudge] | None = None,
) -> None:
    store = uptake.MemoryStore(max_users=1_000_000)
    client = uptake.Client(
        send=False, milestones=milestones, store=store, engagement=engagement, nudges=nudges or ()
    )
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
    what = "with engagement" if engagement else "engagement off"
    if nudges:
        what += f" and {len(nudges)} nudges"
    print(f"\n### MemoryStore, {label} milestones, {what}, {len(store):,} users, 12 events each")
    print(f"bytes per user: {per_user:.0f}; users per GB: {2**30 / per_user:,.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
