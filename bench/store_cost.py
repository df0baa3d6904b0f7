"""What each rule store costs on the caller's thread, and Redis memory per user.

    python bench/store_cost.py [--calls 20000] [--users 1000]

Starts a redis-server on a free loopback port (it must be installed), then runs
``track()`` flat out with ``send=False`` and 20 milestones, engagement and 20 nudges with
MemoryStore, SqliteStore and RedisStore in turn (3 interleaved rounds, steady state: every
user seen once, untimed; wall time, since the stores wait on disk and network), and
without rules, in the same run. Prints µs per call, events
evaluated per second and the ratio against MemoryStore. Then tracks 12 events for 2,000
users into a RedisStore and reports ``MEMORY USAGE`` per user key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import rules_cost

import uptake


def start_redis() -> tuple[subprocess.Popen[str], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            return proc, f"redis://127.0.0.1:{port}/0"
    raise SystemExit("redis-server did not start")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--users", type=int, default=1_000)
    a = p.parse_args()
    users = [f"user-{i}" for i in range(a.users)]
    proc, url = start_redis()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rounds: dict[str, list[float]] = {"none": [], "memory": [], "sqlite": [], "redis": []}
            for r in range(3):
                stores: dict[str, object] = {
                    "memory": uptake.MemoryStore(),
                    "sqlite": uptake.SqliteStore(Path(tmp) / f"rules-{r}.db"),
                    "redis": uptake.RedisStore(url, prefix=f"bench-{uuid.uuid4().hex}:"),
                }
                wall = time.perf_counter  # the stores wait on disk and network: wall time
                rounds["none"].append(
                    rules_cost.loop(uptake.Client(send=False), a.calls, users, clock=wall)
                )
                for name, store in stores.items():
                    client = uptake.Client(
                        send=False,
                        store=store,  # type: ignore[arg-type]
                        milestones=rules_cost.twenty_milestones(),
                        nudges=rules_cost.twenty_nudges(),
                    )
                    rounds[name].append(rules_cost.loop(client, a.calls, users, clock=wall))
        memory = statistics.median(rounds["memory"])
        print(f"### track() with 20 milestones + engagement + 20 nudges, {a.calls:,} calls")
        print("| store | us/call | events/s | vs MemoryStore |")
        print("|---|---|---|---|")
        for name in ("none", "memory", "sqlite", "redis"):
            cost = statistics.median(rounds[name])
            label = {"none": "(no rules)", "memory": "MemoryStore"}.get(
                name, "SqliteStore" if name == "sqlite" else "RedisStore"
            )
            print(f"| {label} | {cost:.1f} | {1e6 / cost:,.0f} | {cost / memory:.2f}x |")
        redis_memory(url)
    finally:
        proc.kill()
        proc.wait()
    return 0


def redis_memory(url: str) -> None:
    store = uptake.RedisStore(url, prefix=f"mem-{uuid.uuid4().hex}:")
    client = uptake.Client(
        send=False, store=store, milestones=rules_cost.typical(), engagement=True
    )
    n_users = 2_000
    for u in range(n_users):
        user = f"user-{u}"
        for k in range(12):
            when = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc) + k * dt.timedelta(hours=9)
            if k % 4 == 0:
                client.feature_used(user, rules_cost.FEATURES[(u + k) % 6], timestamp=when)
            else:
                client.track(user, rules_cost.EVENTS[(u + k) % 10], timestamp=when)
    sizes = [store.memory_usage(f"user:user-{u}") or 0 for u in range(0, n_users, 10)]
    per_user = statistics.mean(sizes)
    print("\n### RedisStore, 4 milestones + engagement, 12 events per user")
    print(f"MEMORY USAGE per user key: {per_user:.0f} bytes; users per GB: {2**30 / per_user:,.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
