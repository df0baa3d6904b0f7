"""What keeping sessions in a shared store costs per event on the caller's thread.

    python bench/session_cost.py [--calls 20000] [--users 1000]

Starts a redis-server on a free loopback port (it must be installed), then runs
``track()`` flat out with ``send=False`` (wall time, 3 interleaved rounds, median; every
user seen once first, untimed) for each store, twice: with sessions kept in the store
(what a SqliteStore or RedisStore does now: every worker process agrees on the session)
and with sessions kept in the process (what they did before, swapped in for comparison).
Once without rules (the session round trip alone) and once with 20 milestones,
engagement and 20 nudges (as ``store_cost.py``). MemoryStore is the in-process baseline.

The events are given event times ``--gap`` seconds apart for each user (default 2 s: a
user's next event comes 2 s after the previous one), so every event moves its session's
latest time and the store is written each time: the costly case. With ``--gap 0.1``
(a request's burst: events of one user less than a second apart) most events only
read the session.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import rules_cost
from store_cost import start_redis

import uptake
from uptake.sessions import Sessionizer


def client(store: object, rules: bool, in_process: bool) -> uptake.Client:
    c = uptake.Client(
        send=False,
        store=store,  # type: ignore[arg-type]
        milestones=rules_cost.twenty_milestones() if rules else (),
        nudges=rules_cost.twenty_nudges() if rules else (),
    )
    if in_process:  # the per-process sessions of earlier versions, for comparison
        sessions = Sessionizer(idle_timeout=1800.0, max_duration=86400.0, max_users=100_000)
        c._sessions = c._pipeline.sessions = sessions
    return c


def loop(c: uptake.Client, calls: int, users: list[str], gap: float) -> float:
    """Wall microseconds per call; each user's events ``gap`` seconds apart in event time."""
    step = gap / len(users)
    base = time.time() - 3 * calls * step - 10
    props = {"plan": "pro", "amount": 1, "currency": "USD", "ok": True, "page": "/x"}
    utc = dt.timezone.utc

    def run(start: int, n: int) -> None:
        for i in range(start, start + n):
            when = dt.datetime.fromtimestamp(base + i * step, utc)
            user, account = users[i % len(users)], f"acct-{i % 50}"
            if i % 7 == 0:
                feature = rules_cost.FEATURES[i % 6]
                c.feature_used(user, feature, account_id=account, timestamp=when)
            else:
                c.track(user, rules_cost.EVENTS[i % 10], props, account_id=account, timestamp=when)

    run(0, len(users) * 2)  # every user seen: steady state, untimed
    t0 = time.perf_counter()
    run(len(users) * 2, calls)
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--gap", type=float, default=2.0, help="seconds between a user's events")
    a = p.parse_args()
    users = [f"user-{i}" for i in range(a.users)]
    proc, url = start_redis()
    rows = [
        (store, rules, in_process)
        for rules in (False, True)
        for store in ("memory", "sqlite", "redis")
        for in_process in ((True,) if store == "memory" else (False, True))
    ]
    results: dict[tuple[str, bool, bool], list[float]] = {row: [] for row in rows}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(3):
                for n, (store_name, rules, in_process) in enumerate(rows):
                    store: object
                    if store_name == "memory":
                        store = uptake.MemoryStore()
                    elif store_name == "sqlite":
                        store = uptake.SqliteStore(Path(tmp) / f"rules-{r}-{n}.db")
                    else:
                        store = uptake.RedisStore(url, prefix=f"bench-{uuid.uuid4().hex}:")
                    c = client(store, rules, in_process)
                    cost = loop(c, a.calls, users, a.gap)
                    results[store_name, rules, in_process].append(cost)
    finally:
        proc.kill()
        proc.wait()
    print(f"### track(), {a.calls:,} calls over {a.users:,} users, {a.gap} s apart per user")
    print("(us per call, wall)")
    print("| rules | store | sessions in the process | sessions in the store | extra |")
    print("|---|---|---|---|---|")
    for rules in (False, True):
        label = "20 milestones, 20 nudges" if rules else "none"
        for store_name in ("memory", "sqlite", "redis"):
            local = statistics.median(results[store_name, rules, True])
            if store_name == "memory":
                print(f"| {label} | MemoryStore | {local:.1f} | - | - |")
                continue
            shared = statistics.median(results[store_name, rules, False])
            name = "SqliteStore" if store_name == "sqlite" else "RedisStore"
            print(f"| {label} | {name} | {local:.1f} | {shared:.1f} | +{shared - local:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
