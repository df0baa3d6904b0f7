"""How long ``uptake report`` takes on a large collector store.

    python bench/report_speed.py [--events 1000000] [--db /tmp/uptake-report-bench.db]

Fills a collector store (``uptake.collector.EventStore``, the file ``uptake serve`` writes)
with synthetic product events: 5,000 users in 400 accounts over 90 days, with feature use,
milestones and nudge decisions and outcomes, in the wire format the SDK sends. The file is
kept and reused by later runs with the same ``--events``.

Then it times, in this order and in one process:

1. the floor: reading every stored row and parsing its JSON body (what any report must at
   least do with this store), the reference the other figures are a ratio of;
2. the metrics (``compute(from_store(...))``);
3. the HTML page (``render_html``).

Target: the whole report for 1,000,000 events in under 30 s on the 2-core machine.
Needs the collector extra: ``pip install -e '.[collector]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from uptake.collector import EventStore
from uptake.collector.metrics import compute
from uptake.collector.report import render_html
from uptake.collector.sources import from_store

FEATURES = ["dashboards", "reports", "alerts", "exports", "integrations", "sharing", "api"]
START = datetime(2026, 6, 1, tzinfo=timezone.utc)


def synthetic(n: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        u = rng.randrange(5_000)
        t = START + timedelta(
            days=rng.randrange(90) * (u % 7 + 3) / 9, seconds=rng.randrange(86_400)
        )
        e: dict[str, Any] = {
            "type": "track",
            "messageId": f"m-{i}",
            "timestamp": t.isoformat().replace("+00:00", "Z"),
            "userId": f"user-{u}",
            "context": {
                "library": {"name": "uptake", "version": "0"},
                "groupId": f"acct-{u % 400}",
                "sessionId": f"s-{u}-{i // 50}",
            },
        }
        roll = rng.random()
        if roll < 0.35:
            e["event"] = "Feature Used"
            e["properties"] = {"feature": rng.choice(FEATURES)}
        elif roll < 0.37:
            e["event"] = "Milestone Reached"
            e["properties"] = {
                "milestone": rng.choice(["activated", "habit", "depth"]),
                "scope": "user",
                "time_to_reach_s": rng.randrange(10 * 86_400),
            }
        elif roll < 0.40:
            e["event"] = rng.choice(["Nudge Fired", "Nudge Held Out", "Nudge Shown"])
            e["properties"] = {
                "nudge": "try_reports",
                "goal": "Report Created",
                "goal_within_s": 7 * 86_400,
            }
        elif roll < 0.45:
            e["event"] = "Report Created"
            e["properties"] = {"rows": rng.randrange(100)}
        else:
            e["event"] = rng.choice(["Dashboard Viewed", "Page Viewed", "Search"])
            e["properties"] = {"path": f"/p/{rng.randrange(50)}"}
        yield e


def fill(path: str, n: int) -> None:
    store = EventStore(path)
    if len(store) == n:
        store.close()
        return
    store.close()
    os.remove(path)
    store = EventStore(path)
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for e in synthetic(n):
        batch.append(e)
        if len(batch) == 20_000:
            store.add(batch)
            batch.clear()
    if batch:
        store.add(batch)
    print(f"filled {path} with {len(store):,} events in {time.perf_counter() - started:.1f}s")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", default="/tmp/uptake-report-bench.db")
    args = parser.parse_args()
    fill(args.db, args.events)

    started = time.perf_counter()
    conn = sqlite3.connect(args.db)
    rows = sum(1 for (body,) in conn.execute("SELECT body FROM events") if json.loads(body))
    conn.close()
    floor = time.perf_counter() - started

    started = time.perf_counter()
    source = from_store(args.db)
    report = compute(source)
    metrics = time.perf_counter() - started

    started = time.perf_counter()
    page = render_html(report)
    html = time.perf_counter() - started
    total = metrics + html
    print(
        f"events: {rows:,} ({source.skipped} skipped), {report.users:,} users, "
        f"{report.accounts:,} accounts"
    )
    print(f"read + parse every row (floor): {floor:6.1f}s  1.00x")
    print(f"metrics:                        {metrics:6.1f}s  {metrics / floor:.2f}x")
    print(f"html ({len(page) / 1e6:.1f} MB):                 {html:6.1f}s  {html / floor:.2f}x")
    print(
        f"report total:                   {total:6.1f}s  {total / floor:.2f}x  "
        f"(target < 30 s: {'met' if total < 30 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
