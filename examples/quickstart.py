"""Quickstart: instrument a tiny "product" and watch its events arrive at a collector.

Runs anywhere with no account: it starts uptake's loopback collector on 127.0.0.1, points a
real Client at it, tracks a few users' sessions, flushes, and prints what arrived.

    python examples/quickstart.py
"""

from __future__ import annotations

import logging
import random
from collections import Counter

import uptake
from uptake.testing import LoopbackCollector


def simulate(client: uptake.Client, users: int = 25, seed: int = 7) -> None:
    """Track what a handful of users do in one visit each."""
    rng = random.Random(seed)
    for n in range(users):
        user = f"user-{n:03d}"
        account = f"account-{n % 5}"
        client.identify(user, {"plan": rng.choice(["free", "pro"]), "signup_source": "ads"})
        client.group(user, account, {"seats": rng.randint(3, 40)})
        with client.session(user, account_id=account):
            client.track(user, "Project Created", {"template": "blank"}, account_id=account)
            for _ in range(rng.randint(1, 4)):
                client.track(user, "Dashboard Viewed", {"widgets": rng.randint(1, 9)})
            if rng.random() < 0.6:
                client.feature_used(user, "reports", account_id=account)
            if rng.random() < 0.3:
                client.track(user, "Teammate Invited", {"role": "editor"}, account_id=account)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with LoopbackCollector(write_key="wk_quickstart") as collector:
        print(f"collector listening on {collector.url}")
        client = uptake.Client(write_key="wk_quickstart", endpoint=collector.url)
        simulate(client)
        delivered = client.flush(timeout=10)
        stats = client.stats
        client.shutdown()

        names = Counter(e.get("event", e["type"]) for e in collector.events)
        print(
            f"tracked {stats.tracked} events; delivered {stats.delivered} in "
            f"{len(collector.batches)} batch(es); dropped {stats.dropped}, failed {stats.failed}"
        )
        print("what the collector received:")
        for name, count in names.most_common():
            print(f"  {count:4d}  {name}")
        sample = next(e for e in collector.events if e.get("event") == "Project Created")
        print("one event as it went over the wire:")
        for key in ("type", "event", "userId", "properties", "timestamp", "messageId"):
            print(f"  {key}: {sample[key]}")
        print(f"  context: {sample['context']}")
        return 0 if delivered and stats.delivered == stats.tracked else 1


if __name__ == "__main__":
    raise SystemExit(main())
